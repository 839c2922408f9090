"""CLIP through open_clip: image-text similarity (boundary judgement) and image-image
similarity (the CLIP-similarity metric).

A source is ``MODEL/PRETRAINED`` (a built-in architecture and pretrained tag, e.g.
``ViT-B-16/openai``), ``hf-hub:org/name``, or a local folder holding ``open_clip_config.json``
and ``open_clip_model.safetensors`` (the layout open_clip's own hub/local-dir loader reads;
``consistent123 tiny-models`` writes one). Weights are read with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from consistent123.priors import hub


def _open_clip_spec(source: str) -> tuple[str, Optional[str]]:
    """open_clip's (model_name, pretrained) for one of our source strings."""
    if source.startswith(("hf-hub:", "local-dir:")):
        return source, None
    if hub.is_local(source):
        return f"local-dir:{Path(source).expanduser()}", None
    if "/" not in source:
        raise ValueError(f"CLIP source {source!r} must be MODEL/PRETRAINED, hf-hub:org/name or a local folder")
    name, pretrained = source.split("/", 1)
    return name, pretrained


def _create(source: str, cache_dir: Optional[str] = None, device: str | torch.device = "cpu"):
    import open_clip

    name, pretrained = _open_clip_spec(source)
    # OpenAI's weights were trained with QuickGELU; open_clip's plain configs use GELU, so the
    # activation must follow the tag or the embeddings are subtly wrong.
    quick_gelu = bool(pretrained and open_clip.get_pretrained_cfg(name, pretrained).get("quick_gelu", False))
    model = open_clip.create_model(
        name,
        pretrained=pretrained,
        device=device,
        cache_dir=cache_dir,
        force_quick_gelu=quick_gelu,
        weights_only=True,
        require_pretrained=True,
    )
    tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir)
    return model, tokenizer


class ClipModel:
    """A frozen open_clip model with the project's four questions."""

    def __init__(self, model: torch.nn.Module, tokenizer, name: str, device: torch.device):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device)
        pp = getattr(model.visual, "preprocess_cfg", {}) or {}
        size = pp.get("size", getattr(model.visual, "image_size", 224))
        self.image_size = tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))
        self.mean = torch.tensor(pp.get("mean", (0.48145466, 0.4578275, 0.40821073)), device=self.device).view(
            1, 3, 1, 1
        )
        self.std = torch.tensor(pp.get("std", (0.26862954, 0.26130258, 0.27577711)), device=self.device).view(
            1, 3, 1, 1
        )

    def _preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        # Square renders: a resize to the model's input size is open_clip's resize + centre crop.
        x = rgb.to(self.device, torch.float32)
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bicubic", align_corners=False, antialias=True)
        return (x.clamp(0, 1) - self.mean) / self.std

    @torch.no_grad()
    def encode_images(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> L2-normalised [B, D] (float32)."""
        return F.normalize(self.model.encode_image(self._preprocess(rgb)).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def text_similarity(self, images: torch.Tensor, text: str) -> torch.Tensor:
        """Cosine similarity of each image with ``text``: [B]."""
        return (self.encode_images(images) @ self.encode_texts([text]).T)[:, 0]

    def image_similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of a[i] with b[i] ([B]); a single b is compared with every a."""
        ea, eb = self.encode_images(a), self.encode_images(b)
        if eb.shape[0] == 1 and ea.shape[0] > 1:
            eb = eb.expand_as(ea)
        return (ea * eb).sum(-1)


def load_clip(
    source: str,
    device: str | torch.device = "cpu",
    cache_dir: Optional[str] = None,
    config_key: str = "models.clip_judge",
) -> ClipModel:
    """Load an open_clip model (hub tag, hf-hub id or local folder); missing -> ModelUnavailableError."""
    model, tokenizer = hub.load_pretrained(
        _create, source, f"CLIP {source}", config_key, cache_dir=cache_dir, device=device
    )
    return ClipModel(model, tokenizer, source, torch.device(device))
