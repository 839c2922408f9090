"""Reference-view protocol (paper §4.2): PSNR and LPIPS of the final reference-view render
against the input image, and CLIP-similarity of the input image with novel-view renders.

Inputs are the trainer's saved renders (``OUT/views/reference.png`` and
``OUT/views/novel_<azimuth>.png``, RGBA or RGB on white) and the case's ``rgba.png``; all are
composited on white, and the input is resized to the render's size.
"""

from __future__ import annotations

from pathlib import Path

from consistent123.case import RGBA
from consistent123.errors import InputError
from consistent123.run_folder import RunFolder
from eval.clip_similarity import clip_similarity
from eval.image_metrics import load_image_on_white, psnr


def reference_image(case_dir: str | Path, size=None):
    """The case's input (``rgba.png``) on white, optionally resized to ``size``."""
    path = Path(case_dir) / RGBA
    if not path.is_file():
        raise InputError(f"{path}: case input image not found (expected a preprocessed case folder)")
    return load_image_on_white(path, size)


def reference_view_metrics(out_dir: str | Path, case_dir: str | Path, lpips_metric) -> dict:
    """{"psnr", "lpips"} of views/reference.png against the case input, plus what was compared."""
    render_path = RunFolder(out_dir).reference_view
    if not render_path.is_file():
        raise InputError(f"{render_path}: reference-view render not found (is {out_dir} a finished reconstruction?)")
    render = load_image_on_white(render_path)
    target = reference_image(case_dir, render.shape[:2])
    return {
        "psnr": psnr(render, target),
        "lpips": lpips_metric(render, target),
        "lpips_model": lpips_metric.name,
        "reference_size": list(render.shape[:2]),
    }


def clip_metrics(out_dir: str | Path, case_dir: str | Path, clip_model, azimuths, polar: float) -> dict:
    """CLIP-similarity of the case input with the novel renders at ``azimuths`` (all required)."""
    paths = [RunFolder(out_dir).novel_view(az) for az in azimuths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: novel-view render not found ({len(missing)} of {len(paths)} missing)")
    views = [load_image_on_white(p) for p in paths]
    result = clip_similarity(clip_model, reference_image(case_dir), views)
    result["clip_views"] = {
        "azimuths": [float(a) for a in azimuths],
        "polar": float(polar),
        "files": [p.name for p in paths],
    }
    return result
