"""The 3D priors a run can use (``models.prior_3d``): one table, the one place naming each.

All three pretrained variants are Zero-1-to-3's architecture (an 8-channel UNet conditioned
on a CLIP image embedding projected together with a 4-entry camera vector); they differ in
weights, in the camera vector's 4th entry, and in the guidance their authors recommend.
``layout`` names a camera vector of ``consistent123.render.cameras.CAMERA_LAYOUTS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from consistent123.config import Config
from consistent123.errors import ConfigError


@dataclass(frozen=True)
class PriorVariant:
    name: str
    title: str
    model_id: Optional[str]  # diffusers-format hub repo (None: nothing to fetch)
    layout: str  # camera vector: "zero123" [dpolar, sin daz, cos daz, dradius] | "stable_zero123" [.., polar_in]
    guidance_scale: Optional[float]  # the SDS guidance its users run (sds.guidance_scale_3d sets the run's)
    guidance_source: str
    licence: str
    needs_elevation: bool  # its camera vector holds the input view's absolute polar angle


VARIANTS = {
    v.name: v
    for v in (
        PriorVariant(
            "zero123_xl",
            "Zero-1-to-3 XL (the paper's)",
            "ashawkey/zero123-xl-diffusers",
            "zero123",
            10.0,
            "the authors' code (spec §4: guidance_scale 10, as sds.guidance_scale_3d)",
            "Zero-1-to-3 release (cvlab-columbia/zero123, MIT); fine-tuned from Stable Diffusion "
            "image variations (CreativeML OpenRAIL-M): see the model card",
            False,
        ),
        PriorVariant(
            "zero123",
            "Zero-1-to-3 (165000 steps, Objaverse)",
            "kxic/zero123-165000",
            "zero123",
            3.0,
            "threestudio configs/zero123.yaml (guidance_scale 3.0)",
            "Zero-1-to-3 release (cvlab-columbia/zero123, MIT); fine-tuned from Stable Diffusion "
            "image variations (CreativeML OpenRAIL-M): see the model card",
            False,
        ),
        PriorVariant(
            "stable_zero123",
            "Stable Zero123 (Stability AI; diffusers copy of stabilityai/stable-zero123)",
            "ashawkey/stable-zero123-diffusers",
            "stable_zero123",
            5.0,
            "threestudio stable_zero123_guidance.py (guidance_scale 5.0)",
            "Stability AI Non-Commercial Research Community License: research and personal use only; "
            "commercial use needs a Stability AI membership",
            True,
        ),
        PriorVariant(
            "oracle",
            "oracle (the known answer; answers as a perfect Zero-1-to-3)",
            None,
            "zero123",
            None,
            "an ideal denoiser: guidance changes nothing",
            "none (the run's own ground-truth mesh)",
            False,
        ),
    )
}


def variant_of(cfg: Config) -> PriorVariant:
    return VARIANTS[cfg.models.prior_3d]


def prior_3d_source(cfg: Config) -> str:
    """The weights of the configured 3D prior: ``models.zero123`` when set, else the variant's model id."""
    variant = variant_of(cfg)
    return cfg.models.zero123 or variant.model_id or ""


def require_elevation(cfg: Config) -> None:
    """A prior whose camera vector holds the input elevation refuses the paper's silent assumption of 0."""
    variant = variant_of(cfg)
    if variant.needs_elevation and "ref_elevation" not in cfg.cameras.model_fields_set:
        raise ConfigError(
            f"models.prior_3d={variant.name}: its camera vector holds the input view's elevation; "
            f"set cameras.ref_elevation (degrees or auto) or record it with `consistent123 preprocess --elevation DEG`"
        )


def describe(cfg: Config) -> str:
    """The table as YAML comments (``consistent123 config`` prints it under the config), the
    chosen variant marked, and a note when the run's guidance is not the one it recommends."""
    chosen = cfg.models.prior_3d
    lines = ["# 3D prior variants (models.prior_3d; consistent123/priors/variants.py):"]
    for v in VARIANTS.values():
        mark = "*" if v.name == chosen else " "
        lines.append(f"# {mark} {v.name}: {v.title}")
        lines.append(f"#     model id: {v.model_id or '-'}   camera vector: {v.layout}   guidance: {v.guidance_scale}")
        lines.append(f"#     guidance from: {v.guidance_source}")
        lines.append(f"#     licence: {v.licence}")
    recommended = VARIANTS[chosen].guidance_scale
    if recommended is not None and recommended != cfg.sds.guidance_scale_3d:
        lines.append(
            f"# note: sds.guidance_scale_3d is {cfg.sds.guidance_scale_3d:g}; {chosen} is usually run at "
            f"{recommended:g} (--set sds.guidance_scale_3d={recommended:g})"
        )
    return "\n".join(lines) + "\n"
