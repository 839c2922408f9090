"""CLIP-similarity (paper §4.2): mean cosine similarity of CLIP image embeddings between the
reference image and novel-view renders. The cosine itself is the CLIP wrapper's
``image_similarity`` (one implementation shared with the boundary judgement); this module only
batches the views and records which model and views were used.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def to_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    """List of [H, W, 3] float images in [0, 1] (same size) -> [B, 3, H, W] tensor."""
    return torch.as_tensor(np.stack(list(images)), dtype=torch.float32).permute(0, 3, 1, 2).contiguous()


def clip_similarities(model, reference: np.ndarray, views: Sequence[np.ndarray]) -> list[float]:
    """Cosine similarity of the reference with each view (views may differ in size from it)."""
    if len(views) == 0:
        raise ValueError("CLIP-similarity needs at least one novel view")
    ref = to_batch([reference])
    out = []
    for view in views:  # one at a time: renders and reference may have different sizes
        out.append(float(model.image_similarity(to_batch([view]), ref)[0]))
    return out


def clip_similarity(model, reference: np.ndarray, views: Sequence[np.ndarray]) -> dict:
    """{"clip_similarity": mean, "per_view": [...], "clip_model": name} for metrics.json."""
    per_view = clip_similarities(model, reference, views)
    return {
        "clip_similarity": float(np.mean(per_view)),
        "per_view": per_view,
        "clip_model": getattr(model, "name", type(model).__name__),
    }
