"""Snakemake adapter: `consistent123 tables --runs-root results/<sweep> --out results/tables/<sweep>`."""
import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from _cli import run_cli  # noqa: E402

sm = snakemake  # noqa: F821
args = ["tables", "--runs-root", sm.params.runs_root, "--out", sm.output.tables, *sm.params.extra]
run_cli(args, sm.log[0], sm.threads)
