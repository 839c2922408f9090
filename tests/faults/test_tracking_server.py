"""A tracking server (``mlflow server``) that is down, lost mid-run, or written by 8 jobs at once.

The protocol-level faults need only a server, not its database: each test starts its own
``mlflow server`` on SQLite, on a free loopback port (the PostgreSQL-backed server is run by
.ci/slurm/check.sh). Every fault ends in one line and loses no metric.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from consistent123.cli import main as cli_main
from consistent123.testing import TINY_OVERRIDES, synthetic_case
from tests.faults.test_faults import _writers, reconstruct_args, report

QUICK_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(root: Path, port: int):
    """``mlflow server`` on SQLite with its own artifact store, loopback only; stopped on exit."""
    root.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = open(root / f"server-{time.time_ns()}.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(uri + "/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, (root / log.name).read_text()[-2000:]
            assert time.time() < deadline, "mlflow server did not start in 120 s"
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)
        log.close()


@pytest.fixture
def quick_retries(monkeypatch):
    for key, value in QUICK_RETRIES.items():
        monkeypatch.setenv(key, value)


def test_server_down_at_job_start_is_refused_before_training(tiny_models, tmp_path, capsys, quick_retries):
    case = synthetic_case(tmp_path / "cases")
    overrides = [*TINY_OVERRIDES, f"models.tiny_dir={tiny_models}"]
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "down"
    code = cli_main(reconstruct_args(case, out, [*overrides, f"tracking.uri={uri}"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len([line for line in err if "error:" in line]) == 1, err
    assert uri in err[-1] and "does not answer" in err[-1]
    assert not (out / "checkpoints" / "last.pt").exists() and not (out / "run.json").exists()  # before training
    with capsys.disabled():
        report("server down at job start refused in one line", 1, 1)


def test_server_lost_mid_run_keeps_metrics_and_sends_them_when_it_answers(tmp_path, caplog, capsys, quick_retries):
    """Away for a stretch of flushes and still away at the end (the job fails in one line, its
    metrics on disk); back on the same port and database, the re-run job sends every value."""
    from mlflow.tracking import MlflowClient

    from consistent123.errors import TrackingError
    from consistent123.tracking.run import UNSENT, RunTracker

    port, out = free_port(), tmp_path / "run"
    with mlflow_server(tmp_path / "server", port) as uri:
        tracker = RunTracker.open(out, uri, "server-faults", "lost", params={"a": 1})
        for step in range(10):
            tracker.log_metrics({"loss": float(step)}, step)
        assert tracker.try_flush()
    caplog.set_level(logging.WARNING)
    for step in range(10, 20):  # the server is away: training goes on
        tracker.log_metrics({"loss": float(step)}, step)
        tracker.flush()
    assert tracker.refused_flushes >= 1 and (out / UNSENT).is_file()  # kept on disk too
    assert sum("refused metrics" in r.getMessage() for r in caplog.records) == 1  # one line per outage
    with pytest.raises(TrackingError, match=f"{uri} does not answer: 10 metric values kept"):
        tracker.flush_or_keep()  # still away at the end: one line, nothing lost
    del tracker  # the job ends there
    with mlflow_server(tmp_path / "server", port):
        again = RunTracker.open(out, uri, "server-faults", "lost")  # the re-run job
        for step in range(20, 30):
            again.log_metrics({"loss": float(step)}, step)
        again.finish()
        history = MlflowClient(uri).get_metric_history(again.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(30))
        assert not (out / UNSENT).exists()
    with capsys.disabled():
        report("server lost mid-run: metrics kept and sent when it answered again", len(history), 30)


def test_eight_jobs_write_to_one_server_at_once(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    with mlflow_server(tmp_path / "server", free_port()) as uri:
        results = _writers(uri, tmp_path / "jobs", ["run"] * 8)
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("faults")
        runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id], max_results=100)}
        held = 0
        for i, result in enumerate(results):
            assert result.returncode == 0, result.stderr[-3000:]
            run = runs[f"jobs-w{i}"]
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "value")) == list(range(20))
            assert run.info.status == "FINISHED"
            held += 1
    with capsys.disabled():
        report("8 jobs writing to one tracking server at once", held, 8)
