"""Snakemake adapter: `consistent123 reconstruct DIR --out OUT ...` under the sweep's parent run."""

import json
import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from _cli import run_cli  # noqa: E402

sm = snakemake  # noqa: F821
parent = json.loads(open(sm.input.parent).read())["run_id"]
args = [
    "reconstruct",
    sm.params.case_dir,
    "--out",
    sm.params.out,
    "--config",
    sm.input.config,
    "--run-name",
    sm.params.run_name,
    "--parent-run-id",
    parent,
    "--no-progress",
]
for override in sm.params.overrides:
    args += ["--set", override]
args += ["--tags", *sm.params.tags]
run_cli(args, sm.log[0], sm.threads)
