"""Snakemake adapter: the report's page of one known-answer object (eval.run_page on its oracle run,
with the cross-section and top-down images beside the truth)."""

from pathlib import Path

from consistent123.io import atomic_write_text
from eval.run_page import run_page

sm = snakemake  # noqa: F821
folder = Path(sm.input.metrics).parent  # known_answer/<object>/: metrics.json, run/, the images
images = [
    (folder / "cross_section.png", "mid-height cross-section (truth vs result)"),
    (folder / "top_down.png", "top-down view"),
]
title = f"known answer (ORACLE prior) / {sm.wildcards.obj}"
atomic_write_text(sm.output[0], run_page(folder / "run", title, images=images))
