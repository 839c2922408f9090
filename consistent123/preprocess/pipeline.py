"""One image -> ``rgba.png``, ``depth.png``, ``caption.txt`` (+ ``preprocess.json``) in a folder.

Order of work, so that bad input never costs a model load and never leaves a partial output:
1. validate every user input (caption text, image file, depth file and its size);
2. mask from the alpha channel when it is real (a fully transparent image fails here);
3. check the output folder is writable, then load only the models still needed: captioner
   (no caption given), segmenter (no real alpha; prompted with the caption), depth estimator
   (no depth given);
4. recentre image and depth with one crop window, normalise depth inside the mask;
5. write the files as one set: all are written aside first and moved in together, ``rgba.png``
   last (its presence means the case is complete), so a full disk leaves none of them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from consistent123.case import CASE_FILES, ELEVATION, elevation_record_writer, write_case
from consistent123.config import Config
from consistent123.device import resolve_device
from consistent123.errors import InputError
from consistent123.images import pil_on_white
from consistent123.io import check_writable
from consistent123.preprocess import depth as depth_ops
from consistent123.preprocess.image_io import clean_caption, load_depth_map, load_image
from consistent123.preprocess.mask import (
    alpha_of,
    check_mask,
    drop_specks,
    has_real_alpha,
)
from consistent123.preprocess.recentre import (
    canvas_reduction,
    crop_window,
    recentre_map,
    recentre_rgba,
    reduce_map,
    reduce_rgba,
)

log = logging.getLogger(__name__)

PREPROCESS_RECORD = "preprocess.json"
OUTPUT_FILES = (*CASE_FILES, PREPROCESS_RECORD)


class _Models:
    """Models loaded on first use, through the registry; ``given`` ones (tests, batch runs) reused."""

    def __init__(self, cfg: Config, given: Mapping[str, Callable] | None):
        self.cfg, self._models = cfg, dict(given or {})
        self.used: dict[str, str] = {}

    def get(self, name: str) -> Callable:
        if name not in self._models:
            from consistent123.priors import registry

            loader = {
                "captioner": registry.load_captioner,
                "depth": registry.load_depth_estimator,
                "segmenter": registry.load_segmenter,
            }[name]
            self._models[name] = loader(self.cfg, resolve_device(self.cfg.train.device))
        model = self._models[name]
        self.used[name] = str(getattr(model, "source", type(model).__name__))
        return model


def preprocess_image(
    image_path: str | Path,
    out_dir: str | Path,
    cfg: Config,
    caption: str | None = None,
    depth_path: str | Path | None = None,
    models: Mapping[str, Callable] | None = None,
    elevation: float | None = None,
) -> dict:
    """Preprocess one image into ``out_dir``; return the record also saved as ``preprocess.json``.

    ``elevation``: the photo's known elevation in degrees, recorded in elevation.json (every
    camera relative to the input view follows it); None leaves it unknown."""
    pcfg = cfg.preprocess
    image_path, out_dir = Path(image_path), Path(out_dir)
    threshold = pcfg.alpha_threshold / 255.0

    # 1. user inputs, all validated before anything heavy happens
    if caption is not None:
        caption = clean_caption(caption, image_path)
    write_elevation = elevation_record_writer(elevation)  # a bad value fails before any work
    image = load_image(image_path, pcfg.min_image_side)
    given_depth = None
    if depth_path is not None:
        given_depth = depth_ops.match_to_image(load_depth_map(depth_path), image.size, depth_path)

    # 2. mask from the alpha channel when it is a real one
    real_alpha = has_real_alpha(image, pcfg.alpha_threshold)
    if pcfg.mask_source == "alpha" and not real_alpha:
        raise InputError(f"{image_path}: preprocess.mask_source is 'alpha' but the image has no transparent pixels")
    use_alpha = real_alpha and pcfg.mask_source != "segmenter"
    alpha = alpha_of(image) if use_alpha else None
    if alpha is not None:
        check_mask(alpha > threshold, image_path, "alpha")
    model_view = pil_on_white(image)  # what the models see

    # 3. models, only those still needed, once the outputs are known to be writable; a failure
    # from here on leaves no folder this call created
    created = not out_dir.exists()
    check_writable(out_dir)
    try:
        return _models_and_outputs(
            cfg,
            image_path,
            out_dir,
            image,
            caption,
            depth_path,
            given_depth,
            alpha,
            use_alpha,
            model_view,
            models,
            elevation,
            write_elevation,
        )
    except BaseException:
        if created:
            _remove_if_empty(out_dir)
        raise


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (another writer's files) or already gone: leave it
        pass


def _models_and_outputs(
    cfg: Config,
    image_path: Path,
    out_dir: Path,
    image,
    caption: str | None,
    depth_path,
    given_depth,
    alpha,
    use_alpha: bool,
    model_view,
    models: Mapping[str, Callable] | None,
    elevation: float | None,
    write_elevation: Callable[[Path], None],
) -> dict:
    pcfg = cfg.preprocess
    threshold = pcfg.alpha_threshold / 255.0
    models_ = _Models(cfg, models)
    sources = {
        "mask": "alpha channel" if use_alpha else "segmenter",
        "caption": "user" if caption is not None else "captioner",
        "depth": f"file {depth_path}" if depth_path is not None else "depth estimator",
    }
    if caption is None:
        caption = " ".join(str(models_.get("captioner")(model_view)).split())
        if not caption:
            raise InputError(f"{image_path}: the captioner produced an empty caption; pass one with --caption")
    if alpha is None:
        prob = np.asarray(
            models_.get("segmenter")(model_view, prompt=caption or pcfg.segmenter_prompt), dtype=np.float32
        )
        # Hard mask from the segmenter: its probabilities are coarse, a soft alpha would keep background halos.
        alpha = drop_specks(prob > threshold).astype(np.float32)
        check_mask(alpha > threshold, image_path, "segmenter")
    if given_depth is not None:
        raw_depth = given_depth
    else:
        # Estimators give disparity-like maps (larger = nearer); depth.png holds depth (larger = farther).
        raw_depth = -np.asarray(models_.get("depth")(model_view), dtype=np.float64)
    if raw_depth.shape != alpha.shape:
        raise InputError(
            f"{image_path}: depth estimate is {raw_depth.shape[::-1]} but the image is {alpha.shape[::-1]}"
        )

    # 4. recentre with one window, then depth normalised inside the recentred mask
    mask = alpha > threshold
    window = crop_window(mask, pcfg.border_ratio)
    rgb = np.asarray(image.convert("RGB"))
    rgba = np.dstack([rgb, np.round(alpha * 255.0).astype(np.uint8)])
    weight = mask.astype(np.float64)
    factor = canvas_reduction(window, cfg.limits.max_canvas_side)
    if factor > 1:  # the canvas is allocated below: its size is bounded first
        log.warning(
            "%s: its padded canvas would be %d px a side > limits.max_canvas_side=%d: image reduced %dx first",
            image_path,
            window.side,
            cfg.limits.max_canvas_side,
            factor,
        )
        rgba = reduce_rgba(rgba, factor)
        raw_depth, weight = reduce_map(raw_depth, weight, factor)
        mask = rgba[..., 3].astype(np.float32) / 255.0 > threshold
        if not mask.any():
            raise InputError(f"{image_path}: the object vanishes when the image is reduced {factor}x to fit its canvas")
        window = crop_window(mask, pcfg.border_ratio)
    rgba_out = recentre_rgba(rgba, window, pcfg.size)
    mask_out = rgba_out[..., 3].astype(np.float32) / 255.0 > threshold
    if not mask_out.any():
        raise InputError(f"{image_path}: the object vanishes when resized to {pcfg.size}x{pcfg.size} pixels")
    depth_out = recentre_map(raw_depth, weight, window, pcfg.size)
    depth_where = f"{depth_path}" if depth_path is not None else f"{image_path} (depth estimator)"
    depth_out = depth_ops.normalise_in_mask(depth_out, mask_out, depth_where)

    record: dict[str, Any] = {
        "image": str(image_path),
        "image_size": list(image.size),
        "sources": sources,
        "models": models_.used,
        "crop_window": window.as_dict(),  # in pixels of the image reduced by canvas_reduction
        "canvas_reduction": factor,
        "output_size": pcfg.size,
        "border_ratio": pcfg.border_ratio,
        "depth_png": "16-bit greyscale, 65535 = 1, larger = farther, 0 outside the mask",
        "caption": caption,
        "elevation": elevation,
        "config": {"preprocess": pcfg.model_dump(mode="json"), "models": cfg.models.model_dump(mode="json")},
    }
    for what, source in sources.items():
        log.info("%s: %s from %s", image_path.name, what, source)

    # 5. outputs, as one set; rgba.png last
    write_case(
        out_dir,
        rgba_out,
        depth_out,
        caption,
        extra={
            PREPROCESS_RECORD: lambda path: path.write_text(json.dumps(record, indent=2) + "\n"),
            ELEVATION: write_elevation,
        },
    )
    log.info("%s: wrote %s (crop window %s)", image_path.name, out_dir, window.as_dict())
    return record
