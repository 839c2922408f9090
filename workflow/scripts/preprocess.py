"""Snakemake adapter: `consistent123 preprocess IMAGE --out DIR [--caption] [--depth] --config`."""

import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821 (snakemake is injected)
from _cli import run_cli  # noqa: E402

sm = snakemake  # noqa: F821
args = ["preprocess", sm.input.image, "--out", str(Path(sm.output.rgba).parent), "--config", sm.input.config]
if sm.params.caption:
    args += ["--caption", sm.params.caption]
if "depth" in sm.input.keys():
    args += ["--depth", sm.input.depth]
run_cli(args, sm.log[0], sm.threads)
