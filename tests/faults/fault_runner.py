"""Run the `consistent123` CLI in a child process with one fault injected (tests/faults/test_faults.py).

    python -m tests.faults.fault_runner FAULT CLI-ARGS...      FAULT = kind:n, or "none"

Hard kills use ``os._exit``: no ``finally``, no flush, exactly what ``kill -9`` leaves.
    die_at_iteration:N    before iteration N runs
    die_in_checkpoint:K   halfway through writing the K-th checkpoint (a torn temporary file)
    die_after_flush:K     after the K-th flush of metrics (before the checkpoint that follows)
    die_in_export:1       halfway through writing the textured mesh
    die_in_finish:1       after the final metrics reached the store, before the run is closed
    sigterm_at_iteration:N  SIGTERM to itself before iteration N (the graceful path)
    hold_at_iteration:N   print HOLDING and sleep before iteration N (a long-running writer)

    python -m tests.faults.fault_runner store URI OUT BARRIER run|parent
a first writer of a tracking store: imports everything, says it is ready (BARRIER/ready-PID)
and waits for BARRIER/go so that all writers start together, then opens a run as
`reconstruct` does (or the sweep's experiment and parent run, as the workflow does) and
logs 20 metric points.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time

KILLED = 137


def _at_iteration(n: int, action) -> None:
    from consistent123.training import trainer

    step = trainer.Trainer.step

    def step_with_fault(self):
        if self.iteration == n:
            action()
        return step(self)

    trainer.Trainer.step = step_with_fault


def _nth_call(module, name: str, n: int, action) -> None:
    original = getattr(module, name)
    calls = [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            return action(original, *args, **kwargs)
        return original(*args, **kwargs)

    setattr(module, name, wrapped)


def _torn_save(original, obj, f, *args, **kwargs):
    buf = io.BytesIO()
    original(obj, buf, *args, **kwargs)
    with open(f, "wb") as handle:
        handle.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    os._exit(KILLED)


def _torn_mesh(original, out_dir, *args, **kwargs):
    from pathlib import Path

    (Path(out_dir) / ".mesh.obj.partial-torn.obj").write_text("v 0 0 0\n")
    os._exit(KILLED)


def _after(original, *args, **kwargs):
    result = original(*args, **kwargs)
    os._exit(KILLED)
    return result


def install(fault: str) -> None:
    if fault == "none":
        return
    kind, n = fault.split(":")
    n = int(n)
    if kind == "die_at_iteration":
        _at_iteration(n, lambda: os._exit(KILLED))
    elif kind == "sigterm_at_iteration":
        _at_iteration(n, lambda: os.kill(os.getpid(), signal.SIGTERM))
    elif kind == "hold_at_iteration":
        _at_iteration(n, lambda: (print("HOLDING", flush=True), time.sleep(600)))
    elif kind == "die_in_checkpoint":
        import torch

        _nth_call(torch, "save", n, _torn_save)
    elif kind == "die_after_flush":
        from consistent123.tracking.run import RunTracker

        original = RunTracker.flush
        calls = [0]

        def flush(self):
            had = bool(self._buffer)
            original(self)
            calls[0] += had
            if had and calls[0] == n:
                os._exit(KILLED)

        RunTracker.flush = flush
    elif kind == "die_in_export":
        from consistent123.pipeline import export

        _nth_call(export, "save_textured_mesh", n, _torn_mesh)
    elif kind == "die_in_finish":
        from consistent123.tracking.run import RunTracker

        def finish(self, status="FINISHED"):
            self.flush()
            os._exit(KILLED)

        RunTracker.finish = finish
    else:
        raise SystemExit(f"unknown fault {fault!r}")


def store_writer(uri: str, out: str, barrier: str, role: str) -> int:
    import mlflow.tracking  # noqa: F401  (imported before the barrier: the race is the store's)

    from consistent123.tracking import run as tracking
    from consistent123.tracking.sweep import start_parent_run

    open(os.path.join(barrier, f"ready-{os.getpid()}"), "w").close()
    while not os.path.exists(os.path.join(barrier, "go")):
        time.sleep(0.005)
    if role == "parent":
        start_parent_run(uri, "faults", "sweep")
        return 0
    tracker = tracking.RunTracker.open(out, uri, "faults", os.path.basename(out), params={"a": {"b": 1}})
    for step in range(20):
        tracker.log_metrics({"value": float(step)}, step)
    tracker.finish()
    return 0


def main(argv: list[str]) -> int:
    if argv[0] == "store":
        return store_writer(*argv[1:5])
    install(argv[0])
    from consistent123.cli import main as cli_main

    return cli_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
