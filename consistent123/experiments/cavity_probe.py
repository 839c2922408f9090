"""The NeRF phase alone on a hard shape: how much of its cavity does it leave filled?

The mesh phase only inherits what the NeRF leaves (DMTet's SDF starts from its density), so the
NeRF's density on the evaluation's voxel lattice answers the cavity question in a fraction of a
known-answer run: the oracle prior in both roles, ``train.nerf_iters`` of the config, then

    iou          of {sigma > the hand-over's threshold (dmtet.init_density_rule)} with the truth's solid voxels
    filled       share of the cavity's voxels (consistent123/experiments/hard_shapes.py) above that threshold
    seen         share of the cavity some camera of the polar range sees empty (consistent123.render.visibility.seen_empty)
    seen_filled  share of that seen-empty part still above it
    wall         share of the truth's solid voxels above the threshold (a carved cup keeps its walls)
    occ          share of the occupancy grid's cells still marked occupied

and ``out/cross_section.png`` (eval/cross_section.py). ``benchmarks/cavity_probe.py`` prints one
row per setting.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from consistent123.config import Config
from consistent123.experiments import hard_shapes
from consistent123.render.visibility import seen_empty


def probe(obj: str, cfg: Config, out: Path) -> dict:
    """Train the NeRF phase of ``cfg`` on hard shape ``obj`` through the oracle; the figures above."""
    from consistent123.case import load_case
    from consistent123.config import config_from_dict
    from consistent123.device import resolve_device
    from consistent123.experiments.known_answer import GROUND_TRUTH, oracle_config, prepare_ground_truth, render_case
    from consistent123.priors.registry import load_priors
    from consistent123.training.trainer import Trainer
    from eval.cross_section import write_cross_section
    from eval.mesh_metrics import solid_voxels, volumetric_iou, voxel_centres

    cfg = config_from_dict(cfg.model_dump(mode="json"), ["train.mesh_iters=0"])
    built = hard_shapes.build(f"hard:{obj}")
    gt = prepare_ground_truth(built.mesh, "y", cfg.oracle)
    case_dir = out / "case"
    render_case(gt, case_dir, cfg, f"a {obj}")
    cfg = oracle_config(cfg, case_dir / GROUND_TRUTH)
    device = resolve_device(cfg.train.device)
    trainer = Trainer(cfg, load_case(case_dir), load_priors(cfg, device), device)
    start = time.perf_counter()
    while trainer.iteration < cfg.train.nerf_iters:
        trainer.step()
    seconds = time.perf_counter() - start

    res = cfg.eval.iou_resolution
    g = voxel_centres(res)
    centres = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    scene = torch.as_tensor(centres * cfg.oracle.object_size, dtype=torch.float32)  # truth's box -> the scene
    trainer.nerf.set_max_level(1.0)
    with torch.no_grad():
        sigma = torch.cat([trainer.nerf.density(c) for c in scene.split(1 << 16)]).numpy()
    threshold = trainer.nerf.surface_threshold(cfg.dmtet.init_density_threshold, cfg.dmtet.init_density_rule)
    solid = (sigma > threshold).reshape((res,) * 3)
    truth = solid_voxels(gt.copy().apply_scale(1.0 / cfg.oracle.object_size), res)
    cavity = built.cavity_mask(centres, 1.0 / res)
    seen = np.zeros(len(centres), bool)
    cams = cfg.cameras
    seen[cavity] = seen_empty(
        gt, centres[cavity] * cfg.oracle.object_size, cams.polar_range, cams.ref_radius, cams.ref_fovy
    )
    cavity, seen = cavity.reshape((res,) * 3), seen.reshape((res,) * 3)
    write_cross_section(truth, solid, out / "cross_section.png", cavity)
    return {
        "iou": volumetric_iou(truth, solid),
        "filled": float((solid & cavity).sum() / max(cavity.sum(), 1)),
        "seen": float(seen.sum() / max(cavity.sum(), 1)),
        "seen_filled": float((solid & seen).sum() / max(seen.sum(), 1)),
        "wall": float((solid & truth).sum() / max(truth.sum(), 1)),
        "occ": trainer.nerf.occupancy.occupied_fraction(),
        "time_s": seconds,
    }
