"""``consistent123 known-answer MESH --out DIR``: reconstruct a mesh's own render through the oracle prior.

A measurement with a known answer. The ground-truth mesh is normalised into the scene (bounding-
box centre at the origin, longest side ``oracle.object_size``, z-up turned to the project's +y
with ``--up-axis z``) and coloured (its vertex colours or texture when it has them, else the
smooth function of position in ``smooth_colours``). Then:

    DIR/case/   rgba.png, depth.png, caption.txt (the reference view, rendered by the project's
                rasteriser from the reference camera) and ground_truth.ply (the coloured truth)
    DIR/run/    ``consistent123 reconstruct`` with the oracle in both prior roles, then
                ``consistent123 evaluate`` against the truth (Chamfer, IoU, 18 GSO views)
    DIR/metrics.json   chamfer_distance, volumetric_iou, mv_psnr, mv_lpips, psnr (reference
                view) and the reconstruction's wall time, also logged to the run's MLflow run;
                for a procedural hard shape also cavity_filled (consistent123/experiments/hard_shapes.py)
    DIR/cross_section.png, DIR/top_down.png   whether the inside is carved (eval/cross_section.py)

MESH is a file, or ``hard:NAME`` for a procedural shape of consistent123/experiments/hard_shapes.py
(``hard:cup``, ``hard:bowl``...), built +y up with its cavity known exactly.

The frame is known (the truth is rendered from the reference camera), so eval.align is off.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import trimesh

from consistent123.case import DEPTH, ELEVATION, elevation_record_writer, write_case
from consistent123.config import Config, OracleConfig, config_from_dict
from consistent123.images import straight_colour
from consistent123.io import atomic_write_json
from consistent123.render.cameras import reference_camera
from consistent123.run_folder import RunFolder

log = logging.getLogger(__name__)

HEADLINE = ("chamfer_distance", "volumetric_iou", "mv_psnr", "mv_lpips", "psnr")
GROUND_TRUTH = "ground_truth.ply"
# z-up (scans, CAD) -> the project's +y up: a -90 degree turn about x, (x, y, z) -> (x, z, -y).
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
# Directions and phases of the three colour waves of ``smooth_colours`` (fixed, so every run of
# an object sees the same colours; the directions differ so each side of an object looks different).
_COLOUR_DIRECTIONS = np.array([[1.0, 0.3, 0.2], [-0.2, 1.0, 0.5], [0.4, -0.5, 1.0]])
_COLOUR_PHASES = np.array([0.0, 2.1, 4.2])


# ---------------------------------------------------------------- the ground truth
def smooth_colours(points: np.ndarray, frequency: float, amplitude: float) -> np.ndarray:
    """[N, 3] in [0.5 - a, 0.5 + a]: colour_c(p) = 0.5 + a sin(2 pi f p . d_c + phi_c), p in the unit cube."""
    waves = 2.0 * np.pi * frequency * points @ _COLOUR_DIRECTIONS.T + _COLOUR_PHASES
    return (0.5 + amplitude * np.sin(waves)).astype(np.float32)


def prepare_ground_truth(mesh: trimesh.Trimesh, up_axis: str, oracle_cfg: OracleConfig) -> trimesh.Trimesh:
    """The mesh in the scene's frame (+y up, centred, longest side ``object_size``) with vertex colours."""
    from consistent123.meshes import normalise_mesh
    from consistent123.priors.oracle import mesh_vertex_colours

    colours = mesh_vertex_colours(mesh)
    mesh = trimesh.Trimesh(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces), process=False)
    if up_axis == "z":
        mesh.apply_transform(Z_UP_TO_Y_UP)
    unit = normalise_mesh(mesh)  # centre at the origin, longest side 1
    if colours is None:
        colours = smooth_colours(np.asarray(unit.vertices), oracle_cfg.colour_frequency, oracle_cfg.colour_amplitude)
    unit.vertices = np.asarray(unit.vertices) * oracle_cfg.object_size
    rgba = np.concatenate([np.round(colours * 255.0), np.full((len(colours), 1), 255.0)], 1).astype(np.uint8)
    unit.visual = trimesh.visual.ColorVisuals(unit, vertex_colors=rgba)
    return unit


