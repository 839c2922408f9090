"""The mesh phase again from a finished known-answer run's NeRF (benchmarks/mesh_probe.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from consistent123.config import load_config
from consistent123.testing import TINY_OVERRIDES

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tiny_models, tmp_path_factory):
    from consistent123.experiments.known_answer import known_answer

    tmp = tmp_path_factory.mktemp("ka")
    overrides = [
        *TINY_OVERRIDES,
        f"models.tiny_dir={tiny_models}",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        "dynamic.fixed_switch_iter=12",
        "eval.iou_resolution=32",
        "eval.render_size=32",
        "eval.chamfer_points=500",
        "export.turntable_views=2",
        "nerf.blob_fade=0.0",  # 24 iterations: without its blob the NeRF is still empty
    ]
    cfg = load_config(REPO / "config" / "known_answer.yaml", overrides)
    known_answer("hard:cup", tmp / "source", cfg, progress=False)
    return tmp / "source", cfg


def test_the_mesh_phase_restarts_from_the_sources_nerf_with_another_tet_grid(finished, tmp_path):
    from consistent123.experiments.mesh_probe import mesh_phase_again, source_config

    source, cfg = finished
    summary = mesh_phase_again(source, tmp_path / "again", ["dmtet.tet_grid_size=24"])
    assert source_config(source, []).dmtet.tet_grid_size == cfg.dmtet.tet_grid_size == 16
    written = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert written["overrides"] == ["dmtet.tet_grid_size=24"] and written["metrics"] == summary["metrics"]
    assert 0.0 < summary["metrics"]["volumetric_iou"] <= 1.0 and "cavity_filled" in summary["metrics"]
    assert (tmp_path / "again" / "cross_section.png").is_file()
    assert (tmp_path / "again" / "run" / "mesh.glb").is_file()
    # Only the mesh phase ran: the source's NeRF answers as it did in the source's checkpoint.
    state = torch.load(source / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert summary["metrics"]["time_s"] > 0 and state["iteration"] == cfg.total_iters
