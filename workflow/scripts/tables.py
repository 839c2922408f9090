"""Snakemake adapter: `consistent123 tables --config method.yaml --results results/<sweep> --sweep <sweep> --out results/tables/<sweep>`."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from _cli import run_cli  # noqa: E402

sm = snakemake  # noqa: F821
args = [
    "tables",
    "--config",
    sm.input.config,
    "--results",
    sm.params.runs_root,
    "--sweep",
    sm.params.sweep,
    "--out",
    sm.output.tables,
    *sm.params.extra,
]
run_cli(args, sm.log[0], sm.threads)
