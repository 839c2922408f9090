"""MLflow tracking: one run per (case, variant), one parent run per sweep.

The run id lives in ``OUT/run.json`` next to the outputs, so a retried or resumed job logs
into the same run instead of opening a second one. Metrics are buffered and sent with
``log_batch`` (one round trip per batch, not per value). Only ``MlflowClient`` is used, never
the fluent API, so no global "active run" state leaks between runs in one process.

History is exact across kills: the caller flushes the buffer before each checkpoint, and a
resumed run skips every (metric, step) the store already holds, so replaying the iterations
after the last checkpoint adds no duplicate and leaves no gap. The first use of a local store
(SQLite file or ``mlruns`` folder) is serialised by a file lock beside it, so parallel jobs can
create it together.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional
from urllib.parse import urlparse

from consistent123.io import atomic_write_json

log = logging.getLogger(__name__)

MAX_BATCH = 100  # MLflow's limit on params per log_batch; metrics allow 1000
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def resolve_uri(uri: str | None, create: bool = True) -> str:
    """The environment wins over the config, so a cluster can point every job at a server.

    ``create=False`` (readers such as ``tables``) leaves the file system untouched.
    """
    uri = os.environ.get(TRACKING_URI_ENV) or uri or "sqlite:///results/mlflow.db"
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if create:
            db.parent.mkdir(parents=True, exist_ok=True)
        # Absolute, so jobs started from other working directories reach the same file.
        uri = "sqlite:///" + str(db.resolve())
    return uri


def local_store_path(uri: str) -> Optional[Path]:
    """The SQLite file or ``mlruns`` folder of a local store; None for a server."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "" and uri != "databricks":  # MLflow reads a bare path as a file store
        return Path(uri)
    return None


def check_store_exists(uri: str) -> None:
    """For readers: a local store that is not there is a mistyped URI, not an empty experiment."""
    from consistent123.errors import TrackingError

    path = local_store_path(uri)
    if path is not None and not path.exists():
        raise TrackingError(f"tracking URI {uri}: {path} does not exist (nothing has been logged there)")


def check_store_writable(uri: str) -> None:
    """For writers: a read-only local store fails here in one line, not deep inside SQLAlchemy."""
    from consistent123.errors import TrackingError

    path = local_store_path(uri)
    if path is None:
        return
    # SQLite also writes a journal beside the database, so its folder must be writable too.
    for p in (path, path.parent) if path.exists() else (path.parent,):
        if p.exists() and not os.access(p, os.W_OK):
            what = "is read-only" if p == path else f"is in a read-only folder ({p})"
            raise TrackingError(f"tracking store {path} {what}: runs cannot be logged")


_READY: set[str] = set()  # stores this process has already opened (created if new)


@contextmanager
def _first_use(uri: str, create: bool) -> Iterator[None]:
    from consistent123.locks import store_lock

    path = local_store_path(uri)
    if path is None or uri in _READY:
        yield
        return
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    with store_lock(f"{path}.lock", required=create):
        yield


def _client(uri: str, create: bool = True):
    """A client whose store exists: building it the first time (schema migration of a new
    SQLite file) happens under the store's lock, so concurrent first writers cannot collide."""
    from mlflow.tracking import MlflowClient

    with _first_use(uri, create):
        client = MlflowClient(tracking_uri=uri)  # opens, and if new creates, the store
    _READY.add(uri)
    return client


