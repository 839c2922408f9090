"""A reconstruction's lifecycle: one case through the whole schedule into its output folder.

The folder's files are named in ``consistent123.run_folder``. Re-running the same command after a kill resumes from the last checkpoint and logs into the
same MLflow run. Final outputs are written only after training finished, each atomically;
``DONE`` marks a finished folder. One process at a time writes a folder (``OUT/.lock``, held
for the whole job); the metric buffer is flushed before every checkpoint, so after a kill the
run's history is exact once the resumed job replays the iterations since that checkpoint.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

import torch

from consistent123.case import Case, load_case
from consistent123.config import Config, save_config
from consistent123.device import resolve_device
from consistent123.io import (
    atomic_write_json,
    atomic_write_text,
    read_json,
    remove_partial_files,
)
from consistent123.locks import folder_lock
from consistent123.pipeline.outputs import export_outputs, write_schedule_csv, write_views
from consistent123.priors.provenance import loaded_models_record
from consistent123.priors.registry import load_priors, params_naming_loaded_models
from consistent123.run_folder import RunFolder
from consistent123.tracking.cost import RunCost
from consistent123.tracking.run import RunTracker
from consistent123.training.checkpoint import config_hash
from consistent123.training.progress_images import ProgressImages
from consistent123.training.trainer import Trainer

log = logging.getLogger(__name__)


def discard_stale_state(folder: RunFolder, fingerprint: str) -> None:
    """A folder trained under another configuration restarts from scratch, in a new MLflow run.

    The fingerprint stamped beside the checkpoint is the one test of a folder's state; the
    checkpoint itself carries it too, so a checkpoint moved elsewhere is still refused."""
    stamp = folder.config_stamp
    if not stamp.exists() or stamp.read_text().strip() == fingerprint:
        return
    log.warning("%s was trained with another configuration: starting again from iteration 0", folder.root)
    shutil.rmtree(folder.checkpoint.parent, ignore_errors=True)
    for path in (folder.run_record, folder.done):
        path.unlink(missing_ok=True)


def log_backends(cfg: Config, device: torch.device, tracker: RunTracker):
    """Resolve the backends for ``device``; record them in the run log and as MLflow params."""
    from consistent123 import backends

    chosen = backends.resolve_all(cfg, device)
    log.info("device and backends: %s", chosen.describe())
    earlier = tracker.client.get_run(tracker.run_id).data.params
    for key, value in chosen.params().items():
        if key in earlier and earlier[key] != value:  # MLflow keeps a param's first value
            log.warning("resuming with %s=%s; the run started with %s", key, value, earlier[key])
    tracker.log_params(chosen.params())
    return chosen


def reconstruct(
    case_dir: str | Path,
    out_dir: str | Path,
    cfg: Config,
    run_name: Optional[str] = None,
    parent_run_id: Optional[str] = None,
    tags: Optional[dict] = None,
    stop_after: Optional[int] = None,
    progress: bool = True,
) -> Path:
    case = load_case(case_dir)  # validates before anything is built or written
    with folder_lock(out_dir):  # a second writer of this folder stops here with one line
        if remove_partial_files(out_dir):
            log.info("%s: removed temporary files of an interrupted run", out_dir)
        return _reconstruct(case, Path(out_dir), cfg, run_name, parent_run_id, tags, stop_after, progress)


def record_execution(folder: RunFolder, tracker: RunTracker, device: torch.device) -> None:
    """Threads and device in run.json and as tags: results are bit-identical only when both match."""
    facts = {"threads": torch.get_num_threads(), "device": str(device)}
    recorded = read_json(folder.run_record, "run record")
    atomic_write_json(folder.run_record, {**recorded, **facts})
    tracker.set_tags({k: str(v) for k, v in facts.items()})


def _reconstruct(
    case: Case,
    out_dir: Path,
    cfg: Config,
    run_name: Optional[str],
    parent_run_id: Optional[str],
    tags: Optional[dict],
    stop_after: Optional[int],
    progress: bool,
) -> Path:
    fingerprint = config_hash(cfg)
    folder = RunFolder(out_dir)
    discard_stale_state(folder, fingerprint)
    if folder.done.exists():
        if folder.outputs_complete(cfg.eval.clip_views_azimuths):
            log.info("%s already finished; nothing to do", out_dir)
            return out_dir
        # Outputs were removed (e.g. a forced re-run): rebuild them from the final checkpoint.
        folder.done.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder.config)
    atomic_write_text(folder.config_stamp, fingerprint + "\n")
    device = resolve_device(cfg.train.device)
    all_tags = {"case": case.name, "train.seed": str(cfg.train.seed), **(tags or {})}
    # The store is checked (and the run opened) before any model loads: a store that cannot be
    # written fails in one line without the minutes of loading.
    tracker = RunTracker.open(
        out_dir,
        cfg.tracking.uri,
        cfg.tracking.experiment,
        run_name or case.name,
        params=params_naming_loaded_models(cfg),
        parent_run_id=parent_run_id,
        tags=all_tags,
    )
    priors = load_priors(cfg, device)
    loaded = loaded_models_record(vars(priors))  # pretrained or random-weight, read from the loaded files
    atomic_write_json(folder.priors_record, loaded)
    tracker.set_tags(loaded["tags"])
    record_execution(folder, tracker, device)
    chosen = log_backends(cfg, device, tracker)
    run_cfg = chosen.apply(cfg)  # the fields and the export read the chosen backends, not "auto"
    images = ProgressImages(tracker, cfg.train.log_images_every, cfg.eval.render_size)
    # Every metric up to a checkpoint is in the store before that checkpoint exists: a kill in
    # between only makes the resumed job replay steps the store already holds (the tracker
    # skips them); the other order would leave a gap.
    trainer = Trainer(run_cfg, case, priors, device, on_metrics=images, on_checkpoint=tracker.flush)
    ckpt = folder.checkpoint
    if ckpt.exists():
        trainer.load_checkpoint(ckpt)
        log.info("resumed from %s at iteration %d", ckpt, trainer.iteration)
    images.attach(trainer)
    cost = RunCost(
        folder.cost, device, tracker.run_id, tracker.uri, cfg.tracking.system_metrics_interval_s, ckpt.exists()
    )
    try:
        trainer.fit(checkpoint_path=ckpt, stop_after=stop_after, progress=progress)
        images.final()
    except BaseException as exc:
        cost.stop_monitor()
        # A resumed run is set RUNNING again; until then MLflow shows why it stopped. Metrics
        # still buffered go out too (a resumed replay skips them).
        try:
            tracker.finish("KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED")
        except Exception as log_exc:  # the store may be what failed: keep the original error
            log.warning("could not mark the MLflow run as stopped: %s", (str(log_exc).splitlines() or [""])[0][:200])
        raise
    tracker.log_metrics(cost.finish(), trainer.iteration)
    tracker.flush_or_keep()  # a server still away fails here in one line, its metrics kept on disk
    boundary = trainer.judge.to_dict()
    boundary["t_switch"] = trainer.t_switch
    boundary["strategy"] = cfg.dynamic.strategy
    atomic_write_json(folder.boundary, boundary)
    write_schedule_csv(trainer.records, folder.schedule)
    write_views(trainer, folder)
    exported = export_outputs(trainer, folder.root)
    tracker.set_tags({"t_switch": str(trainer.t_switch), "forced_switch": str(trainer.judge.forced)})
    if trainer.t_switch is not None:
        tracker.log_metrics({"t_switch": trainer.t_switch}, trainer.iteration)
    tracker.log_artifacts(
        [
            folder.boundary,
            folder.schedule,
            folder.config,
            folder.priors_record,
            folder.cost,
            *exported.values(),
        ]
    )
    tracker.log_artifacts([folder.views])
    tracker.finish()
    atomic_write_text(folder.done, f"{trainer.iteration}\n")
    return out_dir
