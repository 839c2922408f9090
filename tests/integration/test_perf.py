"""The speed switches of cfg.perf against the plain path on the CPU: same losses, same gradients."""

from __future__ import annotations

import copy

import pytest
import torch

from consistent123.case import Case
from consistent123.config import load_config
from consistent123.priors.base import Priors
from consistent123.priors.registry import load_priors
from consistent123.render.cameras import Camera
from consistent123.testing import TINY_OVERRIDES
from consistent123.training.perf import TargetCache, host_values, optimise_field, optimise_priors
from consistent123.training.trainer import Trainer
from tests.support.tiny_models import tiny_config, tiny_models_dir

VIEW = Camera(75.0, 40.0, 3.2, 40.0)


def synthetic_case(size: int = 64) -> Case:
    """A coloured disc with a depth bump: enough for every loss of the reference view."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    r2 = xx**2 + yy**2
    mask = (r2 < 0.5).float()
    rgba = torch.stack([0.5 + 0.4 * xx, 0.5 + 0.4 * yy, 0.3 + 0.2 * r2, mask]).clamp(0, 1)
    depth = ((0.3 + r2) * mask)[None]
    return Case("disc", rgba, depth, "a yellow disc")


@pytest.fixture(scope="module")
def case():
    return synthetic_case()


def _run(case, overrides: list[str], steps: int) -> Trainer:
    cfg = load_config(
        None,
        TINY_OVERRIDES
        + [
            f"models.tiny_dir={tiny_models_dir()}",
            "dynamic.strategy=dynamic_only",
            "cameras.ref_view_interval=2",
            *overrides,
        ],
    )
    trainer = Trainer(cfg, case, load_priors(cfg, torch.device("cpu")), torch.device("cpu"))
    for _ in range(steps):
        trainer.step()
    return trainer


def test_exact_switches_train_the_same(case):
    """Sync-free logging, cached targets, device sampling and TF32 change nothing on the CPU:
    the same losses every iteration (reference and novel views, both priors) and the same field."""
    plain = _run(case, [], 4)
    fast = _run(
        case,
        ["perf.sync_free_logging=true", "perf.cache_targets=true", "perf.device_sampling=true", "perf.tf32=true"],
        4,
    )
    assert any(isinstance(v, torch.Tensor) for row in fast.records for v in row.values())  # left on the device
    assert fast.host_records() == plain.records
    assert {r["view"] for r in plain.records} == {"reference", "novel"}
    assert any("loss_sds_2d" in r for r in plain.records) and any(
        "loss_rgb" in r or "loss_mask" in r for r in plain.records
    )
    for a, b in zip(plain.nerf.parameters(), fast.nerf.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("rule", ["binary", "soft"])
def test_target_cache_equals_case_targets(case, rule):
    cache = TargetCache(case, torch.device("cpu"), rule)
    for size, bg in ((32, torch.tensor([0.2, 0.7, 0.1])), (48, torch.rand(3)), (32, torch.ones(3))):
        want, got = case.targets(size, bg, rule), cache.targets(size, bg)
        assert want.keys() == got.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-7)
    assert sorted(cache._by_size) == [32, 48]


def test_host_values_reads_all_device_scalars():
    rows = [{"a": torch.tensor(1.5), "b": 2.0, "view": "novel"}, {"a": torch.tensor([0.25])}]
    host_values(rows)
    assert rows == [{"a": 1.5, "b": 2.0, "view": "novel"}, {"a": 0.25}]


def _sds_loss_and_grad(priors: Priors, seed: int = 0):
    """Both priors' SDS on one fixed image: (losses, d loss / d image)."""
    priors.zero123.set_reference(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)), VIEW)
    priors.stable_diffusion.set_prompt("a banana")
    rgb = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    cams = [Camera(70.0, 100.0, 3.2, 40.0)]
    l3, _ = priors.zero123.sds(rgb, cams, (0.2, 0.6), torch.Generator().manual_seed(seed))
    l2, _ = priors.stable_diffusion.sds(rgb, cams, (0.2, 0.6), torch.Generator().manual_seed(seed))
    (l3 + l2).backward()
    return torch.stack([l3.detach(), l2.detach()]).float(), rgb.grad


def _priors(cfg) -> Priors:
    from consistent123.priors import registry

    dev = torch.device("cpu")
    return Priors(zero123=registry.load_zero123(cfg, dev), stable_diffusion=registry.load_stable_diffusion(cfg, dev))


@pytest.fixture(scope="module")
def plain_sds():
    return _sds_loss_and_grad(_priors(tiny_config()))


@pytest.mark.parametrize("switch", ["channels_last", pytest.param("compile", marks=pytest.mark.slow)])
def test_prior_switches_same_sds(switch, plain_sds):
    cfg = tiny_config()
    setattr(cfg.perf, switch, True)
    cfg.perf.compile_backend = "aot_eager"  # the capture and its autograd, without C++ code generation
    priors = _priors(cfg)
    optimise_priors(priors, cfg.perf)
    if switch == "channels_last":
        assert priors.zero123.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    else:
        assert priors.zero123.unet._compiled_call_impl is not None
    loss, grad = _sds_loss_and_grad(priors)
    assert plain_sds[1].abs().max() > 0
    torch.testing.assert_close(loss, plain_sds[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, plain_sds[1], rtol=1e-4, atol=1e-6)


def test_bfloat16_priors_close_to_float32(plain_sds):
    cfg = tiny_config()
    cfg.perf.prior_dtype = "bfloat16"
    priors = _priors(cfg)
    assert next(priors.stable_diffusion.unet.parameters()).dtype == torch.bfloat16
    loss, grad = _sds_loss_and_grad(priors)
    assert grad.dtype == torch.float32  # the field's side stays float32
    # bf16 keeps 8 mantissa bits: losses within a few per cent, gradients pointing the same way.
    torch.testing.assert_close(loss, plain_sds[0], rtol=5e-2, atol=1e-3)
    cos = torch.nn.functional.cosine_similarity(grad.flatten(), plain_sds[1].flatten(), dim=0)
    assert cos > 0.98


@pytest.mark.slow
def test_compiled_field_same_loss_and_gradients():
    from consistent123.fields.nerf import NeRFField
    from consistent123.render.volume import render_nerf

    cfg = load_config(None, TINY_OVERRIDES + ["perf.compile=true", "perf.compile_backend=aot_eager"])
    torch.manual_seed(0)
    plain = NeRFField(cfg.nerf, cfg.hashgrid)
    fast = copy.deepcopy(plain)
    optimise_field(fast, cfg.perf)
    assert list(fast.state_dict()) == list(plain.state_dict())  # checkpoints keep their keys
    grads = []
    for field in (plain, fast):
        out = render_nerf(
            field, VIEW, 24, shading=("lambertian", 0.3, None), generator=torch.Generator().manual_seed(0)
        )
        loss = out["rgb"].square().mean() + out["opacity"].mean()
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in field.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-6, atol=1e-7)
    for a, b in zip(grads[1][1], grads[0][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
