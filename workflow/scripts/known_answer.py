"""Snakemake adapter: `consistent123 known-answer MESH --out DIR --up-axis AXIS`."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from _cli import run_cli  # noqa: E402

sm = snakemake  # noqa: F821
args = [
    "known-answer",
    sm.input.mesh,
    "--out",
    sm.params.out,
    "--up-axis",
    sm.params.up_axis,
    "--config",
    sm.input.config,
    "--run-name",
    sm.params.run_name,
    "--no-progress",
]
for item in sm.params.overrides:
    args += ["--set", item]
args += ["--tags", *sm.params.tags]
run_cli(args, sm.log[0], sm.threads)
