"""One sweep, one tree, on the tracking server: every run of the sweep nests under its parent.

    python .ci/slurm/tree.py PARENT_RUN_JSON TRACKING_URI

Prints the parent's children (count, status) and its cost summary; exits non-zero when a run of
the sweep's folder is missing from the tree, did not finish, or the parent is not FINISHED.
"""

import json
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from consistent123.tracking.sweep import child_runs


def main(parent_json: str, uri: str) -> int:
    recorded = json.loads(Path(parent_json).read_text())
    client = MlflowClient(uri)
    parent = client.get_run(recorded["run_id"])
    children = child_runs(client, parent.info.run_id)
    folders = sorted(Path(parent_json).parent.glob("**/run.json"))
    status = sorted({c.info.status for c in children})
    print(
        f"parent {parent.info.run_id} at {uri}: {parent.info.status}, {len(children)} child runs {status}, "
        f"{len(folders)} run folders; device-hours {parent.data.metrics.get('cost.device_hours_total')}"
    )
    print(f"most expensive: {parent.data.tags.get('cost.most_expensive')}")
    ok = parent.info.status == "FINISHED" and len(children) == len(folders) and status == ["FINISHED"]
    print("tree OK" if ok else "tree NOT OK")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
