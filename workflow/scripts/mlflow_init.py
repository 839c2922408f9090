"""Create the MLflow experiment and the sweep's parent run once, before jobs start."""

import logging

from consistent123.io import atomic_write_json
from consistent123.tracking.store import ensure_experiment, resolve_uri
from consistent123.tracking.sweep import start_parent_run

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO)
uri = resolve_uri(sm.params.uri)
experiment_id = ensure_experiment(uri, sm.params.experiment)
run_id = start_parent_run(uri, sm.params.experiment, sm.params.sweep)
logging.info("experiment %s (%s), parent run %s at %s", sm.params.experiment, experiment_id, run_id, uri)
atomic_write_json(
    sm.output[0],
    {
        "run_id": run_id,
        "experiment": sm.params.experiment,
        "experiment_id": experiment_id,
        "sweep": sm.params.sweep,
        "tracking_uri": uri,
    },
)
