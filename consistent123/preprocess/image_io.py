"""Safe reading of user images, depth maps and captions.

Every problem becomes an ``InputError`` with one line naming the file and what is wrong,
raised before any model is loaded or any output is written.
"""

from __future__ import annotations

import errno
import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from consistent123.errors import InputError

log = logging.getLogger(__name__)

# High-bit-depth greyscale modes: read as numbers, never silently clipped to 8 bits.
_NUMERIC_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _check_file(path: Path, what: str) -> None:
    try:
        os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise InputError(f"{path}: {what} is a broken symbolic link (to {os.readlink(path)})") from None
        raise InputError(f"{path}: {what} not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{path}: {what} is a symbolic link loop (it never reaches a file)") from None
        raise InputError(f"{path}: {what} cannot be read ({(exc.strerror or str(exc)).lower()})") from None
    if not path.is_file():
        raise InputError(f"{path}: {what} is not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: {what} is an empty file (0 bytes)")


def open_image(path: str | Path, what: str = "image") -> Image.Image:
    """Open and fully decode an image file, EXIF orientation applied."""
    path = Path(path)
    _check_file(path, what)
    # A truncated file must fail, whatever another module set globally.
    previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if getattr(im, "is_animated", False) and im.format != "MPO":  # MPO: a phone's stereo pair
                    log.warning("%s: %s is animated (%d frames): only the first frame is used", path, what, im.n_frames)
                im.load()
                image = ImageOps.exif_transpose(im)  # copies; also applies EXIF orientation
    except UnidentifiedImageError:
        raise InputError(f"{path}: {what} is not a readable image file (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: {what} is too large to decode safely (decompression bomb limit)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"{path}: {what} is truncated or corrupt ({reason})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    return image


def _to_uint8(image: Image.Image) -> Image.Image:
    """16-bit/float greyscale -> 8-bit by its own range (PIL's convert would clip)."""
    arr = np.asarray(image, dtype=np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.round(scaled).astype(np.uint8), "L")


def load_image(path: str | Path, min_side: int) -> Image.Image:
    """The input photo as RGB or RGBA (alpha kept when the file has one)."""
    path = Path(path)
    image = open_image(path, "image")
    if min(image.size) < min_side:
        raise InputError(
            f"{path}: image is {image.width}x{image.height} pixels, smaller than preprocess.min_image_side={min_side}"
        )
    if image.mode in _NUMERIC_MODES:
        image = _to_uint8(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)
    return image.convert("RGBA" if has_alpha else "RGB")


def load_depth_map(path: str | Path) -> np.ndarray:
    """A user-given depth map as float64 HxW (any bit depth; greyscale stored as RGB accepted)."""
    path = Path(path)
    image = open_image(path, "depth map")
    if image.mode in ("RGB", "RGBA", "P", "LA", "PA", "CMYK", "YCbCr"):
        rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError(
                f"{path}: depth map has colour channels ({image.mode}); expected a single-channel greyscale image"
            )
        return rgb[..., 0]
    depth = np.asarray(image, dtype=np.float64)
    if depth.ndim != 2:
        raise InputError(f"{path}: depth map must be a single-channel image, got mode {image.mode}")
    if not np.isfinite(depth).all():
        raise InputError(f"{path}: depth map contains NaN or infinite values")
    return depth


def clean_caption(caption: str, image_path: str | Path) -> str:
    """A user caption on one line; empty or whitespace-only is an error."""
    text = " ".join(str(caption).split())
    if not text:
        raise InputError(f"{image_path}: the caption given with --caption is empty")
    return text
