"""The sweep's parent run: created once before the sweep's jobs start, ended with the tables
and the report as its artifacts."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

from consistent123.tracking.run import RunTracker
from consistent123.tracking.store import client_for, creating, ensure_experiment, resolve_uri


def start_parent_run(uri: str | None, experiment: str, sweep_name: str) -> str:
    """The parent run of a sweep; re-running the sweep reuses it (matched by the `sweep` tag)."""
    uri = resolve_uri(uri)
    exp_id = ensure_experiment(uri, experiment)
    client = client_for(uri)
    with creating(uri):
        found = client.search_runs(
            [exp_id], filter_string=f"tags.sweep = '{sweep_name}' and tags.role = 'parent'", max_results=1
        )
        if found:
            return found[0].info.run_id
        run = client.create_run(exp_id, run_name=sweep_name, tags={"sweep": sweep_name, "role": "parent"})
        return run.info.run_id


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
    summarise_children(tracker)
    tracker.finish(status)
    return True


CHILD_COLUMNS = [
    "run_name",
    "run_id",
    "status",
    "priors",
    "seed",
    "cost.wall_s",
    "cost.device_hours",
    "cost.peak_memory_mb",
]
MOST_EXPENSIVE = 5  # cases named in the parent's `cost.most_expensive` tag


def child_runs(client, parent_run_id: str) -> list:
    """Every run nested under the parent (reconstructions and known-answer runs alike)."""
    parent = client.get_run(parent_run_id)
    return client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=50000
    )


def child_rows(runs) -> list[dict]:
    """One row per child run: name, id, status, priors, seed and its cost, most expensive first."""
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        rows.append(
            {
                "run_name": run.info.run_name,
                "run_id": run.info.run_id,
                "status": run.info.status,
                "priors": tags.get("priors", "unknown"),
                "seed": tags.get("train.seed", ""),
                **{k: metrics.get(k, "") for k in CHILD_COLUMNS[5:]},
            }
        )
    return sorted(rows, key=lambda r: -(r["cost.device_hours"] or 0.0))


def summarise_children(tracker: RunTracker) -> list[dict]:
    """The parent lists its children (artifact ``runs/children.csv``), sums their device-hours
    (metric ``cost.device_hours_total``) and names the most expensive (tag ``cost.most_expensive``)."""
    rows = child_rows(child_runs(tracker.client, tracker.run_id))
    total = sum(r["cost.device_hours"] or 0.0 for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "children.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CHILD_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        tracker.log_artifacts([path], artifact_path="runs")
    tracker.log_metrics({"cost.device_hours_total": total, "children": len(rows)}, step=0)
    top = [
        f"{r['run_name']} ({r['cost.device_hours']:.4f} h)"
        for r in rows[:MOST_EXPENSIVE]
        if r["cost.device_hours"] != ""
    ]
    tracker.set_tags({"cost.most_expensive": "; ".join(top)[:5000] or "(no run logged its cost)"})
    return rows
