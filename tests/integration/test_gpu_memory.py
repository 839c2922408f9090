"""The GPU memory projection on the CPU: what the saved-tensor count counts, which prior parts
each phase holds, the pre-flight decision on fake numbers, and the free-encoders switch."""

from __future__ import annotations

import logging

import pytest
import torch

from consistent123.training.memory_projection import GB, MetaPriors, SavedTensors, advise, module_bytes, preflight


def test_saved_tensors_count_each_storage_once_at_the_gpu_dtype():
    x = torch.randn(1000, requires_grad=True)
    with SavedTensors() as fp32:
        y = x * x  # saves x twice (self and other): one storage
        y.exp().sum()  # exp saves its result: a second storage
    assert fp32.bytes == 2 * 1000 * 4
    with SavedTensors(torch.float16) as fp16:
        (x * x).exp().sum()
    assert fp16.bytes == 2 * 1000 * 2
    with SavedTensors(torch.float16) as meta:
        a = torch.zeros(10, 10, device="meta", requires_grad=True)
        b = torch.zeros(10, 10, device="meta", requires_grad=True)
        (a @ b).sum()
        (a @ a).sum()  # a again: counted once (meta tensors by identity)
    assert meta.bytes == 2 * 100 * 2


def test_module_bytes_in_the_gpu_dtype():
    lin = torch.nn.Linear(10, 4)  # 44 parameters
    lin.register_buffer("steps", torch.zeros(3, dtype=torch.int64))
    assert module_bytes(lin) == 44 * 4 + 3 * 8
    assert module_bytes(lin, torch.float16) == 44 * 2 + 3 * 8


def test_phases_hold_their_priors():
    parts = {"unet": 1, "vae": 2, "cc_projection": 3, "image_encoder": 4, "text_encoder": 5}
    priors = MetaPriors(zero123=parts, stable_diffusion=parts, clip_judge=6)
    assert set(priors.resident("stage1", False)) == {
        "zero123.unet",
        "zero123.vae",
        "zero123.cc_projection",
        "zero123.image_encoder",
        "clip_judge",
    }
    assert {"sd.unet", "sd.vae", "sd.text_encoder", "clip_judge"} <= set(priors.resident("mesh", False))
    freed = set(priors.resident("stage2", True))
    assert "sd.text_encoder" not in freed and "zero123.image_encoder" not in freed and "clip_judge" not in freed
    assert "clip_judge" in priors.resident("stage1", True)  # the boundary checks need it


def test_advise_fits_as_configured():
    fits, line = advise({"as configured": 10 * GB, "free": 8 * GB}, free_bytes=24 * GB, margin_bytes=2 * GB)
    assert fits and "fits" in line and "10.0 GB" in line


def test_advise_names_the_first_switch_that_fits():
    peaks = {"as configured": 30 * GB, "perf.free_encoders=true": 23 * GB, "both": 20 * GB}
    fits, line = advise(peaks, free_bytes=24 * GB, margin_bytes=2 * GB)
    assert not fits
    assert "both would fit (20.0 GB)" in line  # 23 + 2 margin > 24
    fits, line = advise(peaks, free_bytes=26 * GB, margin_bytes=2 * GB)
    assert "perf.free_encoders=true would fit" in line
    assert "\n" not in line


def test_advise_when_nothing_fits():
    fits, line = advise({"as configured": 30 * GB, "a": 28 * GB}, free_bytes=16 * GB)
    assert not fits and "no memory switch fits (smallest: a, 28.0 GB)" in line


def test_preflight_only_on_cuda_and_full_size_priors(monkeypatch):
    from consistent123.config import load_config
    from consistent123.training import memory_projection

    monkeypatch.setattr(memory_projection.torch.cuda, "mem_get_info", lambda device: (20 * GB, 80 * GB))
    assert preflight(load_config(None), "cpu") is None
    assert preflight(load_config(None, ["models.tiny_dir=/x"]), "cuda") is None
    assert preflight(load_config(None, ["perf.memory_preflight=false"]), "cuda") is None


def test_preflight_line_from_the_projections(monkeypatch, caplog):
    """On a (faked) CUDA device with 20 GB free: each switch set projected, one warning line."""
    from consistent123.config import load_config
    from consistent123.training import memory_projection

    peaks = {False: 25 * GB, True: 17 * GB}

    class Fake:
        def __init__(self, cfg):
            self.cfg = cfg

        def peak(self):
            return peaks[self.cfg.perf.free_encoders]

    monkeypatch.setattr(memory_projection.torch.cuda, "mem_get_info", lambda device: (20 * GB, 80 * GB))
    monkeypatch.setattr(memory_projection.torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(memory_projection.MetaPriors, "build", classmethod(lambda cls: None))
    monkeypatch.setattr(memory_projection, "field_costs", lambda cfg, device: {})
    monkeypatch.setattr(memory_projection, "project", lambda cfg, device, priors, fields: Fake(cfg))
    with caplog.at_level(logging.INFO, logger="consistent123.training.memory_projection"):
        line = preflight(load_config(None), "cuda")
    assert "perf.free_encoders=true would fit (17.0 GB)" in line
    assert [r.levelname for r in caplog.records] == ["WARNING"]


@pytest.mark.slow
def test_free_encoders_drops_them_after_the_embeddings():
    from consistent123.config import load_config
    from consistent123.priors.registry import load_priors
    from consistent123.testing import TINY_OVERRIDES
    from consistent123.training import perf
    from consistent123.training.trainer import Trainer
    from tests.integration.test_perf import synthetic_case
    from tests.support.tiny_models import tiny_models_dir

    cfg = load_config(
        None,
        TINY_OVERRIDES + [f"models.tiny_dir={tiny_models_dir()}", "dynamic.strategy=dynamic_only"],
    )
    cpu = torch.device("cpu")
    trainer = Trainer(cfg, synthetic_case(), load_priors(cfg, cpu), cpu)
    perf.release_encoders(trainer, cfg.perf)  # off: nothing changes
    assert trainer.priors.zero123.image_encoder is not None
    on = cfg.perf.model_copy(update={"free_encoders": True})
    perf.release_encoders(trainer, on)
    assert trainer.priors.zero123.image_encoder is None and trainer.priors.stable_diffusion.text_encoder is None
    assert trainer.priors.zero123.image_embedding is not None
    assert trainer.priors.stable_diffusion.text_embeddings is not None
    trainer.step()  # trains without them


@pytest.mark.slow
def test_render_activations_are_linear_in_pixels():
    """What lets a CPU count the renders at two small sizes: the NeRF render's saved bytes at
    24 px from the line through 8 px and 16 px match the direct count."""
    from consistent123.config import load_config
    from consistent123.fields.nerf import NeRFField
    from consistent123.training.memory_projection import _fitted, _render_activations

    cfg = load_config(
        None,
        [
            "hashgrid.backend=torch",
            "hashgrid.log2_hashmap_size=14",
            "nerf.sampler=stratified",
            "nerf.num_steps=16",
            "nerf.upsample_steps=8",
        ],
    )
    torch.manual_seed(0)
    field = NeRFField(cfg.nerf, cfg.hashgrid)

    def count(size):
        return _render_activations(field, cfg, size, "cpu", torch.float16)

    direct = count(24)
    assert _fitted(count, 24, (8, 16)) == pytest.approx(direct, rel=0.03)
    assert _fitted(count, 8, (8, 16)) == count(8)  # no extrapolation below the fit sizes
