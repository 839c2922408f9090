"""The 2D prior: Stable Diffusion (2.1-base by default) SDS on the caption (spec §4, P Eq. 7).

What it shares with Zero-1-to-3 (scheduler, VAE encoding, the SDS call) is in ``base.py``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from consistent123.backends import prior_dtype
from consistent123.config import Config
from consistent123.priors import hub
from consistent123.priors.base import LatentSDSPrior, frozen, load_scheduler


# ---------------------------------------------------------------- the 2D prior
def _load_components(source: str, cache_dir: Optional[str] = None, dtype=torch.float32):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return dict(
        unet=UNet2DConditionModel.from_pretrained(source, subfolder="unet", cache_dir=cache_dir, torch_dtype=dtype),
        vae=AutoencoderKL.from_pretrained(source, subfolder="vae", cache_dir=cache_dir, torch_dtype=dtype),
        text_encoder=CLIPTextModel.from_pretrained(source, subfolder="text_encoder", cache_dir=cache_dir),
        tokenizer=CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", cache_dir=cache_dir),
        scheduler=load_scheduler(source, cache_dir=cache_dir),
    )


def view_text_embedding(azimuth: float, front: torch.Tensor, side: torch.Tensor, back: torch.Tensor) -> torch.Tensor:
    """R's view-dependent prompt (nerf/utils.py train_step, perp-neg off): linear in |azimuth|
    between front (0) and side (90) for azimuth in [-90, 90), else between side and back (180)."""
    a = (float(azimuth) + 180.0) % 360.0 - 180.0  # into [-180, 180)
    if -90.0 <= a < 90.0:
        r = 1.0 - abs(a) / 90.0
        return r * front + (1.0 - r) * side
    r = 1.0 - (abs(a) - 90.0) / 90.0
    return r * side + (1.0 - r) * back


class StableDiffusionPrior(LatentSDSPrior):
    """Text-conditioned SDS: ``set_prompt`` once, then ``sds`` every iteration that uses the 2D prior."""

    def __init__(self, components: dict, cfg: Config, device, dtype: torch.dtype, name: str):
        super().__init__(
            components, device, dtype, name, cfg.sds.sd_resolution, cfg.sds.guidance_scale_2d, cfg.sds.grad_clip
        )
        self.text_encoder = frozen(components["text_encoder"], self.device, dtype)
        self.tokenizer = components["tokenizer"]
        self.negative_prompt = cfg.sds.negative_prompt
        self.view_dependent = cfg.sds.view_dependent_prompt
        # [4, L, D]: negative, then "<caption>, front/side/back view" (or the caption 3 times)
        self.text_embeddings: Optional[torch.Tensor] = None

    @classmethod
    def from_config(cls, cfg: Config, device, source: Optional[str] = None) -> "StableDiffusionPrior":
        source = source or cfg.models.stable_diffusion
        dtype = prior_dtype(cfg, device)
        parts = hub.load_pretrained(
            _load_components,
            source,
            f"Stable Diffusion {source}",
            "models.stable_diffusion",
            cache_dir=cfg.models.cache_dir,
            dtype=dtype,
        )
        return cls(parts, cfg, device, dtype, source)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return self.text_encoder(tokens.input_ids.to(self.device))[0]

    def set_prompt(self, text: str) -> None:
        views = [f"{text}, {v} view" for v in ("front", "side", "back")] if self.view_dependent else [text] * 3
        self.text_embeddings = self.encode_text([self.negative_prompt, *views])

    def view_embeddings(self, cams: Sequence) -> torch.Tensor:
        """Conditional embedding per view [B, L, D], interpolated by the camera's azimuth."""
        _, front, side, back = self.text_embeddings
        return torch.stack([view_text_embedding(c.azimuth, front, side, back) for c in cams])

    @torch.no_grad()
    def predict_noise(self, noisy: torch.Tensor, t: torch.Tensor, cams: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_uncond, eps_cond) in one UNet call; unconditional = the negative prompt."""
        b = noisy.shape[0]
        uncond, cond = self.text_embeddings[:1].expand(b, -1, -1), self.view_embeddings(cams)
        eps = self.unet(
            torch.cat([noisy, noisy]).to(self.dtype),
            torch.cat([t, t]),
            encoder_hidden_states=torch.cat([uncond, cond]).to(self.dtype),
        ).sample
        return eps.chunk(2)

    def sds(self, rgb: torch.Tensor, cams: Sequence, t_range, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """SDS loss of views ``rgb`` [B,3,H,W] in [0,1] seen from ``cams`` (the azimuth picks the
        prompt embedding); gradient flows back to ``rgb``. Same signature as Zero123Prior.sds."""
        if self.text_embeddings is None:
            raise RuntimeError("StableDiffusionPrior.sds called before set_prompt")
        if len(cams) != rgb.shape[0]:
            raise ValueError(f"{rgb.shape[0]} images but {len(cams)} cameras")
        return self.distil(rgb, lambda noisy, t: self.predict_noise(noisy, t, cams), generator, t_range)
