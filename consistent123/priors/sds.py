"""Score Distillation Sampling, one implementation for both priors (spec §4).

The maths only: a prior hands in its latents, a callable that predicts the noise of a noisy
latent (unconditional and conditional in one go), its scheduler's ``alphas_cumprod`` and a
``torch.Generator``. Keeping the model out of this file is what lets the tests check the
gradient, the guidance combination and the timestep range exactly.

    t ~ U{int(t_min*N) .. int(t_max*N)}            (N = num_train_timesteps, 1000)
      a fixed t is the range (t_max, t_max): ``timestep_range`` turns a mode into the range, so
      both priors share this one path (R's Zero-1-to-3 uses t = t_max every iteration)
    z_t = sqrt(ab_t) z + sqrt(1 - ab_t) eps
    eps_hat = eps_uncond + s (eps_cond - eps_uncond)
    grad = scale * w(t) (eps_hat - eps),  w(t) = 1 - ab_t,  non-finite -> 0, optional clamp
    loss = 0.5 * ||z - sg(z - grad)||^2 / B          => d loss / d z = grad / B
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

# (noisy latents [B, C, h, w], timesteps [B]) -> (eps_uncond, eps_cond), each like the latents.
NoisePredictor = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def timestep_bounds(t_range: Sequence[float], num_train_timesteps: int) -> tuple[int, int]:
    """Integer [lo, hi] (both inclusive) of the sampled timestep, kept inside [0, N - 1]."""
    t_min, t_max = float(t_range[0]), float(t_range[1])
    if not 0.0 <= t_min <= t_max <= 1.0:
        raise ValueError(f"t_range must satisfy 0 <= t_min <= t_max <= 1, got {tuple(t_range)}")
    lo = int(t_min * num_train_timesteps)
    hi = min(int(t_max * num_train_timesteps), num_train_timesteps - 1)
    return min(lo, hi), hi


def timestep_range(t_range: Sequence[float], mode: str) -> tuple[float, float]:
    """The range to sample from: the configured one ("uniform") or just its top ("max")."""
    if mode == "uniform":
        return float(t_range[0]), float(t_range[1])
    if mode == "max":
        return float(t_range[1]), float(t_range[1])
    raise ValueError(f"unknown timestep mode {mode!r}; expected 'max' or 'uniform'")


def sample_timesteps(
    batch: int, t_range: Sequence[float], num_train_timesteps: int, generator: torch.Generator
) -> torch.Tensor:
    """One integer timestep per sample, uniform over the configured range (on the generator's device)."""
    lo, hi = timestep_bounds(t_range, num_train_timesteps)
    return torch.randint(lo, hi + 1, (batch,), generator=generator, device=generator.device, dtype=torch.long)


def add_noise(
    latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """Forward diffusion q(z_t | z) (the DDPM formula every diffusers scheduler uses)."""
    ab = alphas_cumprod.to(latents.device, torch.float32)[t.to(latents.device)].view(-1, *([1] * (latents.dim() - 1)))
    return (ab.sqrt() * latents.float() + (1.0 - ab).sqrt() * noise.float()).to(latents.dtype)


def classifier_free_guidance(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    return eps_uncond + scale * (eps_cond - eps_uncond)


def sds_weight(t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """w(t) = 1 - alphā_t (spec §4), float32, on the device of ``t``."""
    return 1.0 - alphas_cumprod.to(t.device, torch.float32)[t]


def sds_gradient(
    eps_hat: torch.Tensor,
    noise: torch.Tensor,
    w: torch.Tensor,
    grad_scale: Union[float, torch.Tensor, None] = None,
    grad_clip: Optional[float] = None,
) -> torch.Tensor:
    """grad = scale * w * (eps_hat - eps); NaN/inf zeroed (a NaN step must not poison the field)."""
    shape = (-1,) + (1,) * (eps_hat.dim() - 1)
    grad = w.to(eps_hat.device, torch.float32).view(shape) * (eps_hat.float() - noise.float())
    if grad_scale is not None:
        scale = torch.as_tensor(grad_scale, dtype=torch.float32, device=grad.device)
        grad = grad * (scale.view(shape) if scale.dim() > 0 else scale)
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    if grad_clip is not None and grad_clip > 0:
        grad = grad.clamp(-grad_clip, grad_clip)
    return grad


def sds_loss(latents: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5 * ||z - sg(z - grad)||^2 / B: a scalar whose gradient w.r.t. z is exactly grad / B."""
    z = latents.float()
    target = (z - grad).detach()
    return 0.5 * ((z - target) ** 2).sum() / latents.shape[0]


def score_distillation(
    latents: torch.Tensor,
    predict_noise: NoisePredictor,
    alphas_cumprod: torch.Tensor,
    t_range: Sequence[float],
    guidance_scale: float,
    generator: torch.Generator,
    grad_scale: Union[float, torch.Tensor, None] = None,
    grad_clip: Optional[float] = None,
    num_train_timesteps: Optional[int] = None,
) -> tuple[torch.Tensor, dict]:
    """One SDS step on ``latents`` (which carry the autograd graph back to the rendered image).

    Returns ``(loss, info)`` with info = {t [B] (long), w [B], grad_norm (0-d), noise (the eps
    drawn, for inspection)}, all on the latents' device.
    """
    batch = latents.shape[0]
    n_train = int(num_train_timesteps or alphas_cumprod.shape[0])
    t = sample_timesteps(batch, t_range, n_train, generator)
    noise = torch.randn(latents.shape, generator=generator, device=generator.device, dtype=torch.float32)
    t, noise = t.to(latents.device), noise.to(latents.device)
    with torch.no_grad():
        noisy = add_noise(latents.detach(), noise, t, alphas_cumprod)
        eps_uncond, eps_cond = predict_noise(noisy, t)
        eps_hat = classifier_free_guidance(eps_uncond.float(), eps_cond.float(), guidance_scale)
        w = sds_weight(t, alphas_cumprod)
        grad = sds_gradient(eps_hat, noise, w, grad_scale, grad_clip)
    loss = sds_loss(latents, grad)
    # Left on the device: reading them is the caller's host sync, not every iteration's.
    info = {"t": t, "w": w, "grad_norm": grad.norm(), "noise": noise.detach()}
    return loss, info