def caption_of(name: str) -> str:
    """'CHICKEN_RACER' -> 'a chicken racer' (only the 2D prior's text; the oracle ignores it)."""
    return "a " + name.replace("_", " ").replace("-", " ").lower()


def load_source(spec: str | Path):
    """(mesh, name, built hard shape or None) of a file or a ``hard:NAME`` procedural shape."""
    from consistent123.experiments import hard_shapes
    from consistent123.meshes import load_mesh

    if hard_shapes.is_hard_shape(str(spec)):
        from consistent123.errors import InputError

        try:
            built = hard_shapes.build(str(spec))
        except KeyError as exc:  # one line naming the shapes there are
            raise InputError(exc.args[0]) from None
        return built.mesh, built.shape.name, built
    path = Path(spec)
    return load_mesh(path), path.stem, None  # one clear line when the file is missing or not a mesh


def write_geometry_views(gt_path: Path, pred_path: Path, out_dir: Path, cfg: Config, built=None) -> dict:
    """cross_section.png and top_down.png of the result against the truth; with a hard shape,
    the share of its cavity the result fills, overall and where the training cameras see it
    empty (the voxels of the IoU, in the truth's frame)."""
    from consistent123.experiments.hard_shapes import cavity_fill
    from consistent123.meshes import load_mesh, normalise_pair
    from consistent123.render.visibility import seen_empty
    from eval.cross_section import write_cross_section, write_top_down
    from eval.mesh_metrics import solid_voxels, voxel_centres

    truth_mesh = load_mesh(gt_path)
    gt, pred = normalise_pair(truth_mesh, load_mesh(pred_path), cfg.eval.normalise)
    res = cfg.eval.iou_resolution
    truth, result = solid_voxels(gt, res), solid_voxels(pred, res)
    extra, cavity = {}, None
    if built is not None:
        g = voxel_centres(res)
        centres = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        inside = built.cavity_mask(centres)  # only the cavity's voxels need the cameras' test
        cavity, seen = inside.reshape((res,) * 3), np.zeros(len(centres), bool)
        cams = cfg.cameras
        scale = float((truth_mesh.bounds[1] - truth_mesh.bounds[0]).max())  # normalised -> scene
        seen[inside] = seen_empty(truth_mesh, centres[inside] * scale, cams.polar_range, cams.ref_radius, cams.ref_fovy)
        extra = cavity_fill(built, result, seen=seen.reshape((res,) * 3))
    write_cross_section(truth, result, out_dir / "cross_section.png", cavity)
    write_top_down(gt, pred, out_dir / "top_down.png")
    return extra


@torch.no_grad()
def render_case(
    gt: trimesh.Trimesh, case_dir: Path, cfg: Config, caption: str, true_elevation: Optional[float] = None
) -> Path:
    """The case folder of the reference view, as ``consistent123 preprocess`` writes it, plus the
    truth; ``true_elevation`` (degrees) renders it from that elevation instead of the configured one."""
    from consistent123.preprocess.depth import normalise_in_mask
    from consistent123.priors.oracle import mesh_vertex_colours
    from consistent123.render.rasterize import render_mesh

    size = cfg.preprocess.size
    if true_elevation is not None:
        cfg = config_from_dict(cfg.model_dump(mode="json"), [f"cameras.ref_elevation={true_elevation}"])
    out = render_mesh(
        torch.as_tensor(np.asarray(gt.vertices), dtype=torch.float32),
        torch.as_tensor(np.asarray(gt.faces), dtype=torch.int64),
        reference_camera(cfg.cameras),
        size,
        size,
        vertex_colors=torch.as_tensor(mesh_vertex_colours(gt)),
        bg_color=(0.0, 0.0, 0.0),
    )
    alpha = out["alpha"].clamp(0, 1)
    straight = straight_colour(out["rgb"], alpha).clamp(0, 1)
    rgba = (torch.cat([straight, alpha], -1).numpy() * 255.0 + 0.5).astype(np.uint8)
    mask = (alpha[..., 0].numpy() > 0.5) & (out["depth"][..., 0].numpy() > 0)  # the object mask of rgba.png
    depth = normalise_in_mask(out["depth"][..., 0].numpy(), mask, str(case_dir / DEPTH))
    # A fresh elevation record: the true elevation stays a fact of the harness, never the case's.
    extra = {GROUND_TRUTH: lambda path: gt.export(path, file_type="ply"), ELEVATION: elevation_record_writer(None)}
    return write_case(case_dir, rgba, depth, caption, extra=extra)


