"""``consistent123 reconstruct DIR --out OUT``: one case through the whole schedule.

Writes into OUT: mesh.glb, mesh.obj (+ .mtl, texture), views/ (reference + novel renders),
turntable video, boundary.json, schedule.csv, config.yaml, priors.json (the models really
loaded, pretrained or random-weight), run.json, checkpoints/last.pt.
Re-running the same command after a kill resumes from the last checkpoint and logs into the
same MLflow run. Final outputs are written only after training finished, each atomically;
``DONE`` marks a finished folder. One process at a time writes a folder (``OUT/.lock``, held
for the whole job); the metric buffer is flushed before every checkpoint, so after a kill the
run's history is exact once the resumed job replays the iterations since that checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from consistent123 import memory_projection, perf
from consistent123.case import Case, load_case
from consistent123.config import Config, save_config
from consistent123.device import resolve_device
from consistent123.io import (
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    read_json,
    remove_partial_files,
)
from consistent123.locks import folder_lock
from consistent123.priors.registry import loaded_models_record, params_naming_loaded_models
from consistent123.progress_images import ProgressImages
from consistent123.render.cameras import Camera, reference_camera, ring_cameras
from consistent123.tracking import RunTracker, parse_tags
from consistent123.trainer import Trainer, config_hash, load_priors

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoints/last.pt"
FINAL_OUTPUTS = ("mesh.glb", "mesh.obj", "boundary.json", "schedule.csv", "config.yaml", "views/reference.png")
CONFIG_STAMP = "checkpoints/config_hash"
PRIORS_RECORD = "priors.json"


def outputs_complete(out_dir: Path, cfg: Config) -> bool:
    views = [out_dir / "views" / novel_view_name(az) for az in cfg.eval.clip_views_azimuths]
    return (
        all((out_dir / name).exists() for name in FINAL_OUTPUTS)
        and all(v.exists() for v in views)
        and any(out_dir.glob("turntable.*"))
    )


def novel_view_name(azimuth: float) -> str:
    return f"novel_{int(round(azimuth)):03d}.png"


def discard_stale_state(out_dir: Path, fingerprint: str) -> None:
    """A folder trained under another configuration restarts from scratch, in a new MLflow run."""
    stamp = out_dir / CONFIG_STAMP
    if not stamp.exists() or stamp.read_text().strip() == fingerprint:
        return
    log.warning("%s was trained with another configuration: starting again from iteration 0", out_dir)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    for name in ("run.json", "DONE"):
        (out_dir / name).unlink(missing_ok=True)


def add_arguments(parser) -> None:
    parser.add_argument("case_dir", metavar="DIR", help="preprocessed case folder (rgba.png, depth.png, caption.txt)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--run-name", default=None, help="MLflow run name (default: the case folder's name)")
    parser.add_argument("--parent-run-id", default=None, help="MLflow parent run (one per sweep)")
    parser.add_argument(
        "--tags", nargs="*", default=[], metavar="KEY=VALUE", help="MLflow tags (benchmark, case, variant, table)"
    )
    # Test hook: stop as if killed after N iterations (checkpoint kept), to exercise resume.
    parser.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _save_png(path: Path, rgba: torch.Tensor) -> None:
    arr = (rgba.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


@torch.no_grad()
def render_view(trainer: Trainer, cam: Camera, size: int) -> torch.Tensor:
    """Straight-alpha RGBA render of the final model (mesh when it exists), albedo shading.

    Rendered over black the colour comes out premultiplied; dividing by the opacity gives the
    straight colour a PNG stores, so compositing the file on any background is exact.
    """
    out = trainer.render(cam, size, ("albedo", 1.0, None), torch.zeros(3), perturb=False)
    alpha = out["opacity"].clamp(0, 1)
    straight = torch.where(alpha > 1e-4, out["rgb"] / alpha.clamp(min=1e-4), torch.zeros_like(out["rgb"]))
    return torch.cat([straight.clamp(0, 1), alpha], -1)


def on_white(rgba: torch.Tensor) -> torch.Tensor:
    return rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])


def write_views(trainer: Trainer, out_dir: Path) -> list[Path]:
    """views/reference.png and views/novel_<azimuth>.png, the inputs of the evaluation."""
    cfg = trainer.cfg
    size = cfg.eval.render_size
    paths = [out_dir / "views" / "reference.png"]
    _save_png(paths[0], render_view(trainer, reference_camera(cfg.cameras), size))
    for az in cfg.eval.clip_views_azimuths:
        cam = Camera(cfg.eval.clip_views_polar, float(az), cfg.cameras.ref_radius, cfg.cameras.ref_fovy)
        path = out_dir / "views" / novel_view_name(az)
        _save_png(path, render_view(trainer, cam, size))
        paths.append(path)
    return paths


def write_schedule_csv(records: list[dict], path: Path) -> None:
    columns: list[str] = []
    for row in records:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(path, buf.getvalue())


def export_outputs(trainer: Trainer, out_dir: Path) -> dict[str, Path]:
    """Textured mesh (.glb and .obj) and the turntable video of the final model."""
    from consistent123 import export

    cfg = trainer.cfg
    if trainer.mesh is not None:
        verts, faces = trainer.mesh.get_mesh()
        color_fn = trainer.mesh.albedo
    else:
        mesh = export.extract_nerf_mesh(
            trainer.nerf.density,
            cfg.nerf.bound,
            cfg.export.marching_cubes_resolution,
            cfg.dmtet.init_density_threshold,
            device=trainer.device,
        )
        verts = torch.as_tensor(mesh.vertices, dtype=torch.float32, device=trainer.device)
        faces = torch.as_tensor(mesh.faces, dtype=torch.int64, device=trainer.device)
        color_fn = lambda x: trainer.nerf(x)[1]  # noqa: E731  (albedo of the NeRF)
    if cfg.export.clean_mesh:
        before = faces.shape[0]
        v, f = export.clean_mesh(
            verts.detach(), faces, cfg.export.clean_min_component_diag_percent, cfg.export.clean_min_component_faces
        )
        if len(f) or not before:
            verts, faces = torch.from_numpy(v).to(trainer.device), torch.from_numpy(f).to(trainer.device)
            log.info("mesh clean-up: %d of %d faces kept", len(f), before)
        else:  # all specks (e.g. an untrained surface): export what there is rather than nothing
            log.warning("mesh clean-up would remove all %d faces; the mesh is exported as it is", before)
    with torch.no_grad():
        uv, uv_faces, texture = export.bake_texture(
            verts.detach(),
            faces,
            color_fn,
            cfg.export.texture_size,
            device=trainer.device,
            backend=cfg.dmtet.rasteriser_backend,
        )
    paths = export.save_textured_mesh(out_dir, verts.detach(), faces, uv, uv_faces, texture, stem="mesh")
    cams = ring_cameras(cfg.export.turntable_views, cfg.cameras.ref_polar, cfg.cameras.ref_radius, cfg.cameras.ref_fovy)
    size = cfg.export.turntable_size
    paths["turntable"] = export.render_turntable(
        lambda cam: on_white(render_view(trainer, cam, size)), cams, out_dir / "turntable.mp4", cfg.export.turntable_fps
    )
    return paths


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


def flush_metrics_with_checkpoints(trainer: Trainer, tracker: RunTracker) -> None:
    """Every metric up to a checkpoint is in the store before that checkpoint exists.

    Flush first, then save: a kill in between only makes the resumed job replay steps the
    store already holds, which the tracker skips (the other order would leave a gap).
    """
    save = trainer.save_checkpoint

    def save_after_flush(path: Path) -> None:
        tracker.flush()
        save(path)

    trainer.save_checkpoint = save_after_flush


def record_execution(out_dir: Path, tracker: RunTracker, device: torch.device) -> None:
    """Threads and device in run.json and as tags: results are bit-identical only when both match."""
    facts = {"threads": torch.get_num_threads(), "device": str(device)}
    recorded = read_json(out_dir / "run.json", "run record")
    atomic_write_json(out_dir / "run.json", {**recorded, **facts})
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
    discard_stale_state(out_dir, fingerprint)
    if (out_dir / "DONE").exists():
        if outputs_complete(out_dir, cfg):
            log.info("%s already finished; nothing to do", out_dir)
            return out_dir
        # Outputs were removed (e.g. a forced re-run): rebuild them from the final checkpoint.
        (out_dir / "DONE").unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    atomic_write_text(out_dir / CONFIG_STAMP, fingerprint + "\n")
    device = resolve_device(cfg.train.device)
    all_tags = {"case": case.name, **(tags or {})}
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
    memory_projection.preflight(cfg, device)  # CUDA only: one line, fits or which switch would
    priors = load_priors(cfg, device)
    loaded = loaded_models_record(vars(priors))  # pretrained or random-weight, read from the loaded files
    atomic_write_json(out_dir / PRIORS_RECORD, loaded)
    tracker.set_tags(loaded["tags"])
    record_execution(out_dir, tracker, device)
    chosen = log_backends(cfg, device, tracker)
    run_cfg = chosen.apply(cfg)  # the fields and the export read the chosen backends, not "auto"
    images = ProgressImages(tracker, cfg.train.log_images_every, cfg.eval.render_size)
    trainer = Trainer(run_cfg, case, priors, device, on_metrics=images)
    perf.release_encoders(trainer, cfg.perf)
    flush_metrics_with_checkpoints(trainer, tracker)
    ckpt = out_dir / CHECKPOINT
    if ckpt.exists():
        trainer.load_checkpoint(ckpt)
        log.info("resumed from %s at iteration %d", ckpt, trainer.iteration)
    images.attach(trainer)
    try:
        trainer.fit(checkpoint_path=ckpt, stop_after=stop_after, progress=progress)
        images.final()
    except BaseException as exc:
        # A resumed run is set RUNNING again; until then MLflow shows why it stopped. Metrics
        # still buffered go out too (a resumed replay skips them).
        try:
            tracker.finish("KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED")
        except Exception as log_exc:  # the store may be what failed: keep the original error
            log.warning("could not mark the MLflow run as stopped: %s", (str(log_exc).splitlines() or [""])[0][:200])
        raise
    tracker.flush()
    boundary = trainer.judge.to_dict()
    boundary["t_switch"] = trainer.t_switch
    boundary["strategy"] = cfg.dynamic.strategy
    atomic_write_json(out_dir / "boundary.json", boundary)
    write_schedule_csv(trainer.records, out_dir / "schedule.csv")
    write_views(trainer, out_dir)
    exported = export_outputs(trainer, out_dir)
    tracker.set_tags({"t_switch": str(trainer.t_switch), "forced_switch": str(trainer.judge.forced)})
    if trainer.t_switch is not None:
        tracker.log_metrics({"t_switch": trainer.t_switch}, trainer.iteration)
    tracker.log_artifacts(
        [
            out_dir / "boundary.json",
            out_dir / "schedule.csv",
            out_dir / "config.yaml",
            out_dir / PRIORS_RECORD,
            *exported.values(),
        ]
    )
    tracker.log_artifacts([out_dir / "views"])
    tracker.finish()
    atomic_write_text(out_dir / "DONE", f"{trainer.iteration}\n")
    return out_dir


def run(args, cfg: Config) -> int:
    reconstruct(
        args.case_dir,
        args.out,
        cfg,
        run_name=args.run_name,
        parent_run_id=args.parent_run_id,
        tags=parse_tags(args.tags),
        stop_after=args.stop_after,
        progress=not args.no_progress,
    )
    print(f"reconstruction written to {args.out}")
    return 0
