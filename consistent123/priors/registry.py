"""The one path from the config to every pretrained part.

``cfg.models.tiny`` or ``tiny_dir`` set: every part is the random-weight tiny model built in
``cfg.models.tiny_models_dir()`` (on first use); otherwise the configured hub ids / local folders. Real or tiny, the same loaders run.

Every loaded part carries ``origin`` (where it was loaded from and whether its weights are
pretrained or random), detected from the loaded files (consistent123.priors.provenance), so a run
can say what it really used whatever its config names.
"""

from __future__ import annotations

import torch

from consistent123.config import Config
from consistent123.priors.base import Priors
from consistent123.priors.provenance import with_origin
from consistent123.priors.variants import VARIANTS, prior_3d_source

# config key of each part -> key of the tiny-models manifest
_TINY_KEYS = {
    "zero123": "zero123",
    "stable_diffusion": "stable_diffusion",
    "clip_judge": "clip",
    "clip_metric": "clip",
    "captioner": "captioner",
    "depth": "depth",
    "segmenter": "segmenter",
}


def model_sources(cfg: Config) -> dict[str, str]:
    """Where each part comes from: {zero123, stable_diffusion, clip_judge, clip_metric, captioner, depth, segmenter}."""
    tiny_dir = cfg.models.tiny_models_dir()
    if tiny_dir is not None:
        from consistent123.priors.standins.tiny import ensure_tiny_models

        built = ensure_tiny_models(tiny_dir)
        return {key: str(built[tiny]) for key, tiny in _TINY_KEYS.items() if tiny in built}
    return hub_sources(cfg)


def hub_sources(cfg: Config) -> dict[str, str]:
    """The configured hub ids or local paths of the pretrained parts (``tiny_dir`` aside); the
    3D prior's is its variant's model id (or ``models.zero123``), none for the oracle."""
    m = cfg.models
    sources = {
        "zero123": prior_3d_source(cfg),
        "stable_diffusion": m.stable_diffusion,
        "clip_judge": m.clip_judge,
        "clip_metric": cfg.eval.clip_model,
        "captioner": m.captioner,
        "depth": m.depth,
        "segmenter": m.segmenter,
    }
    if not sources["zero123"]:
        del sources["zero123"]
    return sources


def _source(cfg: Config, key: str) -> str:
    sources = model_sources(cfg)
    if key not in sources:
        from consistent123.errors import ModelUnavailableError

        raise ModelUnavailableError(
            f"{key}: no tiny model in {cfg.models.tiny_models_dir()} (rebuild with `consistent123 tiny-models DIR --force`)"
        )
    return sources[key]


def params_naming_loaded_models(cfg: Config) -> dict:
    """The config as MLflow params, each model entry naming the source the registry loads (the
    tiny model's folder when the tiny models are used, never a hub id that was not used). A
    prior role the oracle takes names no model: ``models.zero123`` / ``models.stable_diffusion``
    are dropped then (``models.prior_3d`` / ``prior_2d`` = oracle say what answered)."""
    params = cfg.model_dump(mode="json")
    sources = model_sources(cfg)
    replaced = {"zero123": cfg.models.prior_3d == "oracle", "stable_diffusion": cfg.models.prior_2d == "oracle"}
    for key, by_oracle in replaced.items():
        if by_oracle:
            params["models"].pop(key, None)
            sources.pop(key, None)
    for key in ("zero123", "stable_diffusion", "clip_judge", "captioner", "depth", "segmenter"):
        if key in sources:
            params["models"][key] = sources[key]
    if "clip_metric" in sources:
        params["eval"]["clip_model"] = sources["clip_metric"]
    return params


def load_zero123(cfg: Config, device: torch.device | str):
    from consistent123.priors.zero123 import Zero123Prior

    source = _source(cfg, "zero123")
    return with_origin(Zero123Prior.from_config(cfg, torch.device(device), source=source), source)


def load_stable_diffusion(cfg: Config, device: torch.device | str):
    from consistent123.priors.stable_diffusion import StableDiffusionPrior

    source = _source(cfg, "stable_diffusion")
    return with_origin(StableDiffusionPrior.from_config(cfg, torch.device(device), source=source), source)


def load_oracle(cfg: Config, device: torch.device | str, role: str):
    from consistent123.priors.oracle import OraclePrior
    from consistent123.priors.provenance import note_stand_in

    note_stand_in("oracle", f"{role} prior from {cfg.oracle.mesh}")
    return OraclePrior.from_config(cfg, torch.device(device), role)


def load_oracle_3d(cfg: Config, device: torch.device | str):
    return load_oracle(cfg, device, "3d")


# The priors each role can take (config models.prior_3d / models.prior_2d); the 3D variants
# share Zero-1-to-3's loader and differ in weights and camera vector (priors/variants.py).
PRIORS_3D = {name: load_oracle_3d if name == "oracle" else load_zero123 for name in VARIANTS}
PRIORS_2D = {"stable_diffusion": load_stable_diffusion, "oracle": lambda cfg, device: load_oracle(cfg, device, "2d")}


def load_prior_3d(cfg: Config, device: torch.device | str):
    """The image- and camera-conditioned prior: ``set_reference(rgb, cam)``, ``sds(rgb, cams, t_range, generator)``."""
    return PRIORS_3D[cfg.models.prior_3d](cfg, device)


def load_prior_2d(cfg: Config, device: torch.device | str):
    """The text-conditioned prior: ``set_prompt(text)``, ``sds(rgb, cams, t_range, generator)``."""
    return PRIORS_2D[cfg.models.prior_2d](cfg, device)


def load_clip_judge(cfg: Config, device: torch.device | str):
    from consistent123.priors.clip import load_clip

    source = _source(cfg, "clip_judge")
    return with_origin(load_clip(source, device, cfg.models.cache_dir, config_key="models.clip_judge"), source)


def load_clip_metric(cfg: Config, device: torch.device | str):
    from consistent123.priors.clip import load_clip

    source = _source(cfg, "clip_metric")
    return with_origin(load_clip(source, device, cfg.models.cache_dir, config_key="eval.clip_model"), source)


# Captioner, depth and segmenter loaders live in consistent123.priors.vision (imported lazily).
def load_captioner(cfg: Config, device: torch.device | str):
    from consistent123.priors import vision

    source = _source(cfg, "captioner")
    return with_origin(vision.load_captioner(source, torch.device(device), cfg.models.cache_dir), source)


def load_depth_estimator(cfg: Config, device: torch.device | str):
    from consistent123.priors import vision

    source = _source(cfg, "depth")
    model = vision.load_depth_estimator(
        source, torch.device(device), cfg.models.cache_dir, cfg.preprocess.depth_input_size
    )
    return with_origin(model, source)


def load_segmenter(cfg: Config, device: torch.device | str):
    from consistent123.priors import vision

    source = _source(cfg, "segmenter")
    return with_origin(vision.load_segmenter(source, torch.device(device), cfg.models.cache_dir), source)


# ---------------------------------------------------------------- what a run loads
def load_priors(cfg: Config, device: torch.device) -> Priors:
    """Load only what the configured strategy uses (3d_only never loads Stable Diffusion)."""
    if not cfg.train.use_priors:
        return Priors()
    dyn = cfg.dynamic
    needs_2d = dyn.strategy != "3d_only"
    return Priors(
        zero123=load_prior_3d(cfg, device),
        stable_diffusion=load_prior_2d(cfg, device) if needs_2d else None,
        clip_judge=load_clip_judge(cfg, device) if dyn.uses_boundary_judgement else None,
    )
