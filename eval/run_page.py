"""One self-contained HTML page per reconstruction: the mesh in an interactive 3D viewer, the
turntable, the rendered views, the metrics at the paper's precision and the models loaded.

Everything is inlined (the mesh and images as data URIs, the viewer's script from
``eval/vendor/model-viewer``, see its PROVENANCE), so the page opens offline from anywhere:
``consistent123 run`` writes it as ``DIR/index.html``, the workflow's report shows one per run
(workflow/scripts/turntable_page.py).
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from consistent123.images import on_white, upscale_for_display
from consistent123.run_folder import RunFolder

MODEL_VIEWER_JS = Path(__file__).with_name("vendor") / "model-viewer" / "model-viewer-umd.min.js"
DISPLAY_SIZE = 256  # px: smallest turntable side shown
VIEWER_SIZE = 360  # px: side of the 3D viewer
STAND_IN_BANNER = {
    "random": "random-weight priors: these numbers exercise the pipeline and are not comparable to the paper",
    "oracle": "oracle prior (the true object stands in for the diffusion models): these numbers measure the "
    "pipeline, not a prior",
}
STYLE = (
    "body{font-family:sans-serif;margin:1em}img.px{image-rendering:pixelated}"
    "td,th{border:1px solid #bbb;padding:3px 8px}table{border-collapse:collapse;margin-bottom:1em}"
    ".banner{background:#fff3cd;border:1px solid #e0b000;padding:8px;font-weight:bold}"
    ".row{display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start}"
    "model-viewer{width:%dpx;height:%dpx;background:#fff;border:1px solid #bbb}" % (VIEWER_SIZE, VIEWER_SIZE)
)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- numbers
@functools.lru_cache(maxsize=1)
def paper_decimals() -> dict[str, int]:
    """Per metric, the most decimals the paper prints it with (eval/paper_numbers.csv)."""
    from eval.tables import load_paper_numbers

    return load_paper_numbers().groupby("metric")["decimals"].max().astype(int).to_dict()


def format_metric(name: str, value) -> str:
    """A metric at the paper's precision; one the paper does not print keeps 3 decimals."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{paper_decimals().get(name, 3)}f}"


def metric_label(name: str, record: dict) -> str:
    """The metric's name; LPIPS names the network it was computed with when that is not LPIPS's
    own backbone (``-RANDOM-BACKBONE``: a random trunk, never comparable)."""
    model = str(record.get("details", {}).get("lpips_model", ""))
    if "lpips" in name and model.endswith("RANDOM-BACKBONE"):
        return f"{name} ({model})"
    return name


def stand_in_kind(record: dict) -> Optional[str]:
    """ "random" or "oracle" when the run's numbers come from stand-in models, else None."""
    priors = record.get("priors", {})
    if priors.get("priors") == "random":
        return "random"
    sources = " ".join(str(o.get("source", "")) for o in priors.get("models", {}).values())
    return "oracle" if "oracle" in sources.lower() or record.get("run", {}).get("stand_ins", {}).get("oracle") else None


def banner_html(record: dict) -> str:
    kind = stand_in_kind(record)
    return f"<p class='banner'>{html.escape(STAND_IN_BANNER[kind])}</p>" if kind else ""


def metrics_html(record: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(metric_label(k, record))}</td><td>{html.escape(format_metric(k, v))}</td></tr>"
        for k, v in record.get("metrics", {}).items()
        if not isinstance(v, (dict, list))
    )
    return f"<h3>Metrics</h3><table>{rows}</table>"


def models_html(record: dict) -> str:
    priors = record.get("priors", {})
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(o.get('source')))}</td>"
        f"<td>{html.escape(str(o.get('weights')))}</td></tr>"
        for k, o in priors.get("models", {}).items()
    )
    kind = html.escape(str(priors.get("priors", "unknown")))
    return (
        f"<h3>Models loaded (priors: {kind})</h3>"
        f"<table><tr><th>part</th><th>source</th><th>weights</th></tr>{rows}</table>"
    )


# ---------------------------------------------------------------- pictures
@functools.lru_cache(maxsize=1)
def model_viewer_script() -> str:
    """The vendored viewer as one inline classic script (the bundle holds no ``</script``)."""
    return f"<script>{MODEL_VIEWER_JS.read_text(encoding='utf-8')}</script>"


