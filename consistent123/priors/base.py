"""What every prior offers the trainer, and the latent-diffusion machinery both real priors share.

A 3D prior (Zero-1-to-3, or the oracle) takes ``set_reference(rgb, camera)`` once; a 2D prior
(Stable Diffusion, or the oracle) ``set_prompt(text)``; both answer ``sds(rgb, cameras, t_range,
generator) -> (loss, info)`` every iteration that uses them. The SDS maths is in ``sds.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import torch
import torch.nn.functional as F

from consistent123.errors import ConfigError
from consistent123.priors.sds import score_distillation
from consistent123.render.cameras import Camera


@dataclass
class Priors:
    """The pretrained parts a run needs; any may be None when the strategy never uses it."""

    zero123: Optional[object] = None
    stable_diffusion: Optional[object] = None
    clip_judge: Optional[object] = None


class ScoreDistillationPrior(Protocol):
    def sds(
        self, rgb: torch.Tensor, cams: Sequence[Camera], t_range, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]: ...


class ImageConditionedPrior(ScoreDistillationPrior, Protocol):
    """The 3D prior's role: conditioned on the reference image and the relative camera."""

    def set_reference(self, rgb: torch.Tensor, camera: Camera) -> None: ...


class TextConditionedPrior(ScoreDistillationPrior, Protocol):
    """The 2D prior's role: conditioned on the caption."""

    def set_prompt(self, text: str) -> None: ...


def load_scheduler(source: str, cache_dir: Optional[str] = None):
    """The scheduler class the repo names (DDIM, PNDM, ...); only its alphas_cumprod is used."""
    import diffusers
    from diffusers import DDIMScheduler

    config = DDIMScheduler.load_config(source, subfolder="scheduler", cache_dir=cache_dir)
    cls = getattr(diffusers, str(config.get("_class_name", "")), None)
    if cls is None or not hasattr(cls, "from_config"):
        cls = DDIMScheduler
    scheduler = cls.from_config(config)
    if not hasattr(scheduler, "alphas_cumprod"):  # e.g. a sampler without a training schedule
        scheduler = DDIMScheduler.from_config(config)
    return scheduler


def frozen(module: torch.nn.Module, device, dtype) -> torch.nn.Module:
    module = module.to(device)
    if next(module.parameters()).dtype != dtype:  # already right when loaded with torch_dtype
        module = module.to(dtype=dtype)
    return module.eval().requires_grad_(False)


def encode_latents(vae, rgb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[B,3,H,W] in [0,1] -> scaled latents, differentiable (SDS flows back through the encoder)."""
    posterior = vae.encode(rgb.to(vae.dtype) * 2.0 - 1.0).latent_dist
    return posterior.sample(generator=generator) * vae.config.scaling_factor


def resize(rgb: torch.Tensor, size: int) -> torch.Tensor:
    if tuple(rgb.shape[-2:]) == (size, size):
        return rgb
    return F.interpolate(rgb, (size, size), mode="bilinear", align_corners=False)


def require_epsilon_prediction(scheduler, name: str) -> None:
    """Both SDS terms read the UNet output as the noise: a v- or x0-predicting model is refused."""
    kind = getattr(scheduler, "config", {}).get("prediction_type", "epsilon")
    if kind != "epsilon":
        raise ConfigError(
            f"{name}: its scheduler's prediction_type is {kind!r}; score distillation here "
            f"needs an epsilon-prediction model"
        )


class LatentSDSPrior:
    """What both priors share: a frozen UNet and VAE, the scheduler's noise levels, and one SDS
    call (render -> resize -> latents -> ``score_distillation``); subclasses add their conditioning."""

    def __init__(
        self,
        components: dict,
        device,
        dtype: torch.dtype,
        name: str,
        resolution: int,
        guidance_scale: float,
        grad_clip: Optional[float],
    ):
        self.device, self.dtype, self.name = torch.device(device), dtype, name
        require_epsilon_prediction(components["scheduler"], name)
        self.unet = frozen(components["unet"], self.device, dtype)
        self.vae = frozen(components["vae"], self.device, dtype)
        self.alphas_cumprod = components["scheduler"].alphas_cumprod.to(self.device, torch.float32)
        self.num_train_timesteps = int(components["scheduler"].config.num_train_timesteps)
        self.resolution, self.guidance_scale, self.grad_clip = resolution, guidance_scale, grad_clip

    def distil(
        self, rgb: torch.Tensor, predict_noise, generator: torch.Generator, t_range, grad_scale=None
    ) -> tuple[torch.Tensor, dict]:
        latents = encode_latents(self.vae, resize(rgb.to(self.device), self.resolution), generator)
        return score_distillation(
            latents,
            predict_noise,
            self.alphas_cumprod,
            t_range,
            self.guidance_scale,
            generator,
            grad_scale=grad_scale,
            grad_clip=self.grad_clip,
            num_train_timesteps=self.num_train_timesteps,
        )
