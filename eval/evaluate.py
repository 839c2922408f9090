"""``consistent123 evaluate OUT --case DIR [--gt-mesh MESH]``: metrics of one reconstruction.

Reference view: PSNR and LPIPS of ``OUT/views/reference.png`` against ``DIR/rgba.png`` on
white. Novel views: CLIP-similarity of the input with ``OUT/views/novel_*.png``. With a
ground-truth mesh (GSO): Chamfer distance, volumetric IoU and the 18-view PSNR/LPIPS.
Writes ``OUT/metrics.json`` atomically (metrics, the run's tags, the models and views used,
``priors``: whether the run's priors and the metric models were pretrained or random-weight)
and ``OUT/figures/*.png``, then logs both into the MLflow run recorded in ``OUT/run.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

from consistent123.case import RGBA
from consistent123.config import Config
from consistent123.device import resolve_device
from consistent123.errors import InputError, TrackingError
from consistent123.io import atomic_write_json, check_writable, first_line
from consistent123.run_folder import RunFolder
from consistent123.tracking.run import FOLDER_TAG

log = logging.getLogger(__name__)


def _read_run_json(folder: RunFolder) -> Optional[dict]:
    path = folder.run_record
    if not path.is_file():
        return None
    try:
        run = json.loads(path.read_bytes().decode())
    except ValueError:
        raise InputError(f"{path}: not valid JSON") from None
    if not isinstance(run, dict) or not {"run_id", "tracking_uri"} <= run.keys():
        raise InputError(f"{path}: not a run record (no run_id and tracking_uri)")
    return run


def _tracked_tags(run: Optional[dict], run_json: Path, timeout_s: float) -> dict[str, str]:
    """The MLflow run's own tags (benchmark, variant...), so metrics.json carries them too."""
    if not run:
        return {}
    try:
        from mlflow.tracking import MlflowClient

        from consistent123.tracking.store import bounded_requests

        with bounded_requests(timeout_s):  # a server gone answers in seconds, not after minutes of retries
            tags = MlflowClient(tracking_uri=run["tracking_uri"]).get_run(run["run_id"]).data.tags
    except Exception as exc:  # unreachable, corrupt, or the run is not there: nothing written
        raise TrackingError(
            f"MLflow run {run.get('run_id')} of {run_json} cannot be read from {run.get('tracking_uri')} "
            f"({first_line(exc)}); pass --no-log to evaluate without the store"
        ) from None
    # MLflow's own tags and the folder bookkeeping describe the store, not the run.
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.") and k != FOLDER_TAG}


def prediction_mesh_path(folder: RunFolder) -> Path:
    """The reconstruction's mesh (``RunFolder.mesh``); one line when there is none."""
    found = folder.mesh()
    if found is None:
        raise InputError(f"{folder / RunFolder.MESH_OBJ}: reconstructed mesh not found (nor {RunFolder.MESH_GLB})")
    return found


def _priors_record(folder: RunFolder, clip_model, lpips_metric) -> dict:
    """The reconstruction's models (OUT/priors.json) and the metric models, each pretrained or
    random-weight as detected at load; ``priors`` sums them up (random | real | none | unknown)."""
    from consistent123.priors import provenance

    recorded = folder.priors_record
    run = json.loads(recorded.read_text()) if recorded.is_file() else {"priors": provenance.UNKNOWN, "models": {}}
    lpips_origin = {
        "source": lpips_metric.name,
        "weights": provenance.RANDOM if lpips_metric.random_backbone else "pretrained",
    }
    metric_models = {"clip_metric": provenance.origin_of(clip_model), "lpips": lpips_origin}
    kind = provenance.evaluation_kind(run["priors"], provenance.priors_kind(metric_models.values()))
    return {"priors": kind, "run_priors": run["priors"], "models": {**run["models"], **metric_models}}


def _stand_in_notice(priors: dict, run: Optional[dict]) -> dict:
    """{"notice": ...} when random-weight or oracle models made or scored the run, else {}."""
    from consistent123.priors.provenance import STAND_IN_NOTE

    kinds = [k for k, names in ((run or {}).get("stand_ins") or {}).items() if names]
    if priors["priors"] == "random" and "random-weight" not in kinds:
        kinds.append("random-weight")
    return {"notice": f"{' and '.join(kinds)} models: {STAND_IN_NOTE}"} if kinds else {}


def _clip_views_polar(cfg: Config, input_elevation: Optional[dict]) -> float:
    """The CLIP views' polar as the reconstruction rendered them: moved with its input elevation."""
    from consistent123.render.cameras import relative_polar

    cams = cfg.cameras
    if input_elevation is not None:
        cams = cams.model_copy(update={"ref_elevation": float(input_elevation["elevation"])})
    return relative_polar(cfg.eval.clip_views_polar, cams)


