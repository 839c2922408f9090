"""Snakemake adapter: the report's page of one run (eval.run_page): the mesh in an interactive 3D
viewer, the turntable, the rendered views, metrics at the paper's precision, the models loaded."""

from pathlib import Path

from consistent123.io import atomic_write_text
from eval.run_page import run_page

sm = snakemake  # noqa: F821
title = f"{sm.wildcards.benchmark} / {sm.wildcards.variant} / {sm.wildcards.case}"
atomic_write_text(sm.output[0], run_page(Path(sm.input.glb).parent, title))
