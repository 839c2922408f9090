"""The known-answer table: per-object rows, their mean, the paper's row, labelled as oracle runs."""

from __future__ import annotations

import json

import pandas as pd

from eval.known_answer_table import TITLE, write_tables


def _record(path, name, cd, iou):
    metrics = {
        "chamfer_distance": cd,
        "volumetric_iou": iou,
        "mv_psnr": 20.0,
        "mv_lpips": 0.1,
        "psnr": 30.0,
        "time_s": 60.0,
    }
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"object": name, "metrics": metrics, "tags": {"variant": "oracle"}}))
    return path


def test_table_has_each_object_their_mean_and_the_papers_row(tmp_path):
    paths = [
        _record(tmp_path / "a" / "metrics.json", "panda", 0.002, 0.8),
        _record(tmp_path / "b" / "metrics.json", "taxi", 0.004, 0.6),
    ]
    md, csv = write_tables(paths, tmp_path / "out")
    frame = pd.read_csv(csv)
    assert list(frame["object"][:2]) == ["panda", "taxi"]
    mean = frame[frame["object"].str.startswith("mean")].iloc[0]
    assert abs(mean["chamfer_distance"] - 0.003) < 1e-12 and abs(mean["volumetric_iou"] - 0.7) < 1e-12
    paper = frame[frame["object"].str.startswith("paper")].iloc[0]
    assert paper["volumetric_iou"] == 0.502 and paper["chamfer_distance"] == 0.0416  # eval/paper_numbers.csv
    text = md.read_text()
    assert TITLE in text and "ORACLE" in text and "| panda | oracle | 0.0020 | 0.800 |" in text
