"""All runs of an experiment -> one tidy table (one row per run), saved as CSV and Parquet.

Source: MLflow ``search_runs`` on the experiment; when it has no runs, the per-run
``metrics.json`` files under a results folder are read instead. A store that cannot be read
(corrupt, unreachable) is an error, never an empty table.

Run tags (the contract between the trainer, the workflow and these tables)
-------------------------------------------------------------------------
Every (case, variant) run carries these MLflow tags (``consistent123 reconstruct --tags
KEY=VALUE ...``; ``evaluate`` copies them, plus ``--tags`` of its own, into ``metrics.json``
under ``"tags"``):

``benchmark``  ``realfusion15`` | ``c10`` | ``gso`` (the data set of the case)
``case``       the case name, e.g. ``banana``, ``07`` (default: the case folder's name)
``category``   optional, Table 3's class: ball, biont, furniture, cartoon, fruit, statue,
               food, vehicle, costume, scene
``variant``    ``default`` for the method as configured by the paper, else
               ``<ablation>=<setting>``:
               ``schedule=linear`` | ``schedule=log`` (Table 3; ``exp`` = ``default``),
               ``lambda=a..d`` (Table 4), ``Ldelta=a..d`` (Table 5),
               ``strategy=a..c`` (Table 6; a = fixed_switch, b = w2d_one, c = single_stage),
               ``strategy=3d_only`` (our Zero-1-to-3 column), ``strategy=magic123`` (our
               Magic123 column in Tables 1-2)
``table``      optional, informational: the table(s) the run was launched for, e.g. ``4``
``method``     ``consistent123`` (default when absent)
``sweep``      the workflow sweep the run belongs to (``tables --sweep`` keeps one sweep)
``protocol``   the GSO protocol of the geometry and 18-view metrics (``paper`` | ``syncdreamer`` |
               ``spar3d``, eval/protocols.py); absent on runs without a ground truth and on runs
               scored before protocols existed (those used ``paper``)
``supplied``   ``user`` on rows of meshes a user supplied (``consistent123 evaluate-meshes``):
               another method's outputs, scored beside ours, never compared with the paper
``priors``     ``real`` (every model pretrained) | ``random`` (any random-weight model: the tiny
               demo/test models, LPIPS on a random trunk) | ``oracle`` (the ground truth answered
               for a prior: known-answer runs) | ``none`` (no prior loaded) |
               ``unknown`` (not recorded); set by ``reconstruct`` and ``evaluate`` from the models
               they loaded. Only ``real`` runs are compared with the paper's numbers.
``prior_3d``   the 3D prior variant the run used (``models.prior_3d``: zero123_xl | zero123 |
               stable_zero123 | oracle); set by ``reconstruct``; ``unrecorded`` for older runs.

``lpips_model`` the network LPIPS was computed with (``lpips-v0.1-alex``; ``-RANDOM-BACKBONE``
               appended for the random trunk), set by ``evaluate``; the tables label it.

``seed``       the run's ``train.seed`` (workflow ``seeds``); the tables average over seeds and
               show the standard deviation across them (absent: seed 0)

``output_folder``  the run's output folder (absolute path), set when the run is created; a run
               of that folder still RUNNING when the next job starts it afresh was left by a
               killed job and is marked KILLED.

Parent runs of sweeps (tag ``role=parent``) are skipped.

Metric names (MLflow metrics and ``metrics.json["metrics"]``): ``clip_similarity``, ``psnr``,
``lpips`` (reference view), ``chamfer_distance``, ``volumetric_iou``, ``mv_psnr``,
``mv_lpips``, ``mv_ssim``, ``normal_consistency``, ``fscore_<threshold>`` (GSO; which ones
depends on the protocol), and ``t_switch`` (logged by the trainer).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from consistent123.errors import InputError, TrackingError
from consistent123.io import atomic_path, first_line, read_json

log = logging.getLogger(__name__)

TAGS = [
    "benchmark",
    "case",
    "category",
    "variant",
    "table",
    "method",
    "sweep",
    "priors",
    "protocol",
    "supplied",
    "lpips_model",
    "prior_3d",
    "seed",
]
METRICS = [
    "clip_similarity",
    "psnr",
    "lpips",
    "chamfer_distance",
    "volumetric_iou",
    "mv_psnr",
    "mv_lpips",
    "mv_ssim",
    "normal_consistency",
    "fscore_0.1",
    "fscore_0.2",
    "fscore_0.5",
    "t_switch",
]
COLUMNS = ["run_id", *TAGS, *METRICS, "source"]
UNRECORDED = "unrecorded"  # the prior_3d of a run made before runs recorded it


def _row(run_id: str, tags: dict, metrics: dict, source: str) -> dict:
    row = {"run_id": run_id, "source": source}
    for t in TAGS:
        value = tags.get(t)
        row[t] = None if value in (None, "") else str(value)
    row["variant"] = row["variant"] or "default"
    row["method"] = row["method"] or "consistent123"
    row["priors"] = row["priors"] or "unknown"
    row["prior_3d"] = row["prior_3d"] or UNRECORDED
    for m in METRICS:
        value = metrics.get(m)
        row[m] = None if value is None else float(value)
    return row


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for m in METRICS:
        df[m] = pd.to_numeric(df[m], errors="coerce")
    return df.sort_values(["benchmark", "variant", "case", "run_id"], na_position="last", kind="stable").reset_index(
        drop=True
    )


# ---------------------------------------------------------------- MLflow
def runs_from_mlflow(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """One row per finished-or-not run of ``experiment`` (parent runs skipped)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return _frame([])
    rows, token = [], None
    while True:  # paged: an ablation grid can exceed one page
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        for run in page:
            tags = run.data.tags
            if tags.get("role") == "parent":
                continue
            rows.append(_row(run.info.run_id, tags, run.data.metrics, "mlflow"))
        token = page.token
        if not token:
            break
    return _frame(rows)


