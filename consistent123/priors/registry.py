"""The one path from the config to every pretrained part.

``cfg.models.tiny_dir`` set: every part is the random-weight tiny model built there (on first
use); otherwise the configured hub ids / local folders. Real or tiny, the same loaders run.

Every loaded part carries ``origin`` (where it was loaded from and whether its weights are
pretrained or random), detected from the loaded files (priors.tiny.is_random_weight), so a run
can say what it really used whatever its config names.
"""

from __future__ import annotations

from pathlib import Path

import torch

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


def model_sources(cfg) -> dict[str, str]:
    """Where each part comes from: {zero123, stable_diffusion, clip_judge, clip_metric, captioner, depth, segmenter}."""
    m = cfg.models
    if m.tiny_dir:
        from consistent123.priors.standins.tiny import ensure_tiny_models

        built = ensure_tiny_models(Path(m.tiny_dir))
        return {key: str(built[tiny]) for key, tiny in _TINY_KEYS.items() if tiny in built}
    return hub_sources(cfg)


def hub_sources(cfg) -> dict[str, str]:
    """The configured hub ids or local paths of the pretrained parts (``tiny_dir`` aside)."""
    m = cfg.models
    return {
        "zero123": m.zero123,
        "stable_diffusion": m.stable_diffusion,
        "clip_judge": m.clip_judge,
        "clip_metric": cfg.eval.clip_model,
        "captioner": m.captioner,
        "depth": m.depth,
        "segmenter": m.segmenter,
    }


def _source(cfg, key: str) -> str:
    sources = model_sources(cfg)
    if key not in sources:
        from consistent123.errors import ModelUnavailableError

        raise ModelUnavailableError(
            f"{key}: no tiny model in {cfg.models.tiny_dir} (rebuild with `consistent123 tiny-models DIR --force`)"
        )
    return sources[key]


# ---------------------------------------------------------------- what was really loaded
RANDOM, REAL, NO_PRIORS, UNKNOWN = "random", "real", "none", "unknown"


def origin(source: str) -> dict[str, str]:
    """{"source", "weights": "random" | "pretrained"} of one model, from its files."""
    from consistent123.priors.standins.tiny import is_random_weight

    return {"source": str(source), "weights": "random" if is_random_weight(source) else "pretrained"}


def _with_origin(model, source: str):
    model.origin = origin(source)
    return model


def origin_of(model) -> dict[str, str] | None:
    """The origin recorded at load; a CLIP loaded outside the registry is read from its source."""
    if model is None:
        return None
    found = getattr(model, "origin", None)
    if found is None and isinstance(getattr(model, "name", None), str):
        found = origin(model.name)
    return found


def priors_kind(origins) -> str:
    """ "random" when any model has random weights, "real" when all are pretrained, "none" without models."""
    weights = [o["weights"] for o in origins if o]
    if not weights:
        return NO_PRIORS
    return RANDOM if RANDOM in weights else REAL


def evaluation_kind(run_kind: str, metric_kind: str) -> str:
    """A scored run's kind: random when the run's priors or the metric models are random-weight;
    a run without priors ("none") or without a record ("unknown") keeps that; else real."""
    if RANDOM in (run_kind, metric_kind):
        return RANDOM
    return run_kind if run_kind != REAL else metric_kind


def loaded_models_record(models: dict) -> dict:
    """What a run really used: {"priors": kind, "models": {key: origin}, "tags": {MLflow tags}}.

    ``models`` maps a name to a loaded model or None (not needed by this run). Tags: ``priors``
    (random | real | none) and ``model.<name>`` = its source, "(random weights)" appended.
    """
    origins = {name: origin_of(m) for name, m in models.items() if m is not None}
    kind = priors_kind(origins.values())
    tags = {"priors": kind}
    tags.update(
        {
            f"model.{name}": o["source"] + (" (random weights)" if o["weights"] == RANDOM else "")
            for name, o in origins.items()
        }
    )
    return {"priors": kind, "models": origins, "tags": tags}


def params_naming_loaded_models(cfg) -> dict:
    """The config as MLflow params, each model entry naming the source the registry loads (the
    tiny model's folder when ``models.tiny_dir`` is set, never a hub id that was not used)."""
    params = cfg.model_dump(mode="json")
    sources = model_sources(cfg)
    for key in ("zero123", "stable_diffusion", "clip_judge", "captioner", "depth", "segmenter"):
        if key in sources:
            params["models"][key] = sources[key]
    if "clip_metric" in sources:
        params["eval"]["clip_model"] = sources["clip_metric"]
    return params


def load_zero123(cfg, device: torch.device | str):
    from consistent123.priors.zero123 import Zero123Prior

    source = _source(cfg, "zero123")
    return _with_origin(Zero123Prior.from_config(cfg, torch.device(device), source=source), source)


def load_stable_diffusion(cfg, device: torch.device | str):
    from consistent123.priors.stable_diffusion import StableDiffusionPrior

    source = _source(cfg, "stable_diffusion")
    return _with_origin(StableDiffusionPrior.from_config(cfg, torch.device(device), source=source), source)


def load_oracle(cfg, device: torch.device | str, role: str):
    from consistent123.priors.oracle import OraclePrior

    return OraclePrior.from_config(cfg, torch.device(device), role)


# The priors each role can take (config models.prior_3d / models.prior_2d).
PRIORS_3D = {"zero123": load_zero123, "oracle": lambda cfg, device: load_oracle(cfg, device, "3d")}
PRIORS_2D = {"stable_diffusion": load_stable_diffusion, "oracle": lambda cfg, device: load_oracle(cfg, device, "2d")}


def load_prior_3d(cfg, device: torch.device | str):
    """The image- and camera-conditioned prior: ``set_reference(rgb, cam)``, ``sds(rgb, cams, t_range, generator)``."""
    return PRIORS_3D[cfg.models.prior_3d](cfg, device)


def load_prior_2d(cfg, device: torch.device | str):
    """The text-conditioned prior: ``set_prompt(text)``, ``sds(rgb, cams, t_range, generator)``."""
    return PRIORS_2D[cfg.models.prior_2d](cfg, device)


def load_clip_judge(cfg, device: torch.device | str):
    from consistent123.priors.clip import load_clip

    source = _source(cfg, "clip_judge")
    return _with_origin(load_clip(source, device, cfg.models.cache_dir, config_key="models.clip_judge"), source)


def load_clip_metric(cfg, device: torch.device | str):
    from consistent123.priors.clip import load_clip

    source = _source(cfg, "clip_metric")
    return _with_origin(load_clip(source, device, cfg.models.cache_dir, config_key="eval.clip_model"), source)


# Captioner, depth and segmenter loaders live in consistent123.priors.vision (imported lazily).
def load_captioner(cfg, device: torch.device | str):
    from consistent123.priors import vision

    return vision.load_captioner(_source(cfg, "captioner"), torch.device(device), cfg.models.cache_dir)


def load_depth_estimator(cfg, device: torch.device | str):
    from consistent123.priors import vision

    return vision.load_depth_estimator(
        _source(cfg, "depth"), torch.device(device), cfg.models.cache_dir, cfg.preprocess.depth_input_size
    )


def load_segmenter(cfg, device: torch.device | str):
    from consistent123.priors import vision

    return vision.load_segmenter(_source(cfg, "segmenter"), torch.device(device), cfg.models.cache_dir)
