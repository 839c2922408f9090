"""Compositing and display of RGBA images, for torch tensors and numpy arrays alike.

Colour is straight (not premultiplied) and channels come last unless ``channel_axis`` says
otherwise. The one place that composites on a background: training targets, the reference
image Zero-1-to-3 sees, saved views, turntables and the metrics all call these.
"""

from __future__ import annotations

import math

import numpy as np

MIN_DISPLAY_SIZE = 128


def _split(rgba, channel_axis: int):
    index = [slice(None)] * rgba.ndim
    index[channel_axis] = slice(0, 3)
    rgb = rgba[tuple(index)]
    index[channel_axis] = slice(3, 4)
    return rgb, rgba[tuple(index)]


def composite(rgba, background, channel_axis: int = -1):
    """``rgb * alpha + background * (1 - alpha)``; an image without alpha is returned as it is.

    ``background`` broadcasts against the colour (a scalar, a colour shaped for the channel
    axis, or a whole image).
    """
    if rgba.shape[channel_axis] == 3:
        return rgba
    rgb, alpha = _split(rgba, channel_axis)
    return rgb * alpha + background * (1 - alpha)


def on_white(rgba, channel_axis: int = -1):
    """The image composited on white (Zero-1-to-3 and the metrics see objects on white)."""
    return composite(rgba, 1.0, channel_axis)


def straight_colour(premultiplied, alpha, eps: float = 1e-4):
    """Straight colour from a render over black (premultiplied): ``rgb / alpha`` where covered."""
    import torch

    return torch.where(alpha > eps, premultiplied / alpha.clamp(min=eps), torch.zeros_like(premultiplied))


def pil_on_white(image):
    """RGB view of a PIL image for the models (transparent pixels' colours are arbitrary)."""
    from PIL import Image

    if image.mode != "RGBA":
        return image.convert("RGB")
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image).convert("RGB")


def upscale_for_display(image: np.ndarray, min_size: int = MIN_DISPLAY_SIZE) -> np.ndarray:
    """Repeat pixels by the smallest integer factor that makes the image's height >= min_size."""
    factor = max(1, math.ceil(min_size / image.shape[0]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image
