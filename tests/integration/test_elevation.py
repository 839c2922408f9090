"""The input view's elevation: every camera relative to the input follows it, the estimate
with the oracle in the 3D role recovers a known-answer render's, and the case records it."""

from __future__ import annotations

import json

import pytest
import torch

from consistent123.case import ELEVATION, given_elevation, load_case
from consistent123.config import CamerasConfig, EvalConfig, load_config
from consistent123.errors import ConfigError
from consistent123.render.cameras import (
    check_cameras,
    clip_view_cameras,
    gso_cameras,
    novel_polar_range,
    reference_camera,
    sample_novel_camera,
)
from consistent123.testing import DATASETS, RF15


def test_cameras_relative_to_the_input_follow_its_elevation_and_the_gso_views_do_not():
    level, raised = CamerasConfig(), CamerasConfig(ref_elevation=30.0)
    assert reference_camera(level).polar == 90.0 and reference_camera(raised).polar == 60.0
    assert novel_polar_range(level) == (45.0, 105.0) and novel_polar_range(raised) == (15.0, 75.0)
    assert novel_polar_range(CamerasConfig(ref_elevation=30.0, polar_range_frame="world")) == (45.0, 105.0)
    assert {c.polar for c in check_cameras(raised)} == {60.0}
    assert {c.polar for c in clip_view_cameras(EvalConfig(), raised)} == {60.0}
    gen = torch.Generator().manual_seed(0)
    polars = [sample_novel_camera(raised, gen).polar for _ in range(200)]
    assert 15.0 <= min(polars) and max(polars) <= 75.0 and max(polars) > 60.0
    assert [c.polar for c in gso_cameras(EvalConfig(), 2.5, 40.0)] == [90.0 - e for e in EvalConfig().gso_elevations]


def test_auto_must_be_resolved_before_a_camera_is_placed():
    with pytest.raises(ConfigError, match="auto"):
        reference_camera(CamerasConfig(ref_elevation="auto"))
    with pytest.raises(ConfigError, match="ref_elevation"):
        load_config(None, ["cameras.ref_elevation=95"])


@pytest.mark.parametrize("obj,true_elevation", [("CITY_TAXI_POLICE_CAR", -10.0), ("Android_Figure_Panda", 30.0)])
def test_auto_recovers_a_known_answer_renders_elevation_through_the_oracle(tmp_path, obj, true_elevation):
    """The oracle in the 3D role answers relative to the true reference camera; the estimator
    sees only the rendered case and the oracle's generated views."""
    from consistent123.experiments.known_answer import GROUND_TRUTH, oracle_config, prepare_ground_truth, render_case
    from consistent123.meshes import load_mesh
    from consistent123.priors.elevation import estimate_elevation
    from consistent123.priors.oracle import OraclePrior

    cfg = load_config(DATASETS.parent / "config" / "known_answer.yaml")
    gt = prepare_ground_truth(load_mesh(DATASETS / "known_answer" / f"{obj}.ply"), "z", cfg.oracle)
    render_case(gt, tmp_path, cfg, "a thing", true_elevation)
    run_cfg = oracle_config(cfg, tmp_path / GROUND_TRUTH, true_elevation)
    prior = OraclePrior.from_config(run_cfg, "cpu", "3d")
    estimate = estimate_elevation(prior, load_case(tmp_path).rgba, run_cfg.cameras, run_cfg.elevation)
    assert estimate.elevation == pytest.approx(true_elevation, abs=5.0)
    assert estimate.prior_evaluations == len(run_cfg.elevation.view_azimuths) * run_cfg.elevation.sampling_steps
    # The level assumption is measurably worse than the estimate.
    scores = dict(zip(estimate.candidates, estimate.scores))
    assert scores[0.0] < scores[estimate.elevation]


def test_preprocess_records_a_known_elevation_and_a_new_image_forgets_it(tmp_path):
    from consistent123.cli import main as cli_main

    out = tmp_path / "case"
    args = ["preprocess", str(RF15 / "cactus_rgba.png"), "--out", str(out), "--caption", "a cactus"]
    args += ["--depth", str(RF15 / "cactus_depth.png"), "--set", "preprocess.size=64"]
    assert cli_main([*args, "--elevation", "25"]) == 0
    assert given_elevation(out) == 25.0
    assert json.loads((out / ELEVATION).read_text()) == {"given": 25.0, "auto": {}}
    assert cli_main(args) == 0  # preprocessed again without it: unknown, no stale record
    assert given_elevation(out) is None
