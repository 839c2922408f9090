"""A reconstruction's lifecycle: one case through the whole schedule into its output folder.

The folder's files are named in ``consistent123.run_folder``. Re-running the same command after
a kill resumes from the last checkpoint and logs into the same MLflow run.

No state a rerun cannot leave: the tracking store is checked (bounded) before the folder is
made, and a start that fails leaves no folder it made. A state file that cannot be read is moved
aside (``NAME.corrupt-<time>``, one warning line): a checkpoint, and the run starts over in a new
MLflow run, the old one marked FAILED; ``run.json``, and the folder's run is found in the store by
its folder tag and resumed; the config stamp, and the checkpoint's own fingerprint decides. Every
way out once the MLflow run is open (an error, a signal in any phase, the export included) leaves
it FINISHED, FAILED or KILLED, never RUNNING.

Final outputs are written only after training finished, each atomically;
``DONE`` marks a finished folder. One process at a time writes a folder (``OUT/.lock``, held
for the whole job); the metric buffer is flushed before every checkpoint, so after a kill the
run's history is exact once the resumed job replays the iterations since that checkpoint.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch

from consistent123.case import Case, load_case
from consistent123.config import Config, save_config
from consistent123.device import resolve_device
from consistent123.io import (
    atomic_write_json,
    atomic_write_text,
    first_line,
    move_aside,
    read_json,
    remove_partial_files,
)
from consistent123.locks import folder_lock
from consistent123.pipeline.elevation import check_elevation_known, resolve_input_elevation
from consistent123.pipeline.outputs import export_outputs, write_schedule_csv, write_views
from consistent123.priors.provenance import loaded_models_record
from consistent123.priors.registry import load_priors, params_naming_loaded_models
from consistent123.run_folder import RunFolder
from consistent123.tracking.cost import RunCost
from consistent123.tracking.run import RunTracker
from consistent123.tracking.store import check_store, resolve_uri
from consistent123.training import memory_projection, perf
from consistent123.training.checkpoint import config_hash
from consistent123.training.progress_images import ProgressImages
from consistent123.training.trainer import Trainer

log = logging.getLogger(__name__)


def discard_stale_state(folder: RunFolder, fingerprint: str) -> None:
    """A folder trained under another configuration restarts from scratch, in a new MLflow run.

    The fingerprint stamped beside the checkpoint is the one test of a folder's state; the
    checkpoint itself carries it too, so a checkpoint moved elsewhere is still refused (and a
    stamp that cannot be read is moved aside: the checkpoint's own then decides)."""
    stamp = folder.config_stamp
    if not stamp.exists():
        return
    try:
        recorded = stamp.read_bytes().decode().strip()
    except UnicodeDecodeError as exc:
        move_aside(stamp, first_line(exc))
        return
    if recorded == fingerprint:
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


@contextmanager
def sigterm_deferred():
    """SIGTERM waits until the block is over (then interrupts as usual): marking the MLflow run
    and writing ``DONE`` are not cut in half. Only the main thread receives it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


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
    check_elevation_known(case_dir, cfg)
    # The store answers (within tracking.connect_timeout_s) and takes writes before the folder
    # is made: a store that cannot take the run costs no folder and no model load.
    check_store(resolve_uri(cfg.tracking.uri), cfg.tracking.connect_timeout_s)
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    reached = set()  # "training" once the loop starts: from then on the folder is the run's state
    try:
        with folder_lock(out_dir):  # a second writer of this folder stops here with one line
            if remove_partial_files(out_dir):
                log.info("%s: removed temporary files of an interrupted run", out_dir)
            return _reconstruct(
                case, Path(case_dir), out_dir, cfg, run_name, parent_run_id, tags, stop_after, progress, reached
            )
    except BaseException:
        # A start that failed (store, models, backends) leaves no folder it made behind.
        if created and "training" not in reached:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def record_execution(folder: RunFolder, tracker: RunTracker, device: torch.device, priors: str = "") -> None:
    """Threads and device in run.json and as tags: results are bit-identical only when both match.
    run.json also says which priors the run loaded (random | real | none) and any stand-ins."""
    from consistent123.priors.provenance import stand_ins_loaded

    facts = {"threads": torch.get_num_threads(), "device": str(device), "priors": priors}
    recorded = read_json(folder.run_record, "run record")
    atomic_write_json(folder.run_record, {**recorded, **facts, "stand_ins": stand_ins_loaded()})
    tracker.set_tags({k: str(v) for k, v in facts.items() if k != "priors"})  # `priors` is tagged already


class _Job:
    """The open MLflow run and the trainer of one reconstruction; a start over replaces both."""

    def __init__(self, case, case_dir, folder, cfg, run_name, parent_run_id, tags, device):
        self.case, self.case_dir, self.folder, self.cfg, self.device = case, case_dir, folder, cfg, device
        self.elevation: Optional[dict] = None  # the input elevation's record, once resolved
        self.open_args = dict(
            uri=cfg.tracking.uri,
            experiment=cfg.tracking.experiment,
            run_name=run_name or case.name,
            params=params_naming_loaded_models(cfg),
            parent_run_id=parent_run_id,
            tags={
                "case": case.name,
                "prior_3d": cfg.models.prior_3d,
                "train.seed": str(cfg.train.seed),
                **(tags or {}),
            },
        )
        self.tracker: Optional[RunTracker] = None

    def open_run(self) -> RunTracker:
        self.tracker = RunTracker.open(self.folder.root, **self.open_args)
        return self.tracker

    def mark_stopped(self, exc: BaseException) -> None:
        """The run ends FAILED (an error) or KILLED (a signal, --stop-after), never RUNNING.
        A resumed run is set RUNNING again; until then MLflow shows why it stopped. Metrics
        still buffered go out too (a resumed replay skips them)."""
        if self.tracker is None or self.folder.done.exists():  # DONE: the run was closed FINISHED
            return
        status = "KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED"
        try:
            with sigterm_deferred():
                self.tracker.finish(status)
        except Exception as log_exc:  # the store may be what failed: keep the original error
            log.warning("could not mark the MLflow run as stopped: %s", first_line(log_exc))

    def start_over(self, why: str) -> RunTracker:
        """Abandon the open run (FAILED, tagged why) for a new one: its history reaches past the
        iteration the job now starts from, and a replay would mix two trainings in one run."""
        old = self.tracker
        with sigterm_deferred():
            old.set_tags({"abandoned": why})
            old.finish("FAILED")
            self.tracker = None
            self.folder.run_record.unlink(missing_ok=True)
        log.warning("MLflow run %s marked FAILED (%s); the job starts over in a new run", old.run_id, why)
        return self.open_run()


def record_input_elevation(folder: RunFolder, tracker: RunTracker, record: dict) -> None:
    """The input elevation in run.json (metrics.json copies it) and in MLflow."""
    recorded = read_json(folder.run_record, "run record")
    atomic_write_json(folder.run_record, {**recorded, "input_elevation": record})
    tracker.log_params({"input_elevation": record["elevation"], "input_elevation_source": record["source"]})
    tracker.log_metrics({"input_elevation": record["elevation"]}, 0)
    if record.get("prior_evaluations"):
        tracker.log_metrics({"input_elevation_prior_evaluations": record["prior_evaluations"]}, 0)


def _reconstruct(
    case: Case,
    case_dir: Path,
    out_dir: Path,
    cfg: Config,
    run_name: Optional[str],
    parent_run_id: Optional[str],
    tags: Optional[dict],
    stop_after: Optional[int],
    progress: bool,
    reached: set,
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
    job = _Job(case, case_dir, folder, cfg, run_name, parent_run_id, tags, device)
    # The run is opened before any model loads; from here every way out marks it.
    job.open_run()
    try:
        return _train_and_export(job, stop_after, progress, reached)
    except BaseException as exc:
        job.mark_stopped(exc)
        raise


def _tag_run(job: _Job, loaded: dict):
    """What the open run records besides its config: the models loaded, threads, device, backends."""
    job.tracker.set_tags(loaded["tags"])
    record_execution(job.folder, job.tracker, job.device, loaded["priors"])
    record_input_elevation(job.folder, job.tracker, job.elevation)
    return log_backends(job.cfg, job.device, job.tracker)


def _build_trainer(job: _Job, priors, run_cfg: Config) -> tuple[Trainer, ProgressImages]:
    images = ProgressImages(job.tracker, job.cfg.train.log_images_every, job.cfg.eval.render_size)
    # Every metric up to a checkpoint is in the store before that checkpoint exists: a kill in
    # between only makes the resumed job replay steps the store already holds (the tracker
    # skips them); the other order would leave a gap.
    trainer = Trainer(run_cfg, job.case, priors, job.device, on_metrics=images, on_checkpoint=job.tracker.flush)
    perf.release_encoders(trainer, job.cfg.perf)
    return trainer, images


def _train_and_export(job: _Job, stop_after: Optional[int], progress: bool, reached: set) -> Path:
    folder, cfg = job.folder, job.cfg
    memory_projection.preflight(cfg, job.device)  # CUDA only: one line, fits or which switch would
    priors = load_priors(cfg, job.device)
    loaded = loaded_models_record(vars(priors))  # pretrained or random-weight, read from the loaded files
    atomic_write_json(folder.priors_record, loaded)
    # The input elevation before any camera is placed: given, configured, or estimated once.
    elevation_cfg, job.elevation = resolve_input_elevation(job.case_dir, cfg, priors.zero123)
    chosen = _tag_run(job, loaded)
    run_cfg = chosen.apply(elevation_cfg)  # the fields and the export read the chosen backends, not "auto"
    trainer, images = _build_trainer(job, priors, run_cfg)
    ckpt = folder.checkpoint
    if ckpt.exists():
        try:
            trainer.load_checkpoint(ckpt)
            log.info("resumed from %s at iteration %d", ckpt, trainer.iteration)
        except Exception as exc:  # torn, garbage, or not this run's: the run starts over
            aside = move_aside(ckpt, first_line(exc))
            if job.tracker.resumed:
                job.start_over(f"checkpoint unreadable, moved to {aside.name}")
                _tag_run(job, loaded)
            trainer, images = _build_trainer(job, priors, run_cfg)  # a fresh start, fresh generators
            log.warning("starting again from iteration 0")
    tracker = job.tracker
    images.attach(trainer)
    reached.add("training")
    cost = RunCost(
        folder.cost, job.device, tracker.run_id, tracker.uri, cfg.tracking.system_metrics_interval_s, ckpt.exists()
    )
    try:
        trainer.fit(checkpoint_path=ckpt, stop_after=stop_after, progress=progress)
        images.final()
    finally:
        cost.stop_monitor()
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
    with sigterm_deferred():  # FINISHED and DONE together, or neither
        tracker.finish()
        atomic_write_text(folder.done, f"{trainer.iteration}\n")
    return folder.root
