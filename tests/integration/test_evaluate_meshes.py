"""``consistent123 evaluate-meshes``: another method's meshes scored like ours, then in Table 2
as a column marked "supplied by the user", beside the paper's columns and ours."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import trimesh

from consistent123.cli import main

FAST = ["--set", "eval.render_size=32", "--set", "eval.lpips_random_backbone=true", "--set", "eval.chamfer_points=500"]


@pytest.fixture()
def supplied(tmp_path):
    """Ground truths of two cases, and a method's meshes for them (OBJ and GLB): one exact, one
    a stretched copy, moved and rescaled as another method's output would be."""
    gt_dir, mesh_dir = tmp_path / "gso", tmp_path / "toy_meshes"
    gt_dir.mkdir()
    mesh_dir.mkdir()
    box = trimesh.creation.box(extents=[0.04, 0.06, 0.1])
    cone = trimesh.creation.cone(radius=0.05, height=0.1, sections=24)
    box.export(gt_dir / "Box_Model.ply")
    cone.export(gt_dir / "Cone_Model.ply")
    moved_box = box.copy()
    moved_box.apply_transform(trimesh.transformations.scale_and_translate(3.0, [1.0, 2.0, 3.0]))
    moved_box.export(mesh_dir / "box.obj")
    stretched = cone.copy()
    stretched.vertices = np.asarray(cone.vertices) * [1.0, 1.0, 1.6]
    stretched.export(mesh_dir / "cone.glb")
    manifest = tmp_path / "objects.tsv"
    box.export(mesh_dir / "mystery.ply")  # a case whose ground-truth model is unknown: not scored
    manifest.write_text("case\tgt_mesh\nbox\tBox_Model\ncone\tCone_Model\nmissing_case\tOther\nmystery\t\n")
    return mesh_dir, gt_dir, manifest


def test_evaluate_meshes_scores_a_folder_and_table_2_shows_it(supplied, tmp_path, capsys):
    mesh_dir, gt_dir, manifest = supplied
    out = tmp_path / "scored"
    args = ["evaluate-meshes", str(mesh_dir), "--benchmark", "gso", "--method", "toy"]
    args += ["--gt-pattern", f"{gt_dir}/{{model}}.ply", "--manifest", str(manifest), "--out", str(out)]
    assert main([*args, *FAST, "--set", "eval.protocol=syncdreamer"]) == 0
    printed = capsys.readouterr().out
    assert "toy (supplied by the user), protocol syncdreamer, 2 case(s)" in printed

    box = json.loads((out / "box" / "metrics.json").read_text())
    cone = json.loads((out / "cone" / "metrics.json").read_text())
    assert box["tags"] == {
        "benchmark": "gso",
        "case": "box",
        "method": "toy",
        "variant": "default",
        "supplied": "user",
        "priors": "supplied+random",  # LPIPS ran on a random trunk: the tables must say so
        "protocol": "syncdreamer",
    }
    # The moved, rescaled copy is the ground truth after normalisation; the stretched one is not.
    assert box["metrics"]["chamfer_distance"] < 1e-6  # OBJ keeps 8 digits and box["metrics"]["volumetric_iou"] == 1.0
    assert box["metrics"]["mv_ssim"] == pytest.approx(1.0) and box["metrics"]["normal_consistency"] == 1.0
    assert cone["metrics"]["chamfer_distance"] > 1e-3 and cone["metrics"]["volumetric_iou"] < 1.0
    assert cone["metrics"]["mv_ssim"] < 1.0
    assert len(box["details"]["mv_psnr_per_view"]) == 16  # SyncDreamer's 16 views
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["case"]) == ["box", "cone"] and set(runs["method"]) == {"toy"}
    assert not (out / "mystery").exists()

    # Table 2: the paper's columns as before, plus the supplied method's, protocol named.
    tables = tmp_path / "tables"
    (tmp_path / "results").mkdir()
    # Without the supplied rows there is nothing to tabulate: one line, nothing written.
    assert main(["tables", "--out", str(tables), "--no-mlflow", "--results", str(tmp_path / "results")]) == 2
    assert not tables.exists()
    assert (
        main(
            [
                "tables",
                "--out",
                str(tables),
                "--no-mlflow",
                "--results",
                str(tmp_path / "results"),
                "--supplied",
                str(out),
                "--tables",
                "2",
            ]
        )
        == 0
    )
    md = (tables / "table2.md").read_text()
    assert "toy (supplied by the user; protocol syncdreamer)" in md
    assert "consistent123" in md and "missing" in md  # our column, no runs of ours here
    assert "Protocol: every number is scored under `paper`" in md
    assert "| random+supplied |" in md  # the Priors column of every supplied row
    cells = pd.read_csv(tables / "table2.csv")
    toy = cells[cells["setting"].str.startswith("toy")].set_index("metric")
    assert toy.loc["chamfer_distance", "ours"] == pytest.approx(
        np.mean([box["metrics"]["chamfer_distance"], cone["metrics"]["chamfer_distance"]])
    )
    assert toy.loc["volumetric_iou", "protocol"] == "syncdreamer" and toy["paper"].isna().all()
    assert set(cells.loc[~cells["setting"].str.startswith("toy"), "protocol"]) == {"paper"}


def test_evaluate_meshes_refuses_what_it_cannot_score(supplied, tmp_path, capsys):
    mesh_dir, gt_dir, manifest = supplied
    base = ["evaluate-meshes", str(mesh_dir), "--benchmark", "gso", "--method", "toy", "--manifest", str(manifest)]
    base += ["--out", str(tmp_path / "o")]
    assert main([*base, "--gt-pattern", f"{gt_dir}/{{model}}.obj", *FAST]) == 2
    assert "ground-truth mesh not found" in capsys.readouterr().err
    (mesh_dir / "stranger.ply").write_bytes((gt_dir / "Box_Model.ply").read_bytes())
    assert main([*base, "--gt-pattern", f"{gt_dir}/{{model}}.ply", *FAST]) == 2
    assert "not in" in capsys.readouterr().err and not (tmp_path / "o").exists()
