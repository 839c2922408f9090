"""The 25 published cases of the preprocessing tests, their images read back and a few measures of a mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from consistent123.testing import C10, RF15, rf15_prompts


def benchmark_cases() -> list[tuple[str, Path, Path, str | None]]:
    """(id, rgba file, depth file, caption or None) for all 25 published cases."""
    prompts = rf15_prompts()
    cases = [
        (f"rf15-{name}", RF15 / f"{name}_rgba.png", RF15 / f"{name}_depth.png", prompt)
        for name, prompt in sorted(prompts.items())
    ]
    for rgba in sorted(C10.glob("*_rgba.png")):
        name = rgba.name[: -len("_rgba.png")]
        cases.append((f"c10-{name}", rgba, C10 / f"{name}_depth.png", None))
    return cases


def read_rgba(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def read_depth(path: Path) -> np.ndarray:
    """Depth PNG as float in [0, 1] whatever its bit depth."""
    with Image.open(path) as im:
        arr = np.asarray(im, dtype=np.float64)
        return arr / (65535.0 if im.mode.startswith("I") else 255.0)


def bbox_fill(mask: np.ndarray) -> float:
    """Longer side of the mask's bounding box over the image side."""
    rows, cols = np.nonzero(mask)
    return max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) / mask.shape[0]


def bbox_centre(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    return (rows.min() + rows.max()) / 2.0, (cols.min() + cols.max()) / 2.0
