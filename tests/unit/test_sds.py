"""SDS maths (spec §4): gradient, guidance, timestep range, NaN guard, clipping, scaling."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from consistent123.priors import sds
from consistent123.priors.standins.constants import SD_BETAS, seeded
from consistent123.priors.standins.tiny import _tiny_unet

T_NERF = (0.2, 0.6)


@pytest.fixture(scope="module")
def scheduler():
    return DDIMScheduler(**SD_BETAS, clip_sample=False, set_alpha_to_one=False)


@pytest.fixture(scope="module")
def unet():
    with seeded(11):
        return _tiny_unet(4, 32).eval().requires_grad_(False)


def _constant_predictor(uncond: torch.Tensor, cond: torch.Tensor):
    return lambda noisy, t: (uncond.expand_as(noisy), cond.expand_as(noisy))


def test_autograd_gradient_is_weighted_residual_on_a_real_unet(scheduler, unet):
    torch.manual_seed(0)
    z = torch.randn(2, 4, 8, 8, requires_grad=True)
    text = torch.randn(1, 3, 32)
    scale = 7.5

    def predict(noisy, t):
        b = noisy.shape[0]
        eps = unet(
            torch.cat([noisy, noisy]),
            torch.cat([t, t]),
            encoder_hidden_states=torch.cat([torch.zeros_like(text), text]).repeat_interleave(b, 0),
        ).sample
        return eps.chunk(2)

    loss, info = sds.score_distillation(
        z, predict, scheduler.alphas_cumprod, T_NERF, scale, torch.Generator().manual_seed(3)
    )
    loss.backward()

    # Independent recomputation: diffusers' own add_noise, the UNet called by hand.
    t, noise = info["t"], info["noise"]
    noisy = scheduler.add_noise(z.detach(), noise, t)
    with torch.no_grad():
        emb = torch.cat([torch.zeros_like(text), text]).repeat_interleave(2, 0)
        eps_u, eps_c = unet(torch.cat([noisy, noisy]), torch.cat([t, t]), encoder_hidden_states=emb).sample.chunk(2)
    w = (1 - scheduler.alphas_cumprod[t]).view(-1, 1, 1, 1)
    expected = w * (eps_u + scale * (eps_c - eps_u) - noise)
    # loss = 0.5 ||z - sg(z - grad)||^2 / B  =>  dL/dz = grad / B
    torch.testing.assert_close(z.grad * z.shape[0], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(info["w"], w.flatten())
    assert loss.item() == pytest.approx(0.5 * expected.pow(2).sum().item() / 2, rel=1e-4)


def test_add_noise_matches_diffusers(scheduler):
    z, noise = torch.randn(3, 4, 4, 4), torch.randn(3, 4, 4, 4)
    t = torch.tensor([10, 500, 990])
    torch.testing.assert_close(sds.add_noise(z, noise, t, scheduler.alphas_cumprod), scheduler.add_noise(z, noise, t))


@pytest.mark.parametrize("scale", [0.0, 1.0, 10.0])
def test_classifier_free_guidance_combination(scheduler, scale):
    torch.manual_seed(1)
    z = torch.randn(1, 4, 4, 4, requires_grad=True)
    uncond, cond = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    loss, info = sds.score_distillation(
        z, _constant_predictor(uncond, cond), scheduler.alphas_cumprod, T_NERF, scale, torch.Generator().manual_seed(0)
    )
    loss.backward()
    w = info["w"].view(-1, 1, 1, 1)
    # scale 0 -> unconditional only, 1 -> conditional only, s -> u + s (c - u)
    target = {0.0: uncond, 1.0: cond}.get(scale, uncond + scale * (cond - uncond))
    torch.testing.assert_close(z.grad, w * (target - info["noise"]), rtol=1e-5, atol=1e-6)


def test_same_generator_seed_gives_same_step(scheduler):
    z = torch.randn(2, 4, 4, 4)
    pred = _constant_predictor(torch.zeros(1), torch.ones(1))
    a = sds.score_distillation(z, pred, scheduler.alphas_cumprod, T_NERF, 10, torch.Generator().manual_seed(5))
    b = sds.score_distillation(z, pred, scheduler.alphas_cumprod, T_NERF, 10, torch.Generator().manual_seed(5))
    assert torch.equal(a[1]["t"], b[1]["t"]) and torch.equal(a[1]["noise"], b[1]["noise"])


@pytest.mark.parametrize("t_range", [(0.2, 0.6), (0.2, 0.5), (0.02, 0.98)])
def test_timesteps_stay_in_range_and_cover_it(t_range):
    t = sds.sample_timesteps(20000, t_range, 1000, torch.Generator().manual_seed(0))
    lo, hi = int(t_range[0] * 1000), int(t_range[1] * 1000)
    assert t.dtype == torch.long
    assert int(t.min()) == lo and int(t.max()) == hi
    # uniform: every decile of the range is hit about equally often
    counts = torch.histc(t.float(), bins=10, min=lo, max=hi + 1)
    assert counts.min() > 0.8 * counts.mean()


def test_score_distillation_reports_timesteps_in_range(scheduler):
    z = torch.randn(64, 4, 2, 2)
    _, info = sds.score_distillation(
        z,
        _constant_predictor(torch.zeros(1), torch.zeros(1)),
        scheduler.alphas_cumprod,
        (0.2, 0.5),
        10,
        torch.Generator().manual_seed(0),
    )
    assert info["t"].shape == (64,) and int(info["t"].min()) >= 200 and int(info["t"].max()) <= 500
    assert len(set(info["t"].tolist())) > 30  # one timestep per sample


@pytest.mark.parametrize("bad", [(0.6, 0.2), (-0.1, 0.5), (0.2, 1.5)])
def test_bad_t_range_is_refused(bad):
    with pytest.raises(ValueError):
        sds.timestep_bounds(bad, 1000)


def test_nan_guard_zeroes_non_finite_gradients(scheduler):
    z = torch.randn(1, 4, 4, 4, requires_grad=True)
    cond = torch.randn(1, 4, 4, 4)
    cond[0, 0, 0, 0] = float("nan")
    cond[0, 1, 1, 1] = float("inf")
    loss, info = sds.score_distillation(
        z,
        _constant_predictor(torch.zeros(1, 4, 4, 4), cond),
        scheduler.alphas_cumprod,
        T_NERF,
        5,
        torch.Generator().manual_seed(0),
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    assert z.grad[0, 0, 0, 0] == 0 and z.grad[0, 1, 1, 1] == 0
    assert (z.grad != 0).sum() == z.numel() - 2


def test_grad_clip_bounds_the_gradient(scheduler):
    z = torch.randn(2, 4, 4, 4, requires_grad=True)
    big = 100 * torch.randn(1, 4, 4, 4)
    loss, _ = sds.score_distillation(
        z,
        _constant_predictor(-big, big),
        scheduler.alphas_cumprod,
        T_NERF,
        10,
        torch.Generator().manual_seed(0),
        grad_clip=0.1,
    )
    loss.backward()
    grad = z.grad * z.shape[0]
    assert grad.abs().max() <= 0.1 + 1e-6
    assert torch.isclose(grad.abs(), torch.tensor(0.1)).any()  # the clamp is active, not trivially satisfied


def test_per_sample_grad_scale(scheduler):
    z = torch.randn(3, 4, 4, 4, requires_grad=True)
    pred = _constant_predictor(torch.zeros(1, 4, 4, 4), torch.randn(1, 4, 4, 4))
    loss, info = sds.score_distillation(
        z,
        pred,
        scheduler.alphas_cumprod,
        T_NERF,
        10,
        torch.Generator().manual_seed(0),
        grad_scale=torch.tensor([0.0, 1.0, 0.5]),
    )
    loss.backward()
    ref = z.detach().clone().requires_grad_(True)
    loss_ref, _ = sds.score_distillation(
        ref, pred, scheduler.alphas_cumprod, T_NERF, 10, torch.Generator().manual_seed(0)
    )
    loss_ref.backward()
    assert torch.all(z.grad[0] == 0)
    torch.testing.assert_close(z.grad[1], ref.grad[1])
    torch.testing.assert_close(z.grad[2], 0.5 * ref.grad[2])