def _artifact_root(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return None  # a server decides its own artifact store


def ensure_experiment(uri: str | None, name: str) -> str:
    """Create the database and the experiment once (call before parallel jobs start)."""
    uri = resolve_uri(uri)
    client = _client(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    with _creating(uri):
        exp = client.get_experiment_by_name(name)  # created by another process while we waited
        if exp is not None:
            return exp.experiment_id
        return client.create_experiment(name, artifact_location=_artifact_root(uri))


@contextmanager
def _creating(uri: str) -> Iterator[None]:
    """Check-then-create under the store's lock (a server serialises on its own)."""
    from consistent123.locks import store_lock

    path = local_store_path(uri)
    if path is None:
        yield
        return
    with store_lock(f"{path}.lock"):
        yield


def start_parent_run(uri: str | None, experiment: str, sweep_name: str) -> str:
    """The parent run of a sweep; re-running the sweep reuses it (matched by the `sweep` tag)."""
    uri = resolve_uri(uri)
    exp_id = ensure_experiment(uri, experiment)
    client = _client(uri)
    with _creating(uri):
        found = client.search_runs(
            [exp_id], filter_string=f"tags.sweep = '{sweep_name}' and tags.role = 'parent'", max_results=1
        )
        if found:
            return found[0].info.run_id
        run = client.create_run(exp_id, run_name=sweep_name, tags={"sweep": sweep_name, "role": "parent"})
        return run.info.run_id


def parse_tags(items: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` command-line items -> tags."""
    from consistent123.errors import InputError

    tags = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--tags {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        tags[key.strip()] = value.strip()
    return tags


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"section.key": "value"} for MLflow params."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out


def _live_run(client, run_id: str) -> bool:
    """False when the recorded run was deleted (or its store reset): a new run is created then."""
    try:
        return client.get_run(run_id).info.lifecycle_stage != "deleted"
    except Exception:
        return False


# The tag naming the output folder a run belongs to (absolute path).
FOLDER_TAG = "output_folder"


def end_orphaned_runs(client, experiment_id: str, folder: str) -> int:
    """Mark KILLED the runs of ``folder`` left RUNNING by a job killed before it wrote run.json.

    Called only by the holder of the folder's lock (consistent123.locks), so no live job is
    logging to them. Returns how many were ended."""
    if "'" in folder:  # cannot be quoted in a search filter; such a folder keeps its orphans
        return 0
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.{FOLDER_TAG} = '{folder}' and attributes.status = 'RUNNING'"
    )
    for run in found:
        client.set_terminated(run.info.run_id, status="KILLED")
        log.warning("MLflow run %s of %s was left RUNNING by a killed job: marked KILLED", run.info.run_id, folder)
    return len(found)


class RunTracker:
    """One MLflow run bound to an output folder; buffered metrics; resumable."""

    def __init__(self, uri: str, run_id: str, flush_every: int = 200):
        self.uri = uri
        self.run_id = run_id
        self.client = _client(uri)
        self.flush_every = flush_every
        self._buffer: list = []
        self._logged: set[tuple[str, int]] = set()  # (key, step) already in the store

    def load_history(self) -> int:
        """Remember every (metric, step) the run already holds, so a replay logs none of them twice."""
        for key in self.client.get_run(self.run_id).data.metrics:
            self._logged.update((key, m.step) for m in self.client.get_metric_history(self.run_id, key))
        return len(self._logged)

    # ------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        out_dir: str | Path,
        uri: str | None,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> "RunTracker":
        """Reuse the run recorded in ``out_dir/run.json`` if any, else create one and record it."""
        uri = resolve_uri(uri)
        check_store_writable(uri)
        run_json = Path(out_dir) / "run.json"
        client = _client(uri)
        run_id = None
        resumed = False
        if run_json.exists():
            recorded = json.loads(run_json.read_text())
            if recorded.get("tracking_uri") == uri and _live_run(client, recorded["run_id"]):
                run_id = recorded["run_id"]
                resumed = True
                client.update_run(run_id, status="RUNNING")
                log.info("resuming MLflow run %s", run_id)
        if run_id is None:
            exp_id = ensure_experiment(uri, experiment)
            folder = str(Path(out_dir).resolve())
            end_orphaned_runs(client, exp_id, folder)
            all_tags = {FOLDER_TAG: folder, **(tags or {})}
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
            run_id = run.info.run_id
            atomic_write_json(
                run_json,
                {
                    "run_id": run_id,
                    "tracking_uri": uri,
                    "experiment_id": exp_id,
                    "experiment": experiment,
                    "run_name": run_name,
                },
            )
        tracker = cls(uri, run_id)
        if resumed:
            log.info("run %s holds %d metric points; a replay skips them", run_id, tracker.load_history())
        if params:
            tracker.log_params(params)
        return tracker

    @classmethod
    def from_run_json(cls, run_json: str | Path) -> "RunTracker":
        recorded = json.loads(Path(run_json).read_text())
        return cls(recorded["tracking_uri"], recorded["run_id"])

    # ------------------------------------------------------------ logging
    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = flatten(params)
        existing = self.client.get_run(self.run_id).data.params
        new = [Param(k, v[:6000]) for k, v in flat.items() if k not in existing]
        for i in range(0, len(new), MAX_BATCH):
            self.client.log_batch(self.run_id, params=new[i : i + MAX_BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for k, v in metrics.items():
            if v is None or (k, int(step)) in self._logged:
                continue
            self._logged.add((k, int(step)))
            self._buffer.append(Metric(k, float(v), now, int(step)))
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:1000], self._buffer[1000:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_artifacts(self, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
        for p in paths:
            p = Path(p)
            if p.is_dir():
                self.client.log_artifacts(
                    self.run_id, str(p), artifact_path=p.name if artifact_path is None else artifact_path
                )
            elif p.exists():
                self.client.log_artifact(self.run_id, str(p), artifact_path=artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status=status)

    def log_image(self, image, artifact_file: str) -> None:
        """One RGB image (uint8 [H, W, 3]) as an artifact, e.g. ``progress/check_views_it000500.png``."""
        self.client.log_image(self.run_id, image, artifact_file=artifact_file)


def log_to_run(
    run_json: str | Path,
    metrics: Mapping[str, float],
    artifacts: Iterable[str | Path] = (),
    step: int = 0,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Add final metrics/artifacts (and tags) to the run recorded in ``run_json`` (used by `evaluate`)."""
    tracker = RunTracker.from_run_json(run_json)
    tracker.log_metrics(metrics, step)
    tracker.flush()
    tracker.log_artifacts(artifacts)
    if tags:
        tracker.set_tags(tags)


def finish_parent_run(parent_json: str | Path, status: str, artifacts: Mapping[str, Iterable[str | Path]]) -> bool:
    """End the sweep's parent run (FINISHED or FAILED) with its artifacts ({folder: paths}).

    Missing paths are skipped (a failed sweep may not have its tables yet). Returns False when
    the sweep never created its parent run (nothing to end).
    """
    if not Path(parent_json).is_file():
        return False
    recorded = json.loads(Path(parent_json).read_text())
    tracker = RunTracker(recorded["tracking_uri"], recorded["run_id"])
    for folder, paths in artifacts.items():
        tracker.log_artifacts([p for p in paths if Path(p).exists()], artifact_path=folder)
    tracker.finish(status)
    return True
