"""Recentring: crop to the mask's bounding box, pad to square, object fills ``1 - border_ratio``.

The crop is one square window in the source image's pixel grid, centred on the mask's
bounding box, of side ``round(longest bbox side / (1 - border_ratio))``; pixels outside the
image are transparent / zero. The same window is applied to the image and to its depth map,
so both stay aligned. Resampling is Pillow's (antialiased, alpha-premultiplied for RGBA) for
the image and scikit-image's (antialiased) for float maps.

The padded canvas grows with the object's longest side, not with the image's pixel count (a
16 x 60000 strip asks for a 75000^2 canvas): past ``limits.max_canvas_side`` the inputs are
first reduced by an integer factor (``canvas_reduction``, box filter) so that it fits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from skimage.measure import block_reduce
from skimage.transform import resize


@dataclass(frozen=True)
class CropWindow:
    """Square window (left, top, side) in source pixels; may extend past the image borders."""

    left: int
    top: int
    side: int
    bbox: tuple[int, int, int, int]  # mask bbox in the source: x0, y0, x1, y1 (exclusive ends)

    def as_dict(self) -> dict:
        return asdict(self)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def crop_window(mask: np.ndarray, border_ratio: float) -> CropWindow:
    x0, y0, x1, y1 = mask_bbox(mask)
    longest = max(x1 - x0, y1 - y0)
    side = max(longest, int(round(longest / (1.0 - border_ratio))))
    left = int(round((x0 + x1) / 2.0 - side / 2.0))
    top = int(round((y0 + y1) / 2.0 - side / 2.0))
    return CropWindow(left, top, side, (x0, y0, x1, y1))


def _crop_padded(array: np.ndarray, window: CropWindow) -> np.ndarray:
    """The window's pixels, zero where it leaves the array (plain indexing, no resampling)."""
    out = np.zeros((window.side, window.side) + array.shape[2:], dtype=array.dtype)
    h, w = array.shape[:2]
    sx0, sy0 = max(window.left, 0), max(window.top, 0)
    sx1, sy1 = min(window.left + window.side, w), min(window.top + window.side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - window.top : sy1 - window.top, sx0 - window.left : sx1 - window.left] = array[sy0:sy1, sx0:sx1]
    return out


def recentre_rgba(rgba: np.ndarray, window: CropWindow, size: int) -> np.ndarray:
    """uint8 HxWx4 -> uint8 size x size x 4."""
    square = Image.fromarray(_crop_padded(rgba, window), "RGBA")
    # Pillow resamples RGBA premultiplied, so transparent pixels do not bleed colour.
    return np.asarray(square.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=None))


def recentre_map(values: np.ndarray, weight: np.ndarray, window: CropWindow, size: int) -> np.ndarray:
    """Float map -> size x size, averaged only over pixels with weight (normalised convolution).

    Resizing ``values * weight`` and ``weight`` and dividing keeps the background's zeros from
    pulling the object's border values down.
    """
    v = _crop_padded((values * weight).astype(np.float64), window)
    w = _crop_padded(weight.astype(np.float64), window)
    rv = resize(v, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    rw = resize(w, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return np.where(rw > 1e-6, rv / np.maximum(rw, 1e-6), 0.0)


def canvas_reduction(window: CropWindow, max_side: int) -> int:
    """The integer factor that brings the window's canvas to at most ``max_side`` a side (1: none)."""
    return max(1, math.ceil(window.side / max_side))


def reduce_rgba(rgba: np.ndarray, factor: int) -> np.ndarray:
    """uint8 RGBA reduced by ``factor`` (box filter on premultiplied colours, like the resize)."""
    image = Image.fromarray(rgba, "RGBA").convert("RGBa").reduce(factor)
    return np.asarray(image.convert("RGBA"))


def reduce_map(values: np.ndarray, weight: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """A weighted float map reduced by ``factor``: the weighted mean of each block, and its weight."""
    vw = block_reduce(values * weight, (factor, factor), np.mean)
    w = block_reduce(weight.astype(np.float64), (factor, factor), np.mean)
    return np.where(w > 1e-12, vw / np.maximum(w, 1e-12), 0.0), w
