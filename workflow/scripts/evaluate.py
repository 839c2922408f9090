"""Snakemake adapter: `consistent123 evaluate OUT --case DIR [--gt-mesh MESH]`."""

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from _cli import run_cli  # noqa: E402

sm = snakemake  # noqa: F821
args = ["evaluate", sm.params.out, "--case", sm.params.case_dir, "--config", sm.input.config]
if sm.params.gt_mesh:
    args += ["--gt-mesh", sm.params.gt_mesh]
args += ["--tags", *sm.params.tags]
run_cli(args, sm.log[0], sm.threads)
