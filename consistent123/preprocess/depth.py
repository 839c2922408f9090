"""Depth maps: matching a given map to its image, normalising inside the mask, 16-bit PNG I/O.

Convention (the authors' ``*_depth.png``, Omnidata depth): relative depth, larger = farther
(a bulging surface is darkest at its centre, e.g. realfusion15/colorful_teapot_depth.png), in
[0, 1] inside the object mask and 0 outside. The reference-view loss correlates it with the
rendered ray distance. We store it as a 16-bit greyscale PNG (65535 = 1) for
precision; ``consistent123.case.read_depth_png`` reads both that and the authors' 8-bit files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.transform import resize

from consistent123.errors import InputError

# Aspect ratios this close count as the same (one pixel of rounding on a 256-px map).
_ASPECT_TOLERANCE = 0.01


def match_to_image(depth: np.ndarray, image_size: tuple[int, int], depth_path: str | Path) -> np.ndarray:
    """Resize a given depth map to the image's (width, height); a different aspect ratio is an error."""
    width, height = image_size
    dh, dw = depth.shape
    if (dh, dw) == (height, width):
        return depth
    if abs(dw / dh - width / height) > _ASPECT_TOLERANCE * (width / height):
        raise InputError(
            f"{depth_path}: depth map is {dw}x{dh} pixels but the image is {width}x{height} (different aspect ratio)"
        )
    return resize(depth, (height, width), order=1, anti_aliasing=True, preserve_range=True)


def normalise_in_mask(depth: np.ndarray, mask: np.ndarray, what: str) -> np.ndarray:
    """Min-max normalise to [0, 1] inside the mask, 0 outside."""
    inside = depth[mask]
    lo, hi = float(inside.min()), float(inside.max())
    if not np.isfinite([lo, hi]).all():
        raise InputError(f"{what}: depth has NaN or infinite values inside the object")
    if hi <= lo:
        raise InputError(f"{what}: depth is constant inside the object mask (no relative depth)")
    out = np.zeros(depth.shape, dtype=np.float32)
    out[mask] = ((depth[mask] - lo) / (hi - lo)).astype(np.float32)
    return np.clip(out, 0.0, 1.0)
