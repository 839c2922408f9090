"""One MLflow run per (case, variant), bound to its output folder.

The run id lives in ``OUT/run.json`` next to the outputs, so a retried or resumed job logs
into the same run instead of opening a second one. Metrics are buffered and sent with
``log_batch`` (one round trip per batch, not per value). Only ``MlflowClient`` is used, never
the fluent API, so no global "active run" state leaks between runs in one process.

History is exact across kills: the caller flushes the buffer before each checkpoint, and a
resumed run skips every (metric, step) the store already holds, so replaying the iterations
after the last checkpoint adds no duplicate and leaves no gap.

A tracking server lost mid-run does not stop training: a flush the store refuses keeps its
metrics in the buffer (one warning line naming the URI) and the next flush (every
``flush_every`` values and at every checkpoint) sends them once the server answers again. If it
still does not answer when the run ends, the unsent metrics are written to
``OUT/unsent_metrics.json`` and the job fails in one line; re-running it sends them first.
Progress images the store refuses are skipped (they are previews; the final views are files).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from consistent123.io import atomic_write_json, move_aside
from consistent123.run_folder import RunFolder
from consistent123.tracking.store import check_store_writable, client_for, ensure_experiment, resolve_uri

UNSENT = "unsent_metrics.json"  # metrics a lost server never took, beside run.json

log = logging.getLogger(__name__)

MAX_BATCH = 100  # MLflow's limit on params per log_batch; metrics allow 1000


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


def read_run_record(run_json: Path) -> dict | None:
    """The run recorded in ``run.json``; None when there is none. One that cannot be read (torn,
    garbage, not a run record) is moved aside with a warning and ``{}`` returned: the folder's
    run is then looked up in the store by its folder tag (``find_folder_run``)."""
    if not run_json.exists():
        return None
    try:
        recorded = json.loads(run_json.read_bytes().decode())
        if not isinstance(recorded, dict) or not isinstance(recorded.get("run_id"), str):
            raise ValueError("not a run record: no run_id")
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        move_aside(run_json, f"{exc.__class__.__name__}: {str(exc)[:120]}")
        return {}
    return recorded


def find_folder_run(client, experiment_id: str, folder: str) -> str | None:
    """The one unfinished run of ``folder`` (by its folder tag), to resume when the folder's
    run.json was lost; None when there is none or several (then a new run is safer)."""
    if "'" in folder:
        return None
    found = [
        r
        for r in client.search_runs([experiment_id], filter_string=f"tags.{FOLDER_TAG} = '{folder}'")
        if r.info.status != "FINISHED"
    ]
    return found[0].info.run_id if len(found) == 1 else None


def where(uri: str, experiment: str | None, run_id: str) -> str:
    """How a command names its MLflow run on the console, at its start and at its end."""
    return f"MLflow run {run_id} (experiment {experiment!r}, tracking URI {uri})"


def announce(recorded: Mapping[str, Any], when: str) -> None:
    """Log where the run of a run.json record lives (``when``: "logging to", "logged to")."""
    log.info("%s %s", when, where(recorded["tracking_uri"], recorded.get("experiment"), recorded["run_id"]))


class RunTracker:
    """One MLflow run bound to an output folder; buffered metrics; resumable."""

    def __init__(
        self,
        uri: str,
        run_id: str,
        flush_every: int = 200,
        resumed: bool = False,
        unsent_file: str | Path | None = None,
    ):
        self.uri = uri
        self.run_id = run_id
        self.resumed = resumed  # the run existed before this job (its history is in the store)
        self.client = client_for(uri)
        self.flush_every = flush_every
        self.unsent_file = Path(unsent_file) if unsent_file else None
        self._buffer: list = []
        self._logged: set[tuple[str, int]] = set()  # (key, step) already in the store
        self.experiment: str | None = None
        self._store_down = False  # the last flush was refused (warned once per outage)
        self.refused_flushes = 0
        self._load_unsent()

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
        run_json = RunFolder(out_dir).run_record
        client = client_for(uri)
        run_id = None
        resumed = False
        recorded = read_run_record(run_json)
        folder = str(Path(out_dir).resolve())
        if recorded == {}:  # unreadable: the store knows the folder's run by its tag
            exp_id = ensure_experiment(uri, experiment)
            found = find_folder_run(client, exp_id, folder)
            if found is not None:
                recorded = {"run_id": found, "tracking_uri": uri, "experiment_id": exp_id}
                recorded.update(experiment=experiment, run_name=run_name)
                atomic_write_json(run_json, recorded)
                log.warning("MLflow run %s of %s found by its folder tag: run.json rewritten", found, folder)
        if recorded:
            if recorded.get("tracking_uri") == uri and _live_run(client, recorded["run_id"]):
                run_id = recorded["run_id"]
                resumed = True
                client.update_run(run_id, status="RUNNING")
                log.info("resuming MLflow run %s", run_id)
        if run_id is None:
            exp_id = ensure_experiment(uri, experiment)
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
        tracker = cls(uri, run_id, resumed=resumed, unsent_file=Path(out_dir) / UNSENT)
        # run.json's record: the one read when resuming, the one written above otherwise
        tracker.experiment = recorded.get("experiment", experiment) if resumed else experiment
        log.info("logging to %s", where(uri, tracker.experiment, run_id))
        if resumed:
            log.info("run %s holds %d metric points; a replay skips them", run_id, tracker.load_history())
        if params:
            tracker.log_params(params)
        return tracker

    @classmethod
    def from_run_json(cls, run_json: str | Path) -> "RunTracker":
        recorded = json.loads(Path(run_json).read_text())
        tracker = cls(recorded["tracking_uri"], recorded["run_id"])
        tracker.experiment = recorded.get("experiment")
        return tracker

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

    def _load_unsent(self) -> None:
        """Metrics an earlier job of this folder could not send go out first."""
        from mlflow.entities import Metric

        if self.unsent_file is None or not self.unsent_file.is_file():
            return
        rows = json.loads(self.unsent_file.read_text())
        self._buffer = [Metric(r["key"], r["value"], r["timestamp"], r["step"]) for r in rows] + self._buffer
        self._logged.update((r["key"], r["step"]) for r in rows)
        log.info("%d metric values a lost tracking server never took: sending them", len(rows))

    def _persist(self) -> None:
        if self.unsent_file is not None and self.unsent_file.parent.is_dir():
            atomic_write_json(
                self.unsent_file,
                [{"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step} for m in self._buffer],
            )

    def try_flush(self) -> bool:
        """Send the buffer; a store that refuses keeps it for the next try. True when all went."""
        while self._buffer:
            chunk = self._buffer[:1000]
            try:
                self.client.log_batch(self.run_id, metrics=chunk)
            except Exception as exc:
                self.refused_flushes += 1
                if not self._store_down:
                    why = (str(exc).splitlines() or [exc.__class__.__name__])[0][:160]
                    log.warning(
                        "tracking store %s refused metrics (%s): training goes on, %d values kept to send later",
                        self.uri,
                        why,
                        len(self._buffer),
                    )
                self._store_down = True
                self._persist()  # a kill while the server is away loses nothing either
                return False
            self._buffer = self._buffer[1000:]
        if self._store_down:
            log.warning("tracking store %s answers again: kept metrics sent", self.uri)
            self._store_down = False
        if self.unsent_file is not None:
            self.unsent_file.unlink(missing_ok=True)
        return True

    def flush(self) -> None:
        """Send what can be sent; never stops training (see the module's note on a lost server)."""
        self.try_flush()

    def flush_or_keep(self) -> None:
        """At the end of a run: send the buffer, or write it to ``unsent_metrics.json`` and fail in one line."""
        from consistent123.errors import TrackingError

        if self.try_flush():
            return
        if self.unsent_file is not None:
            where = f"kept in {self.unsent_file}; re-run the job to send them"
        else:
            where = "lost"
        raise TrackingError(f"tracking store {self.uri} does not answer: {len(self._buffer)} metric values {where}")

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
        self.flush_or_keep()
        self.client.set_terminated(self.run_id, status=status)
        log.info("%s: logged to %s", status, where(self.uri, self.experiment, self.run_id))

    def log_image(self, image, artifact_file: str) -> None:
        """One RGB image (uint8 [H, W, 3]) as an artifact, e.g. ``progress/check_views_it000500.png``;
        skipped with a warning when the store refuses it (a preview must not stop training)."""
        try:
            self.client.log_image(self.run_id, image, artifact_file=artifact_file)
        except Exception as exc:
            log.warning("progress image %s not logged (%s)", artifact_file, (str(exc).splitlines() or [""])[0][:160])


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
    log.info("logged to %s", where(tracker.uri, tracker.experiment, tracker.run_id))
