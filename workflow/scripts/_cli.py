"""Run one `consistent123` command for a Snakemake job, its output going to the job's log."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(args: list[str], log: str, threads: int = 1) -> None:
    """`python -m consistent123.cli ARGS` with stdout+stderr in LOG; exit non-zero on failure.

    The same interpreter as Snakemake's, so a job never picks up another install. Thread
    counts follow the job's `threads` so parallel jobs do not oversubscribe the cores.
    """
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(max(1, int(threads)))
    env.setdefault("PYTHONUNBUFFERED", "1")
    cmd = [sys.executable, "-m", "consistent123.cli", *args]
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write("$ consistent123 " + " ".join(args) + "\n")
        handle.flush()
        code = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        last = Path(log).read_text(errors="replace").strip().splitlines()[-1:] or [""]
        sys.exit(f"consistent123 {args[0]} failed (exit {code}): {last[0]}  [log: {log}]")