def metrics_of_geometry(gt, pred, cfg: Config, lpips_metric, metrics: dict, details: dict, progress: bool) -> None:
    """The configured protocol's geometry and view metrics of an aligned (gt, pred) pair, into
    ``metrics`` (numbers) and ``details`` (everything else); the protocol's name into both."""
    from eval.gso_views import multiview_metrics
    from eval.mesh_metrics import compare_as_configured
    from eval.protocols import geometry_metrics, get_protocol

    protocol = get_protocol(cfg.eval.protocol)
    geo = compare_as_configured(gt, pred, cfg.eval)
    for name in geometry_metrics(protocol):
        metrics[name] = geo.pop(name)
    details.update(geo)
    mv = multiview_metrics(
        gt,
        pred,
        cfg.eval,
        lpips_metric,
        backend=cfg.dmtet.rasteriser_backend,
        progress=progress,
        device=resolve_device(cfg.train.device),
    )
    metrics.update(mv_psnr=mv.pop("mv_psnr"), mv_ssim=mv.pop("mv_ssim"), mv_lpips=mv.pop("mv_lpips"))
    details.update(mv)


def evaluate_run(
    out_dir: str | Path,
    case_dir: str | Path,
    cfg: Config,
    gt_mesh: str | Path | None = None,
    tags: Optional[dict] = None,
    clip_model=None,
    lpips_metric=None,
    log_mlflow: bool = True,
    progress: bool = True,
) -> dict:
    """Compute every applicable metric, write OUT/metrics.json and figures; return the record.

    ``clip_model``/``lpips_metric`` default to the configured ones (cfg.eval.clip_model or the
    tiny CLIP when the tiny models are configured; LPIPS cfg.eval.lpips_net).
    """
    from consistent123.meshes import load_mesh
    from eval import figures
    from eval.image_metrics import load_lpips
    from eval.reference_view import clip_metrics, reference_view_metrics

    out_dir, case_dir = Path(out_dir), Path(case_dir)
    folder = RunFolder(out_dir)
    # Validate every input before any model is loaded or anything is written.
    if not out_dir.is_dir():
        raise InputError(f"{out_dir}: reconstruction folder not found")
    if not (case_dir / RGBA).is_file():
        raise InputError(f"{case_dir / RGBA}: case input image not found")
    if not folder.reference_view.is_file():
        raise InputError(f"{folder.reference_view}: reference-view render not found")
    run = _read_run_json(folder)
    if log_mlflow and run:
        from consistent123.tracking.run import announce

        announce(run, "logging to")  # the record read above
    all_tags = {
        "case": case_dir.name,
        **_tracked_tags(run if log_mlflow else None, folder.run_record, cfg.tracking.connect_timeout_s),
        **(tags or {}),
    }
    gt = pred = None
    if gt_mesh is not None:
        gt = load_mesh(gt_mesh)
        pred = load_mesh(prediction_mesh_path(folder))
    elif all_tags.get("benchmark") == "gso":
        raise InputError(f"{out_dir}: benchmark 'gso' needs a ground-truth mesh (--gt-mesh MESH)")

    check_writable(out_dir)  # a read-only folder fails here, not after the models load
    device = resolve_device(cfg.train.device)
    if lpips_metric is None:
        lpips_metric = load_lpips(cfg.eval.lpips_net, str(device), cfg.eval.lpips_random_backbone)
    if clip_model is None:
        from consistent123.priors.registry import load_clip_metric

        clip_model = load_clip_metric(cfg, device)

    metrics: dict = {}
    details: dict = {}
    ref = reference_view_metrics(out_dir, case_dir, lpips_metric)
    metrics.update(psnr=ref.pop("psnr"), lpips=ref.pop("lpips"))
    details.update(ref)
    input_elevation = (run or {}).get("input_elevation")
    clip_polar = _clip_views_polar(cfg, input_elevation)
    clip = clip_metrics(out_dir, case_dir, clip_model, cfg.eval.clip_views_azimuths, clip_polar)
    metrics["clip_similarity"] = clip.pop("clip_similarity")
    details.update(clip_model=clip.pop("clip_model"), clip_per_view=clip.pop("per_view"), clip_views=clip["clip_views"])
    if gt is not None:
        all_tags["protocol"] = cfg.eval.protocol
        if cfg.eval.align:  # the reconstruction's frame is its photo's; the scan's is its own
            from eval.alignment import align_to

            pred, details["alignment"] = align_to(gt, pred, cfg.eval)
        else:
            details["alignment"] = {"enabled": False}
        metrics_of_geometry(gt, pred, cfg, lpips_metric, metrics, details, progress)

    priors = _priors_record(folder, clip_model, lpips_metric)
    all_tags["priors"] = priors["priors"]
    all_tags["lpips_model"] = lpips_metric.name
    record = {
        "metrics": metrics,
        **_stand_in_notice(priors, run),
        "tags": all_tags,
        "priors": priors,
        "run": run,
        "input_elevation": input_elevation,
        "details": details,
        "inputs": {"out": str(out_dir), "case": str(case_dir), "gt_mesh": None if gt_mesh is None else str(gt_mesh)},
    }
    metrics_path = atomic_write_json(folder.metrics, record)
    written = figures.run_figures(out_dir)
    if log_mlflow and run:
        try:
            from consistent123.tracking.run import log_to_run

            log_to_run(
                folder.run_record,
                metrics,
                artifacts=[metrics_path, *written],
                tags={k: all_tags[k] for k in ("priors", "protocol", "lpips_model") if k in all_tags},
            )
        except Exception as exc:  # metrics.json is the record of truth; the mirror failing is an error
            raise TrackingError(
                f"{metrics_path} written, but not logged to MLflow run {run.get('run_id')} ({first_line(exc)})"
            ) from None
    return record
