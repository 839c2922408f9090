"""Run one `consistent123` command for a Snakemake job, its output going to the job's log.

The one adapter of every rule that runs the CLI (from a ``shell:`` directive)::

    python workflow/scripts/_cli.py --log LOG --threads N [--parent-run FILE] -- COMMAND ARGS...

A failed job ends its log with one ``FAILED:`` line: the command's own marked error line
(``consistent123 COMMAND: error: ...``), or how the process died. Snakemake shows that line,
and ``failure_summary`` (the workflow's ``onerror``) lists it for every failed job.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ERROR_LINE = re.compile(r"^consistent123 \S+: error: ")
FAILED = "FAILED: "


def job_error_line(output: str, code: int) -> str:
    """The command's own error line in ``output``; else how it ended (never an unrelated log line)."""
    marked = [line for line in output.splitlines() if ERROR_LINE.match(line)]
    if marked:
        return marked[-1]
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} (no error line: out of memory, a time limit or a kill)"
    return f"exited with status {code} without an error line"


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
        start = handle.tell()  # this attempt's output only (a retry appends to the same log)
        code = subprocess.call(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        with open(log, errors="replace") as handle:
            handle.seek(start)
            line = job_error_line(handle.read(), code)
        with open(log, "a") as handle:
            handle.write(FAILED + line + "\n")
        sys.exit(f"consistent123 {args[0]} failed (exit {code}): {line}  [log: {log}]")


def failure_summary(snakemake_log: str) -> list[str]:
    """``rule  log  error line`` for each job that failed in this Snakemake run (its log names them)."""
    text = Path(snakemake_log).read_text(errors="replace") if snakemake_log and Path(snakemake_log).is_file() else ""
    failed: dict[str, str] = {}  # job log -> rule, in order, retries once
    for block in re.split(r"\n(?=Error in rule )", text)[1:]:
        rule = block.split(":", 1)[0].removeprefix("Error in rule ").strip()
        found = re.search(r"^\s+log: (\S+)", block, re.M)
        failed.setdefault(found.group(1) if found else "", rule)
    rows = []
    for job_log, rule in failed.items():
        line = "(no log)"
        if job_log and Path(job_log).is_file():
            lines = [x for x in Path(job_log).read_text(errors="replace").splitlines() if x.startswith(FAILED)]
            line = lines[-1][len(FAILED) :] if lines else "no error line in the log"
        rows.append(f"{rule}  {job_log or '-'}  {line}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="run one consistent123 command for a Snakemake job")
    parser.add_argument("--log", required=True, help="the job's log (the command's stdout and stderr)")
    parser.add_argument("--threads", type=int, default=1, help="the job's threads")
    # The sweep's parent run id exists only once mlflow_init has run, so the job reads it.
    parser.add_argument("--parent-run", help="parent_run.json of the sweep: adds --parent-run-id")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    opts = parser.parse_args(argv)
    args = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    if not args:
        parser.error("no consistent123 command given after --")
    if opts.parent_run:
        args += ["--parent-run-id", json.loads(Path(opts.parent_run).read_text())["run_id"]]
    run_cli(args, opts.log, opts.threads)


if __name__ == "__main__":
    main()
