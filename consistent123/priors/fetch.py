"""``consistent123 fetch-models [--only NAME]``: fill the Hugging Face cache on a connected machine.

Compute nodes are often offline: run this once on a login node (same ``HF_HOME`` /
``models.cache_dir``), then every loader finds the weights in the cache. Only what the loaders
read is fetched: configs, tokenizers and one weights format per folder (safetensors when the
repo has it), not the repo's extra checkpoints.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Optional

from consistent123.config import Config
from consistent123.priors import hub

# part -> config key naming it
CONFIG_KEYS = {
    "zero123": "models.zero123",
    "stable_diffusion": "models.stable_diffusion",
    "clip_judge": "models.clip_judge",
    "clip_metric": "eval.clip_model",
    "captioner": "models.captioner",
    "depth": "models.depth",
    "segmenter": "models.segmenter",
    "lpips": "eval.lpips_net",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".onnx", ".msgpack", ".h5")


def configured_sources(cfg: Config) -> dict[str, str]:
    """The real ids of every part (``models.tiny``/``tiny_dir`` are ignored: there is nothing to fetch for it)."""
    from consistent123.priors.registry import hub_sources

    return {**hub_sources(cfg), "lpips": cfg.eval.lpips_net}


def select_files(files: list[str], variant: Optional[str] = None) -> list[str]:
    """Configs/tokenizers everywhere; per folder, the safetensors weights (else the .bin ones)."""
    keep, weights_by_folder = [], {}
    for f in files:
        path = PurePosixPath(f)
        if path.suffix in WEIGHT_SUFFIXES:
            weights_by_folder.setdefault(str(path.parent), []).append(f)
        elif path.suffix in (".json", ".txt", ".model") or path.name.endswith("tokenizer.json"):
            keep.append(f)
    if "model_index.json" in files:  # a diffusers pipeline: root-level files are extra single-file checkpoints
        weights_by_folder.pop(".", None)
    for folder_files in weights_by_folder.values():
        # a variant's files look like name.<variant>.safetensors; without a variant take the plain ones
        def is_variant(name: str) -> bool:
            return len(PurePosixPath(name).suffixes) > 1

        wanted = [f for f in folder_files if (f".{variant}." in f if variant else not is_variant(f))]
        for suffix in (".safetensors", ".bin"):
            chosen = [f for f in wanted if f.endswith(suffix)]
            if chosen:
                keep.extend(chosen)
                break
    return sorted(keep)


def _network_errors_as_oserror(fn):
    """The hub API's raw HTTP-client errors (no route, DNS) become ConnectionError, so the
    offline case reads as one line like every other missing-weights case."""

    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - re-raised unless it is the HTTP client's
            if type(exc).__module__.split(".")[0].rstrip("0123456789") in ("httpx", "httpcore", "requests", "urllib3"):
                raise ConnectionError(f"cannot reach the Hugging Face Hub ({exc})") from exc
            raise

    return wrapped


@_network_errors_as_oserror
def _fetch_hub_repo(source: str, cache_dir: Optional[str] = None, variant: Optional[str] = None) -> str:
    from huggingface_hub import list_repo_files, snapshot_download

    files = select_files(list_repo_files(source), variant)
    return snapshot_download(source, allow_patterns=files, cache_dir=cache_dir)


@_network_errors_as_oserror
def _fetch_open_clip(source: str, cache_dir: Optional[str] = None) -> str:
    if source.startswith("hf-hub:"):
        from huggingface_hub import snapshot_download

        return snapshot_download(source[len("hf-hub:") :], cache_dir=cache_dir)
    import open_clip

    name, tag = source.split("/", 1)
    pretrained_cfg = open_clip.get_pretrained_cfg(name.replace("/", "-"), tag)
    if not pretrained_cfg:
        raise ValueError(f"open_clip has no pretrained tag {tag!r} for {name!r}")
    return open_clip.download_pretrained(pretrained_cfg, cache_dir=cache_dir)


def fetch(part: str, source: str, cache_dir: Optional[str] = None, variant: Optional[str] = None) -> str:
    """Download one part; returns where it landed. Offline -> ModelUnavailableError (one line)."""
    if part == "lpips":  # the ImageNet trunk LPIPS runs on lives in the torch cache, not the HF cache
        from consistent123.priors.lpips_backbone import ensure_backbone

        return str(ensure_backbone(source, allow_download=True))
    if part.startswith("clip"):
        return hub.load_pretrained(_fetch_open_clip, source, f"CLIP {source}", CONFIG_KEYS[part], cache_dir=cache_dir)
    return hub.load_pretrained(
        _fetch_hub_repo, source, f"{part} {source}", CONFIG_KEYS[part], cache_dir=cache_dir, variant=variant
    )


# ---------------------------------------------------------------- what is already here (offline)
def _hub_repo_of_open_clip(source: str) -> Optional[str]:
    """The Hugging Face repo an open_clip "name/tag" (or "hf-hub:repo") downloads from, if any."""
    if source.startswith("hf-hub:"):
        return source[len("hf-hub:") :]
    import open_clip

    name, _, tag = source.partition("/")
    pretrained_cfg = open_clip.get_pretrained_cfg(name, tag) or {}
    return (pretrained_cfg.get("hf_hub") or "").strip("/") or None


def in_cache(part: str, source: str, cache_dir: Optional[str] = None) -> bool:
    """True when ``source`` can be loaded without the network: a local path that exists, or a hub
    repo already in the Hugging Face cache. Never touches the network (``local_files_only``)."""
    if part == "lpips":
        from consistent123.priors.lpips_backbone import lpips_backbone_path

        return lpips_backbone_path(source).is_file()
    if hub.is_local(source):
        return True
    repo = _hub_repo_of_open_clip(source) if part.startswith("clip") else source
    if repo is None:  # an open_clip tag served from a plain URL: its file lands in open_clip's cache
        return False
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo, cache_dir=cache_dir, local_files_only=True)
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError and kin: not in the cache
        return False
    return True


def missing_from_cache(cfg: Config, parts: list[str]) -> list[str]:
    """The ``parts`` whose configured weights are not on this machine ("part (source)" each)."""
    sources = configured_sources(cfg)
    return [f"{p} ({sources[p]})" for p in parts if not in_cache(p, sources[p], cfg.models.cache_dir)]
