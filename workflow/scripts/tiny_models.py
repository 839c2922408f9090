"""Snakemake adapter: `consistent123 tiny-models DIR` (no-op when DIR is already complete)."""

import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from _cli import run_cli  # noqa: E402

sm = snakemake  # noqa: F821
run_cli(["tiny-models", str(Path(sm.output[0]).parent)], sm.log[0], sm.threads)
