"""One sweep, one tree, labelled truly: what answered, the experiment's kind, the parent's
children and what they cost."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from consistent123.config import config_from_dict
from consistent123.priors import provenance
from consistent123.priors.registry import params_naming_loaded_models


def model(source: str, weights: str):
    return SimpleNamespace(origin={"source": source, "weights": weights})


def test_a_run_the_oracle_answered_says_oracle_whatever_else_it_loaded():
    record = provenance.loaded_models_record(
        {
            "zero123": model("oracle:panda.ply", provenance.ORACLE),
            "stable_diffusion": model("oracle:panda.ply", provenance.ORACLE),
            "clip_judge": model("results/models/tiny/clip", provenance.RANDOM),
        }
    )
    assert record["priors"] == record["tags"]["priors"] == "oracle"
    assert record["tags"]["model.zero123"] == "oracle:panda.ply (ground truth)"
    assert provenance.evaluation_kind("oracle", "random") == "oracle"  # scored by random LPIPS: still oracle
    assert provenance.evaluation_kind("random", "real") == "random"
    real = provenance.loaded_models_record({"zero123": model("hub/zero123", "pretrained")})
    assert real["priors"] == "real"


@pytest.mark.parametrize(
    "roles, named",
    [
        ({}, {"zero123", "stable_diffusion"}),
        ({"models.prior_3d": "oracle"}, {"stable_diffusion"}),
        ({"models.prior_3d": "oracle", "models.prior_2d": "oracle"}, set()),
    ],
)
def test_params_name_no_prior_the_oracle_replaced(roles, named):
    cfg = config_from_dict({}, [f"{k}={v}" for k, v in roles.items()])
    params = params_naming_loaded_models(cfg)
    assert {"zero123", "stable_diffusion"} & set(params["models"]) == named
    assert params["models"]["prior_3d"] == roles.get("models.prior_3d", "zero123_xl")


def test_the_experiment_opens_on_its_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    from consistent123.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, ensure_experiment, resolve_uri

    uri = resolve_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient(uri)
    made = ensure_experiment(uri, "new")
    assert client.get_experiment(made).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    older = client.create_experiment("older")  # made before the tag existed
    client.set_experiment_tag(older, EXPERIMENT_KIND_TAG, "genai_development_inferred")  # the UI's guess
    ensure_experiment(uri, "older")
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "finetuning"})
    ensure_experiment(uri, "chosen")
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "finetuning"  # a user's choice stays


def test_the_parent_lists_every_child_and_sums_what_they_cost(tmp_path):
    from mlflow.tracking import MlflowClient

    from consistent123.tracking.run import RunTracker
    from consistent123.tracking.store import resolve_uri
    from consistent123.tracking.sweep import finish_parent_run, start_parent_run

    uri = resolve_uri(f"sqlite:///{tmp_path}/mlflow.db")
    parent_id = start_parent_run(uri, "sweeps", "demo")
    hours = {"a": 0.5, "b": 2.0, "known_answer/panda": 1.0}
    for name, h in hours.items():
        run = RunTracker.open(tmp_path / name, uri, "sweeps", name, parent_run_id=parent_id, tags={"priors": "random"})
        run.log_metrics({"cost.device_hours": h, "cost.wall_s": h * 3600}, 0)
        run.finish()
    RunTracker.open(tmp_path / "elsewhere", uri, "sweeps", "not-a-child").finish()
    parent_json = tmp_path / "parent_run.json"
    parent_json.write_text(json.dumps({"run_id": parent_id, "tracking_uri": uri}))
    assert finish_parent_run(parent_json, "FINISHED", {})
    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    assert parent.data.metrics["cost.device_hours_total"] == sum(hours.values())
    assert parent.data.metrics["children"] == 3
    assert parent.data.tags["cost.most_expensive"].startswith("b (2.0000 h); known_answer/panda (1.0000 h); a")
    listed = Path(client.download_artifacts(parent_id, "runs/children.csv", str(tmp_path / "dl")))
    rows = list(csv.DictReader(listed.open()))
    assert [r["run_name"] for r in rows] == ["b", "known_answer/panda", "a"]
    assert {r["status"] for r in rows} == {"FINISHED"}


def test_a_run_records_its_wall_time_device_hours_and_peak_memory(tmp_path):
    from consistent123.tracking.cost import RunCost

    cost = RunCost(tmp_path / "cost.json", "cpu", "unused", "unused", interval_s=0, resumed=False)
    sum(range(10**6))  # some work
    metrics = cost.finish()
    record = json.loads((tmp_path / "cost.json").read_text())
    assert record["memory_kind"] == "host_rss" and record["peak_memory_mb"] > 10  # a Python with torch
    assert metrics["cost.device_hours"] == pytest.approx(record["wall_s"] / 3600) and record["wall_s"] > 0
