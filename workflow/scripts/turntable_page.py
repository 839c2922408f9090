"""A self-contained HTML page per run for the report: turntable, rendered views, metrics, priors.

Small renders (the CPU demo's 64 px) are enlarged with whole-pixel repetition so a person can
see them; the turntable is then an animated GIF at that size, larger ones stay the MP4.
"""

import base64
import html
import io
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

from consistent123.images import upscale_for_display
from consistent123.io import atomic_write_text

sm = snakemake  # noqa: F821
out_dir = Path(sm.input.glb).parent
DISPLAY_SIZE = 256  # px: smallest turntable side shown


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def turntable_html() -> str:
    found = [out_dir / name for name in ("turntable.mp4", "turntable.gif") if (out_dir / name).is_file()]
    if not found:
        return "<p>no turntable found</p>"
    video = found[0]
    frames = iio.imread(video, index=None)
    if frames.shape[1] >= DISPLAY_SIZE:
        mime = "video/mp4" if video.suffix == ".mp4" else "image/gif"
        uri = data_uri(video.read_bytes(), mime)
        if video.suffix == ".gif":
            return f'<img alt="turntable" src="{uri}">'
        return f'<video autoplay loop muted controls width="{frames.shape[2]}" src="{uri}"></video>'
    big = [Image.fromarray(upscale_for_display(f, DISPLAY_SIZE)) for f in frames]
    buf = io.BytesIO()
    fps = iio.immeta(video).get("fps") or 12
    big[0].save(buf, format="GIF", save_all=True, append_images=big[1:], loop=0, duration=round(1000 / fps))
    size = big[0].size
    return (
        f'<img alt="turntable" width="{size[0]}" height="{size[1]}" src="{data_uri(buf.getvalue(), "image/gif")}">'
        f"<p>turntable, rendered at {frames.shape[2]} px, shown {size[0] // frames.shape[2]}x enlarged</p>"
    )


def views_html() -> str:
    """The reference view and the novel views the CLIP metric scored, side by side on white."""
    views = out_dir / "views"
    paths = [views / "reference.png", *sorted(views.glob("novel_*.png"))]
    images = []
    for path in paths:
        if path.is_file():
            rgba = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float32) / 255.0
            images.append(((rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]) * 255 + 0.5).astype(np.uint8))
    if not images:
        return ""
    strip = upscale_for_display(np.concatenate(images, axis=1))
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="PNG")
    names = ", ".join(p.stem for p in paths if p.is_file())
    return (
        f'<h3>Views</h3><img alt="views" src="{data_uri(buf.getvalue(), "image/png")}" '
        f'style="max-width:100%;image-rendering:pixelated"><p>{html.escape(names)}</p>'
    )


record = json.loads(Path(sm.input.metrics).read_text())
priors = record.get("priors", {})
rows = "".join(
    f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
    for k, v in record.get("metrics", {}).items()
    if not isinstance(v, (dict, list))
)
models = "".join(
    f"<tr><td>{html.escape(k)}</td><td>{html.escape(o['source'])}</td><td>{html.escape(o['weights'])}</td></tr>"
    for k, o in priors.get("models", {}).items()
)
kind = priors.get("priors", "unknown")
warning = (
    "<p style='background:#fff3cd;border:1px solid #e0b000;padding:8px;font-weight:bold'>random-weight priors: "
    "these numbers exercise the pipeline and are not comparable to the paper</p>"
    if kind == "random"
    else ""
)
title = html.escape(f"{sm.wildcards.benchmark} / {sm.wildcards.variant} / {sm.wildcards.case}")
atomic_write_text(
    sm.output[0],
    (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:1em}img{image-rendering:pixelated}"
        "td,th{border:1px solid #bbb;padding:3px 8px}table{border-collapse:collapse;margin-bottom:1em}</style></head>"
        f"<body><h2>{title}</h2>{warning}{turntable_html()}{views_html()}"
        f"<h3>Metrics</h3><table>{rows}</table>"
        f"<h3>Models loaded (priors: {html.escape(kind)})</h3><table><tr><th>part</th><th>source</th><th>weights</th></tr>"
        f"{models}</table></body></html>\n"
    ),
)