# ---------------------------------------------------------------- metrics.json fallback
def read_metrics_json(path: str | Path) -> dict:
    """One run's metrics.json -> a row (tags default from the folder names)."""
    path = Path(path)
    data = read_json(path, "metrics file")
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise InputError(f"{path}: not a metrics file (no 'metrics' mapping)")
    tags = dict(data.get("tags") or {})
    run_id = (data.get("run") or {}).get("run_id") or str(path.parent)
    return _row(run_id, tags, data["metrics"], "metrics.json")


def runs_from_files(paths: Iterable[str | Path]) -> pd.DataFrame:
    return _frame([read_metrics_json(p) for p in paths])


def find_metrics_files(root: str | Path) -> list[Path]:
    return sorted(Path(root).rglob("metrics.json"))


def collect_runs(
    tracking_uri: Optional[str], experiment: Optional[str], results_dir: Optional[str | Path]
) -> pd.DataFrame:
    """MLflow first; the metrics.json files under ``results_dir`` when MLflow gives nothing."""
    if tracking_uri and experiment:
        try:
            df = runs_from_mlflow(tracking_uri, experiment)
        except Exception as exc:  # a corrupt database, a server gone: never read as "no runs"
            raise TrackingError(
                f"tracking store {tracking_uri}: experiment {experiment!r} cannot be read ({first_line(exc)})"
            ) from None
        if len(df):
            return df
        log.info("no runs in MLflow experiment %r; reading metrics.json files", experiment)
    if results_dir is None:
        return _frame([])
    return runs_from_files(find_metrics_files(results_dir))


def latest_per_key(df: pd.DataFrame) -> pd.DataFrame:
    """One run per (benchmark, case, variant, sweep, method, protocol, seed): a re-run of a case must
    not be averaged with its predecessor. Runs with more metrics win, then the newest (MLflow
    lists newest first)."""
    if df.empty:
        return df
    keys = [k for k in ("benchmark", "case", "variant", "sweep", "method", "protocol", "seed") if k in df]
    metric_cols = [m for m in METRICS if m in df]
    filled = df[metric_cols].notna().sum(axis=1) if metric_cols else pd.Series(0, index=df.index)
    order = filled.sort_values(ascending=False, kind="stable").index
    return df.loc[order].drop_duplicates(subset=keys, keep="first").sort_index().reset_index(drop=True)


def save_table(df: pd.DataFrame, stem: str | Path) -> tuple[Path, Path]:
    """``stem.csv`` and ``stem.parquet``, each written atomically."""
    stem = Path(stem)
    csv_path, pq_path = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(pq_path) as tmp:
        df.to_parquet(tmp, index=False)
    return csv_path, pq_path
