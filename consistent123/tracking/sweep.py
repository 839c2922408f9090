"""The sweep's parent run: created once before the sweep's jobs start, ended with the tables
and the report as its artifacts."""

from __future__ import annotations

import json
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
    tracker.finish(status)
    return True
