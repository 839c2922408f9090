"""A preprocessed case made in code (a yellow ellipse, nearer in its middle): no data files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_case(root: Path, name: str = "egg", size: int = 64) -> Path:
    from consistent123.case import depth_to_png16

    case = Path(root) / name
    case.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    r2 = ((xx - centre) / (0.28 * size)) ** 2 + ((yy - centre) / (0.375 * size)) ** 2
    mask = r2 < 1
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = (220, 190, 40)
    rgba[..., 3] = mask * 255
    Image.fromarray(rgba, "RGBA").save(case / "rgba.png")
    depth_to_png16(np.where(mask, 1 - np.sqrt(np.clip(1 - r2, 0, 1)), 0.0)).save(case / "depth.png")
    (case / "caption.txt").write_text("a yellow egg\n")
    return case
