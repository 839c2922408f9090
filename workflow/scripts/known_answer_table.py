"""Snakemake adapter: the known-answer table (eval/known_answer_table.py)."""

import contextlib
from pathlib import Path

from eval.known_answer_table import write_tables

sm = snakemake  # noqa: F821
Path(sm.log[0]).parent.mkdir(parents=True, exist_ok=True)
with open(sm.log[0], "w") as log, contextlib.redirect_stdout(log):
    for path in write_tables(list(sm.input), Path(sm.output.md).parent):
        print(path)
