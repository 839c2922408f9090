"""The boundary judgement's check images, made as the authors make them (``boundary.check_*``).

R renders the 8 check views at its validation size (800^2), writes each as an 8-bit PNG, reads
it back and shrinks it to 128^2 with an area filter before CLIP scores it. The rounding to 8 bits
and the area average decide the tiny score changes (``boundary.delta`` = 0.00025) that end
stage 1, so the same steps are taken here; ``check_source_size: null`` renders straight at the
CLIP input size instead.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch
from PIL import Image

from consistent123.config import BoundaryConfig

# (camera, size, rows or None) -> rgb [rows or size, size, 3] in [0, 1]
RenderBand = Callable[..., torch.Tensor]


def render_in_bands(render_band: RenderBand, cam, size: int, band_rows: int) -> torch.Tensor:
    """A ``size``^2 view, ``band_rows`` rows at a time (one piece when it is small enough)."""
    if size <= band_rows:
        return render_band(cam, size, None)
    bands = [render_band(cam, size, (r, min(r + band_rows, size))) for r in range(0, size, band_rows)]
    return torch.cat(bands, 0)


def area_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """[H, W, 3] (uint8 or float) -> [size, size, 3] float32 in the input's scale, by area
    averaging (PIL's box filter: each output pixel is the mean of the input area it covers,
    what cv2.INTER_AREA computes when shrinking)."""
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb.astype(np.float32)
    channels = [
        np.asarray(Image.fromarray(rgb[..., c].astype(np.float32), mode="F").resize((size, size), Image.BOX))
        for c in range(rgb.shape[-1])
    ]
    out = np.stack(channels, -1)
    # R's cv2.resize of a uint8 image returns uint8: round as it does
    return np.clip(np.rint(out), 0, 255) if rgb.dtype == np.uint8 else out


def check_image(rgb: torch.Tensor, boundary_cfg: BoundaryConfig) -> torch.Tensor:
    """One rendered check view [S, S, 3] in [0, 1] -> the CLIP input [3, s, s] in [0, 1]
    (s = ``check_render_size``): to 8 bits as R's PNG when ``check_quantise``, then area-resized."""
    array = rgb.detach().float().cpu().numpy()
    scale = 1.0
    if boundary_cfg.check_quantise:
        array, scale = (array * 255).astype(np.uint8), 255.0  # R: (pred * 255).astype(np.uint8)
    small = area_resize(array, boundary_cfg.check_render_size) / scale
    return torch.from_numpy(small.astype(np.float32)).permute(2, 0, 1)


def check_images(render_band: RenderBand, cameras, boundary_cfg: BoundaryConfig, banded: bool = True) -> torch.Tensor:
    """[V, 3, s, s] in [0, 1]: every check camera rendered at ``check_source_size`` (or straight
    at ``check_render_size``; in bands of ``check_band_rows`` when ``banded``) and made into
    CLIP's input by ``check_image``."""
    size = boundary_cfg.check_source_size or boundary_cfg.check_render_size
    band_rows = boundary_cfg.check_band_rows if banded else size
    views = [render_in_bands(render_band, cam, size, band_rows) for cam in cameras]
    return torch.stack([check_image(v.clamp(0, 1), boundary_cfg) for v in views])


def clip_precision(boundary_cfg: BoundaryConfig, device: torch.device):
    """fp16 on CUDA when ``clip_fp16`` (R's clip.load keeps OpenAI's fp16 weights there), fp32 elsewhere."""
    if boundary_cfg.clip_fp16 and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()
