"""End to end on CPU with tiny priors: outputs, schedule consistency, resume, bad inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import trimesh

from consistent123.cli import main as cli_main
from consistent123.config import load_config
from consistent123.testing import TINY_OVERRIDES, make_case
from consistent123.training.schedule import prior_weights

pytestmark = pytest.mark.slow


def _overrides(tiny_models: Path, tmp: Path) -> list[str]:
    # On the CPU, where resuming is bit-exact (tests/gpu/test_gpu_end_to_end.py resumes on CUDA).
    return TINY_OVERRIDES + [
        f"models.tiny_dir={tiny_models}",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        "train.device=cpu",
    ]


def _cli(case: Path, out: Path, overrides: list[str], *extra: str) -> int:
    args = ["reconstruct", str(case), "--out", str(out), "--no-progress"]
    for o in overrides:
        args += ["--set", o]
    return cli_main(args + list(extra))


@pytest.fixture(scope="module")
def finished_run(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    case = make_case(tmp / "cases")
    out = tmp / "out"
    assert _cli(case, out, _overrides(tiny_models, tmp)) == 0
    return tmp, case, out


def test_outputs_present_and_valid(finished_run):
    _, _, out = finished_run
    for name in [
        "mesh.glb",
        "mesh.obj",
        "boundary.json",
        "schedule.csv",
        "config.yaml",
        "run.json",
        "DONE",
        "views/reference.png",
    ]:
        assert (out / name).is_file(), name
    assert len(list((out / "views").glob("novel_*.png"))) == 4
    assert list(out.glob("turntable.*"))
    mesh = trimesh.load(out / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0
    assert mesh.visual.material is not None


def test_schedule_consistent_with_boundary(finished_run):
    _, _, out = finished_run
    boundary = json.loads((out / "boundary.json").read_text())
    rows = list(csv.DictReader((out / "schedule.csv").open()))
    cfg = load_config(out / "config.yaml")
    assert len(rows) == cfg.total_iters
    t_switch = boundary["t_switch"]
    assert t_switch is not None and cfg.boundary.least_3d_only <= t_switch <= cfg.boundary.most_3d_only
    first_stage2 = next(int(r["iteration"]) for r in rows if r["stage"] == "2")
    assert first_stage2 == t_switch
    for r in rows:
        w = prior_weights(int(r["iteration"]), t_switch, cfg.total_iters - 1, cfg.dynamic)
        assert float(r["w3d"]) == pytest.approx(w.w3d) and float(r["w2d"]) == pytest.approx(w.w2d)
    # Every check iteration is recorded, with S and, after the first, a change rate.
    checks = boundary["checks"]
    last_check = cfg.boundary.most_3d_only - 1 if boundary["forced"] else t_switch
    assert not boundary["forced"]  # delta=1 lets the first full window switch
    assert t_switch == cfg.boundary.least_3d_only + cfg.boundary.window * cfg.boundary.every
    assert [c["iteration"] for c in checks] == list(
        range(cfg.boundary.least_3d_only, last_check + 1, cfg.boundary.every)
    )
    assert all(c["change_rate"] is not None for c in checks[1:])
    phases = {r["phase"] for r in rows}
    assert phases == {"nerf", "mesh"}


def test_resume_matches_uninterrupted_and_uses_one_mlflow_run(finished_run, tiny_models, tmp_path):
    tmp, case, reference_out = finished_run
    out = tmp_path / "out"
    overrides = _overrides(tiny_models, tmp)  # same tracking database as the uninterrupted run
    with pytest.raises(SystemExit):
        _cli(case, out, overrides, "--stop-after", "10")
    assert (out / "checkpoints" / "last.pt").is_file() and not (out / "DONE").exists()
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    # Resumed without progress images: the same parameters show that rendering them changes nothing.
    assert _cli(case, out, overrides, "--set", "train.log_images_every=0") == 0
    assert json.loads((out / "run.json").read_text())["run_id"] == run_id
    a = torch.load(reference_out / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    for part in ("nerf", "mesh"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    runs = client.search_runs(
        [json.loads((out / "run.json").read_text())["experiment_id"]],
        filter_string=f"attributes.run_name = '{case.name}'",
    )
    assert sum(r.info.run_id == run_id for r in runs) == 1
    assert client.get_run(run_id).info.status == "FINISHED"


def test_run_records_its_random_priors_and_progress_images(finished_run, tiny_models):
    import mlflow
    import numpy as np
    from PIL import Image

    tmp, _, out = finished_run
    record = json.loads((out / "priors.json").read_text())
    assert record["priors"] == "random" and set(record["models"]) == {"zero123", "stable_diffusion", "clip_judge"}
    assert all(Path(o["source"]).parent == tiny_models and o["weights"] == "random" for o in record["models"].values())
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    run = client.get_run(json.loads((out / "run.json").read_text())["run_id"])
    assert run.data.tags["priors"] == "random"
    assert run.data.tags["model.zero123"] == f"{tiny_models / 'zero123'} (random weights)"
    assert run.data.params["models.zero123"] == str(tiny_models / "zero123")  # not the config's hub id
    # One strip of the 8 check views every train.log_images_every=12 iterations, named by iteration.
    names = [Path(a.path).name for a in client.list_artifacts(run.info.run_id, "progress")]
    iterations = [int(n.removeprefix("check_views_it").removesuffix(".png")) for n in names]
    assert len(iterations) >= 3 and iterations == sorted(iterations) and iterations[-1] == 36
    assert [i // 12 for i in iterations] == [1, 2, 3]
    local = client.download_artifacts(run.info.run_id, f"progress/{names[-1]}", str(tmp / "dl"))
    strip = np.asarray(Image.open(local))
    assert strip.shape[0] >= 128 and strip.shape[1] == 8 * strip.shape[0] and strip.std() > 0


def test_bad_case_folders(tmp_path, capsys):
    case = make_case(tmp_path / "cases")
    (case / "caption.txt").write_text("  \n")
    assert cli_main(["reconstruct", str(case), "--out", str(tmp_path / "o1")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "caption.txt" in err[0] and "empty" in err[0]
    case2 = make_case(tmp_path / "cases2")
    (case2 / "rgba.png").unlink()
    assert cli_main(["reconstruct", str(case2), "--out", str(tmp_path / "o2")]) != 0
    assert "rgba.png" in capsys.readouterr().err
    case3 = make_case(tmp_path / "cases3")
    from PIL import Image

    Image.new("L", (100, 100)).save(case3 / "depth.png")
    assert cli_main(["reconstruct", str(case3), "--out", str(tmp_path / "o3")]) != 0
    err = capsys.readouterr().err
    assert "depth.png" in err and "does not match" in err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()


def test_rerun_of_a_finished_folder_rebuilds_only_missing_outputs(finished_run, tiny_models):
    tmp, case, out = finished_run
    before = (out / "schedule.csv").read_text()
    (out / "mesh.glb").unlink()
    assert _cli(case, out, _overrides(tiny_models, tmp)) == 0
    assert (out / "mesh.glb").is_file() and (out / "DONE").is_file()
    assert (out / "schedule.csv").read_text() == before  # no iteration was run again


def test_changed_configuration_restarts_instead_of_resuming(finished_run, tiny_models, tmp_path):
    tmp, case, reference_out = finished_run
    out = tmp_path / "out"
    overrides = _overrides(tiny_models, tmp)
    with pytest.raises(SystemExit):
        _cli(case, out, overrides, "--stop-after", "8")
    first_run = json.loads((out / "run.json").read_text())["run_id"]
    # Same folder, another learning rate: the old checkpoint must not be continued.
    assert _cli(case, out, overrides + ["train.lr=0.002"]) == 0
    assert json.loads((out / "run.json").read_text())["run_id"] != first_run
    a = torch.load(reference_out / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert b["config_hash"] != a["config_hash"]
    assert b["iteration"] == a["iteration"]
