"""A preprocessed case folder (rgba.png, depth.png, caption.txt) loaded as training targets.

Validation happens here, before any model is built or output written, so a bad folder fails
at once with one line naming the file and the problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from consistent123.errors import InputError
from consistent123.images import composite
from consistent123.io import atomic_files

# The case folder's files: the one place that names them.
RGBA = "rgba.png"
DEPTH = "depth.png"
CAPTION = "caption.txt"
CASE_FILES = (RGBA, DEPTH, CAPTION)
# Optional: the input view's elevation, {"given": degrees or null, "auto": {prior: estimate}}
# (`consistent123 preprocess --elevation`, or the estimate of cameras.ref_elevation: auto).
ELEVATION = "elevation.json"


# depth.png: 16-bit greyscale, 65535 = 1, larger = farther, 0 outside the mask.
def depth_to_png16(depth: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(depth, 0.0, 1.0) * 65535.0).astype(np.uint16))


def read_depth_png(path: str | Path) -> np.ndarray:
    """float32 [0, 1] from a depth PNG of any bit depth (ours: 16-bit; the authors': 8-bit)."""
    with Image.open(path) as im:
        im.load()
        bits = 16 if im.mode.startswith("I") else 8
        arr = np.asarray(im, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr / (65535.0 if bits == 16 else 255.0)


@dataclass
class Case:
    name: str
    rgba: torch.Tensor  # [4, S, S] in [0, 1], straight (not premultiplied) alpha
    depth: torch.Tensor  # [1, S, S] relative depth in [0, 1], larger = farther, 0 outside the mask
    caption: str

    @property
    def size(self) -> int:
        return self.rgba.shape[-1]

    def targets(self, size: int, bg: torch.Tensor, rule: str) -> dict[str, torch.Tensor]:
        """Reference-view targets at ``size``², rgb composited on ``bg`` (HWC layout like renders).

        ``rule`` (``loss.reference_targets``): "binary" is R's (nerf/utils.py): the image and the
        depth resized by area averaging (cv2 INTER_AREA; bilinear when enlarging), the colour
        composited on white by its alpha, then the mask alpha > 0.5 picks target or ``bg``.
        "soft": antialiased bilinear image, the soft alpha as mask and for compositing, nearest depth.
        """
        if rule == "binary":
            rgba, depth = (_resize_area(x, size) for x in (self.rgba, self.depth))
            alpha = rgba[3:4]
            mask = (alpha > 0.5).float()
            on_white = rgba[:3] * alpha + (1.0 - alpha)
            rgb = on_white * mask + bg.view(3, 1, 1) * (1.0 - mask)
        else:
            rgba = F.interpolate(self.rgba[None], size=(size, size), mode="bilinear", antialias=True)[0]
            depth = F.interpolate(self.depth[None], size=(size, size), mode="nearest")[0]
            mask = rgba[3:4]
            rgb = composite(rgba, bg.view(3, 1, 1), channel_axis=0)
        return {
            "rgb": rgb.permute(1, 2, 0),
            "mask": mask.permute(1, 2, 0),
            "depth": depth.permute(1, 2, 0),
            "valid_depth": ((depth > 0) & (mask > 0.5)).permute(1, 2, 0),
        }


def _resize_area(image: torch.Tensor, size: int) -> torch.Tensor:
    """[C, H, W] -> [C, size, size] as cv2 INTER_AREA: pixel averages when shrinking."""
    if size <= image.shape[-1]:
        return F.interpolate(image[None], size=(size, size), mode="area")[0]
    return F.interpolate(image[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def _read(path: Path, reader):
    """Run ``reader(path)``; a missing or unreadable file becomes one InputError line."""
    if not path.is_file():
        raise InputError(f"{path}: missing (expected a preprocessed case folder with {', '.join(CASE_FILES)})")
    try:
        return reader(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None


def _read_rgba(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0


def read_elevation_record(case_dir: str | Path) -> dict:
    """The case's elevation record ({} when it has none)."""
    path = Path(case_dir) / ELEVATION
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise InputError(f"{path}: not valid JSON; delete it or rerun `consistent123 preprocess`") from None
    if not isinstance(record, dict):
        raise InputError(f"{path}: expected a JSON object")
    return record


def elevation_record_writer(given: float | None) -> Callable[[Path], None]:
    """Writer of a fresh elevation.json (a new image: no estimate of an earlier one survives)."""
    if given is not None and not -89.0 <= given <= 89.0:
        raise InputError(f"elevation must be degrees in [-89, 89] (got {given})")
    record = {"given": None if given is None else float(given), "auto": {}}
    return lambda path: Path(path).write_text(json.dumps(record, indent=2) + "\n")


def given_elevation(case_dir: str | Path) -> float | None:
    """The known elevation recorded by ``consistent123 preprocess --elevation`` (None: unknown)."""
    value = read_elevation_record(case_dir).get("given")
    return None if value is None else float(value)


def load_case(case_dir: str | Path) -> Case:
    case_dir = Path(case_dir)
    if not case_dir.is_dir():
        raise InputError(f"{case_dir}: case folder not found")
    rgba = _read(case_dir / RGBA, _read_rgba)
    if rgba.shape[0] != rgba.shape[1]:
        raise InputError(
            f"{case_dir / RGBA}: must be square (got {rgba.shape[1]}x{rgba.shape[0]}); run `consistent123 preprocess`"
        )
    if rgba[..., 3].max() < 0.5:
        raise InputError(f"{case_dir / RGBA}: fully transparent, no object")
    depth = _read(case_dir / DEPTH, read_depth_png)
    if depth.shape != rgba.shape[:2]:
        raise InputError(
            f"{case_dir / DEPTH}: size {depth.shape[1]}x{depth.shape[0]} does not match {RGBA} {rgba.shape[1]}x{rgba.shape[0]}"
        )
    caption_path = case_dir / CAPTION
    if not caption_path.is_file():
        raise InputError(f"{caption_path}: missing")
    caption = caption_path.read_text(encoding="utf-8", errors="replace").strip()
    if not caption:
        raise InputError(f"{caption_path}: empty caption")
    return Case(
        case_dir.name,
        torch.from_numpy(rgba).permute(2, 0, 1).contiguous(),
        torch.from_numpy(depth)[None].contiguous(),
        caption,
    )


def write_case(
    case_dir: str | Path,
    rgba: np.ndarray,
    depth: np.ndarray,
    caption: str,
    extra: dict[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write a case folder as one set (``load_case`` reads it back).

    ``rgba`` is uint8 [S, S, 4] with straight alpha, ``depth`` float in [0, 1] (larger = farther,
    0 outside the mask), ``extra`` maps further file names to writers. Every file is written
    aside and moved in together, ``rgba.png`` last, so its presence means the set is complete.
    """
    extra = dict(extra or {})
    names = (*sorted(extra), CAPTION, DEPTH, RGBA)
    with atomic_files(case_dir, names) as staging:
        for name, writer in extra.items():
            writer(staging / name)
        (staging / CAPTION).write_text(caption + "\n", encoding="utf-8")
        depth_to_png16(depth).save(staging / DEPTH, format="PNG")
        Image.fromarray(rgba, "RGBA").save(staging / RGBA, format="PNG")
    return Path(case_dir)
