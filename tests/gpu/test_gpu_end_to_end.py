"""On CUDA, with the tiny priors: preprocess -> reconstruct -> export -> evaluate through the CLI,
with the backends ``auto`` resolves there (tinycudann and nvdiffrast where they load), and a
killed run resumed. Skips without CUDA (REQUIRE_GPU=1 makes that a failure)."""

from __future__ import annotations

import json

import pytest
import torch
import trimesh

from consistent123.cli import main as cli_main
from consistent123.testing import RF15, TINY_OVERRIDES

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

# The CPU tests pin the torch hash grid; here the node's own choice is what is checked.
GPU_OVERRIDES = [o for o in TINY_OVERRIDES if not o.startswith("hashgrid.backend=")] + ["train.device=cuda"]


def _cli(*argv) -> int:
    return cli_main([str(a) for a in argv])


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    from consistent123.priors.standins.tiny import build_tiny_clip, ensure_tiny_models

    tmp = tmp_path_factory.mktemp("gpu")
    models = tmp / "tiny"
    ensure_tiny_models(models)
    overrides = GPU_OVERRIDES + [f"models.tiny_dir={models}", f"tracking.uri=sqlite:///{tmp}/mlflow.db"]
    case = tmp / "case" / "banana"
    # The depth map comes from the tiny depth model, run on CUDA.
    assert (
        _cli("preprocess", RF15 / "banana_rgba.png", "--caption", "a yellow banana", "--out", case, *_sets(overrides))
        == 0
    )
    out = tmp / "out"
    assert _cli("reconstruct", case, "--out", out, "--no-progress", *_sets(overrides)) == 0
    return tmp, case, out, overrides, build_tiny_clip(tmp / "clip")


def test_reconstruct_exports_and_logs_the_cuda_backends(gpu_run):
    from consistent123 import backends
    from consistent123.config import load_config

    tmp, case, out, overrides, _ = gpu_run
    assert (out / "DONE").is_file()
    mesh = trimesh.load(out / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0 and mesh.visual.material is not None
    expected = backends.resolve_all(load_config(None, overrides), torch.device("cuda")).params()
    recorded = json.loads((out / "run.json").read_text())
    import mlflow

    params = mlflow.tracking.MlflowClient(recorded["tracking_uri"]).get_run(recorded["run_id"]).data.params
    assert {k: params[k] for k in expected} == expected
    assert params["backend.device"].startswith("cuda") and params["backend.priors_dtype"] == "float16"
    print("backends on this node:", expected)


def test_evaluate_on_cuda(gpu_run, capsys):
    tmp, case, out, overrides, clip = gpu_run
    code = _cli(
        "evaluate",
        out,
        "--case",
        case,
        *_sets(overrides + [f"eval.clip_model={clip}", "eval.lpips_random_backbone=true"]),
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert 5 < metrics["psnr"] < 80 and -1 <= metrics["clip_similarity"] <= 1


def test_resume_on_cuda_matches_within_tolerance(gpu_run, tmp_path):
    """tinycudann, nvdiffrast and CUDA scatter-adds use atomics: equal up to summation order."""
    tmp, case, reference_out, overrides, _ = gpu_run
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        _cli("reconstruct", case, "--out", out, "--no-progress", "--stop-after", "10", *_sets(overrides))
    assert _cli("reconstruct", case, "--out", out, "--no-progress", *_sets(overrides)) == 0
    a = torch.load(reference_out / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    b = torch.load(out / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    assert a["iteration"] == b["iteration"] and a["t_switch"] == b["t_switch"]
    for part in ("nerf", "mesh"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            x, y = a[part][k].float(), b[part][k].float()
            rel = float((x - y).norm() / x.norm().clamp(min=1e-12))
            assert rel < 5e-2, f"{part}.{k} differs after resume (relative {rel:.3g})"


def test_nerf_only_run_exports_on_cuda(gpu_run, tmp_path):
    """No mesh phase: the NeRF is meshed by marching cubes and baked on CUDA."""
    tmp, case, _, overrides, _ = gpu_run
    out = tmp_path / "nerf_only"
    assert _cli("reconstruct", case, "--out", out, "--no-progress", *_sets(overrides + ["train.mesh_iters=0"])) == 0
    assert (out / "DONE").is_file()
    assert len(trimesh.load(out / "mesh.glb", force="mesh").faces) > 0
