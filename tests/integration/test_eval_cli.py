"""The evaluation commands end to end: eval-mesh, evaluate (with MLflow), tables; bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import trimesh
from PIL import Image

from consistent123.cli import main
from consistent123.meshes import normalise_mesh
from tests.support.eval_inputs import FIXTURE_RUNS, moved, real_rgba


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0]


# ---------------------------------------------------------------- eval-mesh
def test_eval_mesh_same_result_as_prenormalised_pair(tmp_path, capsys):
    gt = trimesh.creation.icosphere(subdivisions=3)
    pred = trimesh.creation.cylinder(radius=0.5, height=1.2, sections=48)
    moved(gt, 4.0, [10, -2, 3]).export(tmp_path / "gt.obj")
    moved(pred, 0.3, [-1, 5, 0]).export(tmp_path / "pred.ply")
    normalise_mesh(gt).export(tmp_path / "gt_n.obj")
    normalise_mesh(pred).export(tmp_path / "pred_n.ply")
    code, out, _ = run_cli(capsys, "eval-mesh", tmp_path / "gt.obj", tmp_path / "pred.ply")
    assert code == 0
    far = json.loads(out)
    code, out, _ = run_cli(capsys, "eval-mesh", tmp_path / "gt_n.obj", tmp_path / "pred_n.ply")
    near = json.loads(out)
    assert far["chamfer_distance"] == pytest.approx(near["chamfer_distance"], rel=1e-6)
    assert far["volumetric_iou"] == pytest.approx(near["volumetric_iou"], abs=1e-9)
    assert 0.5 < far["volumetric_iou"] < 1.0 and far["chamfer_distance"] > 0
    assert far["chamfer_points"] == 2000 and far["iou_resolution"] == 64


def test_eval_mesh_bad_inputs(tmp_path, capsys):
    good = tmp_path / "good.obj"
    trimesh.creation.box().export(good)
    notmesh = tmp_path / "photo.glb"
    notmesh.write_bytes(real_rgba().read_bytes())
    empty = tmp_path / "empty.obj"
    empty.write_text("# no faces\nv 0 0 0\n")
    code, _, err = run_cli(capsys, "eval-mesh", good, notmesh)
    assert_one_line_error(code, err, "photo.glb", "not")
    code, _, err = run_cli(capsys, "eval-mesh", empty, good)
    assert_one_line_error(code, err, "empty.obj", "empty")
    code, _, err = run_cli(capsys, "eval-mesh", tmp_path / "missing_gt.obj", good)
    assert_one_line_error(code, err, "missing_gt.obj", "not found")


# ---------------------------------------------------------------- evaluate
@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    from consistent123.priors.standins.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("models") / "clip")


def make_run(root, size=48, azimuths=(0, 180)):
    """A case folder (real RealFusion15 input) and an output folder with renders and records."""
    case = root / "case" / "banana"
    case.mkdir(parents=True)
    shutil.copy(real_rgba("banana"), case / "rgba.png")
    out = root / "out"
    (out / "views").mkdir(parents=True)
    img = Image.open(real_rgba("banana")).convert("RGBA").resize((size, size), Image.LANCZOS)
    img.save(out / "views" / "reference.png")
    for az in azimuths:
        img.rotate(az / 4).save(out / "views" / f"novel_{az:03d}.png")
    (out / "boundary.json").write_text(
        json.dumps(
            {
                "checks": [
                    {
                        "iteration": 20 * k,
                        "S": 0.2 + 0.01 * k,
                        "change_rate": None if k == 0 else 0.01,
                        "moving_average": None if k < 2 else 0.01 / k,
                    }
                    for k in range(8)
                ],
                "t_switch": 140,
                "forced": False,
                "settings": {"delta": 0.00025},
            }
        )
    )
    rows = ["iteration,stage,w3d,w2d,loss_rgb"] + [
        f"{t},{1 if t < 140 else 2},{1.0 if t < 140 else float(np.exp(-(t - 140) / 60))},"
        f"{0.0 if t < 140 else 1 - float(np.exp(-(t - 140) / 60))},0.1"
        for t in range(0, 200, 10)
    ]
    (out / "schedule.csv").write_text("\n".join(rows) + "\n")
    return case, out


def settings(tiny_clip_dir, size=48):
    return [
        "--set",
        f"eval.clip_model={tiny_clip_dir}",
        "--set",
        "eval.lpips_random_backbone=true",
        "--set",
        "eval.clip_views_azimuths=[0,180]",
        "--set",
        f"eval.render_size={size}",
        "--set",
        "train.device=cpu",
    ]


def test_evaluate_writes_metrics_figures_and_logs_to_mlflow(tmp_path, capsys, tiny_clip_dir):
    from consistent123.tracking.run import RunTracker
    from eval.aggregate import runs_from_mlflow

    case, out = make_run(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = RunTracker.open(
        out,
        uri,
        "eval-test",
        "banana",
        tags={"benchmark": "realfusion15", "case": "banana", "variant": "lambda=b", "table": "4"},
    )
    tracker.finish()
    # A mesh for the GSO metrics: the reconstruction is a scaled, moved copy of the GT.
    gt = trimesh.creation.icosphere(subdivisions=2)
    gt.export(tmp_path / "gt.obj")
    moved(gt, 2.0, [1, 1, 1]).export(out / "mesh.obj")
    code, stdout, err = run_cli(
        capsys,
        "evaluate",
        out,
        "--case",
        case,
        "--gt-mesh",
        tmp_path / "gt.obj",
        "--tags",
        "category=fruit",
        *settings(tiny_clip_dir),
    )
    assert code == 0, err
    record = json.loads((out / "metrics.json").read_text())
    m = record["metrics"]
    assert json.loads(stdout)["psnr"] == m["psnr"]
    assert 10 < m["psnr"] < 80 and 0 <= m["lpips"] < 0.5 and 0.9 < m["clip_similarity"] <= 1.0 + 1e-6
    # Same shape at another scale/place: geometry and renders agree after normalisation.
    assert m["chamfer_distance"] == pytest.approx(0.0, abs=1e-9) and m["volumetric_iou"] == 1.0
    assert m["mv_psnr"] > 40 and m["mv_lpips"] < 1e-3
    # No priors.json from a reconstruction, LPIPS on a random trunk: random-weight, said everywhere.
    assert record["tags"] == {
        "benchmark": "realfusion15",
        "case": "banana",
        "variant": "lambda=b",
        "table": "4",
        "category": "fruit",
        "priors": "random",
        "protocol": "paper",  # a run scored against a ground truth names its protocol
    }
    assert m["mv_ssim"] > 0.99 and m["normal_consistency"] > 0.99
    assert record["priors"]["run_priors"] == "unknown" and record["priors"]["models"]["lpips"]["weights"] == "random"
    assert record["details"]["clip_model"] == str(tiny_clip_dir)
    assert record["details"]["clip_views"]["azimuths"] == [0.0, 180.0]
    assert "RANDOM-BACKBONE" in record["details"]["lpips_model"]
    assert len(record["details"]["gso_views"]["elevations"]) == 18
    for name in ("boundary.png", "weights.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    runs = runs_from_mlflow(uri, "eval-test")
    assert len(runs) == 1
    row = runs.iloc[0]
    assert (row["benchmark"], row["case"], row["variant"]) == ("realfusion15", "banana", "lambda=b")
    assert row["priors"] == "random" and row["protocol"] == "paper"
    assert row["psnr"] == pytest.approx(m["psnr"]) and row["volumetric_iou"] == 1.0


def test_evaluate_bad_inputs(tmp_path, capsys, tiny_clip_dir):
    case, out = make_run(tmp_path)
    code, _, err = run_cli(
        capsys,
        "evaluate",
        out,
        "--case",
        case,
        "--gt-mesh",
        tmp_path / "no_gt.obj",
        "--no-log",
        *settings(tiny_clip_dir),
    )
    assert_one_line_error(code, err, "no_gt.obj", "not found")
    code, _, err = run_cli(
        capsys, "evaluate", out, "--case", case, "--tags", "benchmark=gso", "--no-log", *settings(tiny_clip_dir)
    )
    assert_one_line_error(code, err, "ground-truth mesh")
    (out / "views" / "reference.png").unlink()
    code, _, err = run_cli(capsys, "evaluate", out, "--case", case, "--no-log", *settings(tiny_clip_dir))
    assert_one_line_error(code, err, "reference.png", "not found")
    assert not (out / "metrics.json").exists()  # nothing half-written


# ---------------------------------------------------------------- tables
def test_tables_command_from_fixture_runs(tmp_path, capsys):
    code, out, err = run_cli(capsys, "tables", "--out", tmp_path / "tables", "--results", FIXTURE_RUNS, "--no-mlflow")
    assert code == 0, err
    for n in range(1, 7):
        for ext in ("md", "tex", "csv"):
            assert (tmp_path / "tables" / f"table{n}.{ext}").is_file()
    assert (tmp_path / "tables" / "runs.parquet").is_file()
    assert "missing / 0.844" not in (tmp_path / "tables" / "table1.md").read_text()  # our RealFusion15 cell is filled
    code, _, err = run_cli(capsys, "tables", "--out", tmp_path / "t2", "--runs", tmp_path / "nope.csv")
    assert_one_line_error(code, err, "nope.csv", "not found")
