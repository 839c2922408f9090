"""A self-contained HTML page per run (turntable embedded, metrics listed) for the report."""
import base64
import html
import json
from pathlib import Path

from consistent123.io import atomic_write_text

sm = snakemake  # noqa: F821
out_dir = Path(sm.input.glb).parent
media = ""
for name, mime in (("turntable.mp4", "video/mp4"), ("turntable.gif", "image/gif")):
    path = out_dir / name
    if path.is_file():
        data = base64.b64encode(path.read_bytes()).decode()
        media = (f'<video autoplay loop muted controls src="data:{mime};base64,{data}"></video>' if mime == "video/mp4"
                 else f'<img src="data:{mime};base64,{data}">')
        break
metrics = json.loads(Path(sm.input.metrics).read_text())
rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
               for k, v in metrics.get("metrics", {}).items() if not isinstance(v, (dict, list)))
title = html.escape(f"{sm.wildcards.benchmark} / {sm.wildcards.variant} / {sm.wildcards.case}")
atomic_write_text(sm.output[0], f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
                  f"<body><h2>{title}</h2>{media or '<p>no turntable found</p>'}<table>{rows}</table></body></html>\n")
