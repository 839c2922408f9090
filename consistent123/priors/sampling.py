"""Deterministic DDIM sampling (eta 0) shared by the 3D priors: generated views for the
input-elevation estimate (consistent123/priors/elevation.py).

Space-agnostic: the priors run it on latents (Zero-1-to-3, then the VAE decodes) or on pixels
(the oracle, whose ideal noise makes every step's clean estimate the truth, so the sample is
exactly the truth's render).
"""

from __future__ import annotations

from typing import Callable

import torch


def sampling_timesteps(num_train_timesteps: int, steps: int) -> torch.Tensor:
    """``steps`` timesteps from the noisiest to the cleanest, evenly spread (DDIM's "linspace")."""
    return torch.linspace(num_train_timesteps - 1, 0, steps).round().long()


@torch.no_grad()
def ddim_sample(
    predict_noise: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    shape: tuple[int, ...],
    alphas_cumprod: torch.Tensor,
    steps: int,
    guidance_scale: float,
    generator: torch.Generator,
    device,
) -> torch.Tensor:
    """x_0 from pure noise; ``predict_noise(x_t, t) -> (eps_uncond, eps_cond)`` is called ``steps`` times."""
    ab_all = alphas_cumprod.to(device, torch.float32)
    timesteps = sampling_timesteps(len(ab_all), steps)
    x = torch.randn(shape, generator=generator, device=generator.device).to(device)
    for i, t in enumerate(timesteps):
        uncond, cond = predict_noise(x, t.expand(shape[0]).to(device))
        eps = uncond.float() + guidance_scale * (cond.float() - uncond.float())
        ab = ab_all[t]
        x0 = (x - (1.0 - ab).sqrt() * eps) / ab.sqrt()
        ab_next = ab_all[timesteps[i + 1]] if i + 1 < len(timesteps) else torch.ones((), device=device)
        x = ab_next.sqrt() * x0 + (1.0 - ab_next).sqrt() * eps
    return x
