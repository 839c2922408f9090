"""Foreground mask of the input image: its alpha channel when it has a real one, else a segmenter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage.measure import label

from consistent123.errors import InputError


def has_real_alpha(image: Image.Image, threshold: int) -> bool:
    """An alpha channel is "real" when some pixels are at or below the threshold (transparent).

    A fully opaque alpha (e.g. a photo saved as RGBA) carries no mask, so the segmenter is used.
    """
    return image.mode == "RGBA" and bool((np.asarray(image.getchannel("A")) <= threshold).any())


def alpha_of(image: Image.Image) -> np.ndarray:
    """The alpha channel as float32 in [0, 1]."""
    return np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0


def binary_mask(alpha: np.ndarray, threshold: float) -> np.ndarray:
    return alpha > threshold


def drop_specks(mask: np.ndarray, min_fraction: float = 0.01) -> np.ndarray:
    """Keep the connected parts of a segmenter mask that are at least ``min_fraction`` of the largest.

    A segmenter's stray false positives would otherwise stretch the bounding box and so the crop;
    separate real parts of a fair size survive.
    """
    labels = label(mask, connectivity=2)
    if labels.max() <= 1:
        return mask
    areas = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(areas >= min_fraction * areas.max()) + 1
    return np.isin(labels, keep)


def check_mask(mask: np.ndarray, path: str | Path, source: str) -> None:
    """The mask must hold an object that is not the whole frame's nothing."""
    if not mask.any():
        detail = "the image is fully transparent" if source == "alpha" else "the segmenter found no foreground object"
        raise InputError(f"{path}: no object to reconstruct: {detail}")