def oracle_config(cfg: Config, gt_path: Path, true_elevation: Optional[float] = None) -> Config:
    """The run's config: the oracle in both roles, built from ``gt_path``; no alignment (known
    frame). ``true_elevation``: the render's, told to the oracle only (``oracle.reference_elevation``)."""
    extra = [] if true_elevation is None else [f"oracle.reference_elevation={true_elevation}"]
    return config_from_dict(
        cfg.model_dump(mode="json"),
        ["models.prior_3d=oracle", "models.prior_2d=oracle", f"oracle.mesh={gt_path}", "eval.align=false", *extra],
    )


# ---------------------------------------------------------------- the whole measurement
def known_answer(
    mesh_path: str | Path,
    out_dir: str | Path,
    cfg: Config,
    up_axis: str = "y",
    run_name: Optional[str] = None,
    tags: Optional[dict] = None,
    progress: bool = True,
    true_elevation: Optional[float] = None,
    parent_run_id: Optional[str] = None,
) -> dict:
    """``true_elevation``: render the reference view from this elevation (degrees) while the
    pipeline's cameras follow ``cameras.ref_elevation`` (assumed, or estimated when ``auto``).
    ``mesh_path`` may name a procedural hard shape (``hard:NAME``, consistent123.experiments.hard_shapes)."""
    from consistent123.pipeline.reconstruct import reconstruct
    from eval.evaluate import evaluate_run, prediction_mesh_path

    out_dir = Path(out_dir)
    if true_elevation is None and cfg.cameras.ref_elevation == "auto":
        true_elevation = 0.0  # an estimate needs a render taken from somewhere: level
    source, name, built = load_source(mesh_path)  # one clear line when the file is missing or not a mesh
    if built is not None:
        up_axis = "y"  # procedural shapes are built +y up
    case_dir, run_dir = out_dir / "case", out_dir / "run"
    gt = prepare_ground_truth(source, up_axis, cfg.oracle)
    render_case(gt, case_dir, cfg, caption_of(name), true_elevation)
    cfg = oracle_config(cfg, case_dir / GROUND_TRUTH, true_elevation)
    all_tags = {"benchmark": "known_answer", "case": name, **(tags or {})}
    start = time.perf_counter()
    # Under the sweep's parent run when given, so a sweep is one tree; ``priors=oracle`` is set
    # from what answered (consistent123.priors.provenance), not from a name.
    reconstruct(
        case_dir,
        run_dir,
        cfg,
        run_name=run_name or f"known_answer/{name}",
        parent_run_id=parent_run_id,
        tags=all_tags,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    record = evaluate_run(run_dir, case_dir, cfg, gt_mesh=case_dir / GROUND_TRUTH, tags=all_tags, progress=progress)
    metrics = {k: record["metrics"][k] for k in HEADLINE}
    metrics["time_s"] = seconds  # this call's reconstruction time (a resumed or finished run: less)
    metrics.update(
        write_geometry_views(case_dir / GROUND_TRUTH, prediction_mesh_path(RunFolder(run_dir)), out_dir, cfg, built)
    )
    summary = {
        "metrics": metrics,
        "object": name,
        "source": "procedural" if built is not None else "file",
        "tags": record["tags"],
        "up_axis": up_axis,
        "true_elevation": float(cfg.cameras.ref_elevation if true_elevation is None else true_elevation),
        "input_elevation": record.get("input_elevation"),
        "alignment": record["details"].get("alignment", {"enabled": False}),
        "iterations": cfg.total_iters,
        "run": str(run_dir),
        "case": str(case_dir),
        "mesh": str(mesh_path),
    }
    atomic_write_json(out_dir / "metrics.json", summary)
    if record.get("run"):
        try:
            from consistent123.tracking.run import log_to_run

            log_to_run(run_dir / "run.json", {"time_s": seconds}, artifacts=[out_dir / "metrics.json"])
        except Exception as exc:  # metrics.json is the record of truth; tracking is a mirror
            log.warning("known-answer summary not logged to MLflow (%s: %s)", exc.__class__.__name__, exc)
    return summary
