"""Training with the authors' fixed-step marcher (``nerf.sampler: march``, the library's default)."""

import math

import torch

from consistent123.case import load_case
from consistent123.config import load_config
from consistent123.priors.base import Priors
from consistent123.testing import TINY_OVERRIDES, synthetic_case
from consistent123.training.trainer import Trainer


def test_both_phases_train_on_marched_rays_with_every_regulariser_finite(tmp_path):
    cfg = load_config(
        None,
        [
            *TINY_OVERRIDES,
            "train.use_priors=false",
            "nerf.sampler=march",
            "nerf.max_steps=128",
            "train.nerf_iters=8",
            "train.mesh_iters=2",
        ],
    )
    trainer = Trainer(cfg, load_case(synthetic_case(tmp_path)), Priors(), torch.device("cpu"))
    before = [p.detach().clone() for p in trainer.nerf.parameters()]
    terms = set()
    for _ in range(cfg.total_iters):
        record = trainer.step()
        assert all(math.isfinite(float(v)) for v in record.losses.values()), record
        terms |= set(record.losses)
    # the NeRF's regularisers on the marched samples and weights all ran
    assert {"entropy", "orient", "normal_smooth", "normal_smooth_3d", "depth", "mask", "rgb"} <= terms
    assert trainer.mesh is not None and trainer.iteration == cfg.total_iters
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.nerf.parameters()))
    # after the occupancy grid's first update only occupied steps reach the field
    from consistent123.render.cameras import reference_camera
    from consistent123.render.volume import render_nerf

    out = render_nerf(trainer.nerf, reference_camera(cfg.cameras), 32, perturb=False)
    assert 0 < out["num_samples"] < out["num_candidates"]
    assert out["t"].shape[1] == cfg.nerf.max_steps