def viewer_html(glb: Path) -> str:
    """The mesh in ``<model-viewer>``: drag to turn, no automatic motion (what you see moved because you moved it)."""
    if not glb.is_file():
        return "<p>no mesh.glb found</p>"
    return (
        f'<figure><model-viewer id="mesh" src="{data_uri(glb.read_bytes(), "model/gltf-binary")}" '
        'camera-controls interaction-prompt="none" shadow-intensity="0" '
        f'alt="the reconstructed mesh ({html.escape(glb.name)})"></model-viewer>'
        f"<figcaption>{html.escape(glb.name)}: drag to turn, scroll to zoom</figcaption></figure>"
    )


def turntable_html(out_dir: Path) -> str:
    import imageio.v3 as iio

    found = [out_dir / name for name in ("turntable.mp4", "turntable.gif") if (out_dir / name).is_file()]
    if not found:
        return "<p>no turntable found</p>"
    video = found[0]
    frames = iio.imread(video, index=None)
    if frames.shape[1] >= DISPLAY_SIZE:
        mime = "video/mp4" if video.suffix == ".mp4" else "image/gif"
        uri = data_uri(video.read_bytes(), mime)
        if video.suffix == ".gif":
            return f'<figure><img alt="turntable" src="{uri}"><figcaption>turntable</figcaption></figure>'
        return f'<figure><video autoplay loop muted controls src="{uri}"></video><figcaption>turntable</figcaption></figure>'
    big = [Image.fromarray(upscale_for_display(f, DISPLAY_SIZE)) for f in frames]
    buf = io.BytesIO()
    fps = iio.immeta(video).get("fps") or 12
    big[0].save(buf, format="GIF", save_all=True, append_images=big[1:], loop=0, duration=round(1000 / fps))
    w, h = big[0].size
    return (
        f'<figure><img class="px" alt="turntable" width="{w}" height="{h}" src="{data_uri(buf.getvalue(), "image/gif")}">'
        f"<figcaption>turntable, rendered at {frames.shape[2]} px, shown {w // frames.shape[2]}x enlarged</figcaption></figure>"
    )


def views_html(out_dir: Path) -> str:
    """The reference view and the novel views the CLIP metric scored, side by side on white."""
    views = out_dir / "views"
    paths = [p for p in [views / "reference.png", *sorted(views.glob("novel_*.png"))] if p.is_file()]
    if not paths:
        return ""
    images = []
    for path in paths:
        rgba = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float32) / 255.0
        images.append((on_white(rgba) * 255 + 0.5).astype(np.uint8))
    strip = upscale_for_display(np.concatenate(images, axis=1))
    return (
        f'<h3>Views</h3><img class="px" alt="views" src="{data_uri(_png(strip), "image/png")}" style="max-width:100%">'
        f"<p>{html.escape(', '.join(p.stem for p in paths))}</p>"
    )


def input_html(photo: Path, label: str) -> str:
    rgba = np.asarray(Image.open(photo).convert("RGBA"), dtype=np.float32) / 255.0
    image = upscale_for_display((on_white(rgba) * 255 + 0.5).astype(np.uint8), DISPLAY_SIZE)
    return (
        f'<figure><img class="px" alt="input" src="{data_uri(_png(image), "image/png")}" '
        f'width="{VIEWER_SIZE}"><figcaption>{html.escape(label)}</figcaption></figure>'
    )


# ---------------------------------------------------------------- the page
def image_html(path: Path, label: str) -> str:
    """A PNG of the run (e.g. the known-answer cross-section), embedded with its caption."""
    return (
        f'<figure><img alt="{html.escape(label)}" src="{data_uri(path.read_bytes(), "image/png")}" '
        f'width="{VIEWER_SIZE}"><figcaption>{html.escape(label)}</figcaption></figure>'
    )


def run_page(
    out_dir: str | Path,
    title: str,
    photo: str | Path | None = None,
    photo_label: str = "input",
    images: Sequence[tuple[str | Path, str]] = (),
) -> str:
    """The page of the reconstruction in ``out_dir`` (its metrics.json, mesh.glb, turntable, views),
    with ``photo`` (the preprocessed input) first when given and ``images`` ((PNG, caption) pairs
    that exist) after the turntable."""
    out_dir = Path(out_dir)
    folder = RunFolder(out_dir)
    record = json.loads(folder.metrics.read_text()) if folder.metrics.is_file() else {}
    pictures = (input_html(Path(photo), photo_label) if photo else "") + viewer_html(folder / RunFolder.MESH_GLB)
    pictures += turntable_html(out_dir)
    pictures += "".join(image_html(Path(path), label) for path, label in images if Path(path).is_file())
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style>{model_viewer_script()}</head>"
        f"<body><h2>{html.escape(title)}</h2>{banner_html(record)}<div class='row'>{pictures}</div>"
        f"{views_html(out_dir)}{metrics_html(record)}{models_html(record)}</body></html>\n"
    )
