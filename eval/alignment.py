"""Rigid alignment of a reconstruction to its ground truth before the GSO metrics.

A reconstruction lives in the frame of its input photo's camera, a scan in its own; without
alignment Chamfer, IoU and the 18 views measure the unknown pose as much as the shape. Both
surfaces are sampled and brought to a rotation-invariant normal form (centroid at the origin,
RMS radius 1: the scale comes from the normalisation, never from the fit); a grid search over
azimuth (about +y) x elevation (about +x) picks the best start by Chamfer distance, and ICP
(trimesh.registration.icp, rigid: no scale, no reflection) refines it. The transform found is
applied to the reconstruction, carried into the ground truth's frame and scale, so the
metrics' own per-mesh normalisation then sees the two shapes in one pose.
"""

from __future__ import annotations

import numpy as np
import trimesh

from consistent123.config import EvalConfig
from eval.mesh_metrics import chamfer_distance, sample_points


def rotation(axis: str, degrees: float) -> np.ndarray:
    """4x4 right-handed rotation about the world x or y axis."""
    vec = {"x": [1.0, 0.0, 0.0], "y": [0.0, 1.0, 0.0]}[axis]
    return trimesh.transformations.rotation_matrix(np.radians(degrees), vec)


def candidate_rotations(eval_cfg: EvalConfig) -> list[tuple[float, float, np.ndarray]]:
    """(azimuth, elevation, 4x4) for every start of the search grid."""
    azimuths = np.arange(0.0, 360.0, eval_cfg.align_azimuth_step)
    return [
        (float(az), float(el), rotation("x", el) @ rotation("y", az))
        for el in eval_cfg.align_elevations
        for az in azimuths
    ]


def _normal_form(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Points centred on their centroid and scaled to RMS radius 1; the centre and scale used."""
    centre = points.mean(0)
    scale = float(np.sqrt(((points - centre) ** 2).sum(1).mean()))
    return (points - centre) / scale, centre, scale


def _similarity(centre: np.ndarray, scale: float) -> np.ndarray:
    """4x4 of x -> (x - centre) / scale."""
    m = np.eye(4)
    m[:3, :3] /= scale
    m[:3, 3] = -centre / scale
    return m


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def align_to(gt: trimesh.Trimesh, pred: trimesh.Trimesh, eval_cfg: EvalConfig) -> tuple[trimesh.Trimesh, dict]:
    """``pred`` moved onto ``gt`` (a copy, colours kept) and the record of what was done."""
    n, seed = eval_cfg.align_points, eval_cfg.seed
    g, g_centre, g_scale = _normal_form(sample_points(gt, n, seed))
    p, p_centre, p_scale = _normal_form(sample_points(pred, n, seed + 1))
    scores = [(chamfer_distance(_apply(m, p), g), az, el, m) for az, el, m in candidate_rotations(eval_cfg)]
    start_cd, az, el, start = min(scores, key=lambda s: s[0])
    fit, _, _ = trimesh.registration.icp(
        p,
        g,
        initial=start,
        threshold=1e-7,
        max_iterations=eval_cfg.align_icp_iterations,
        reflection=False,
        translation=True,
        scale=False,
    )
    final_cd = chamfer_distance(_apply(fit, p), g)
    if final_cd > start_cd:  # ICP can wander off a good start on very unlike shapes
        fit, final_cd = start, start_cd
    # pred frame -> normal form -> fitted pose -> the ground truth's frame and scale
    total = np.linalg.inv(_similarity(g_centre, g_scale)) @ fit @ _similarity(p_centre, p_scale)
    aligned = pred.copy()
    aligned.apply_transform(total)
    record = {
        "enabled": True,
        "search_azimuth": az,
        "search_elevation": el,
        "rotation": fit[:3, :3].tolist(),
        "transform": total.tolist(),
        "chamfer_normal_form_before": chamfer_distance(p, g),
        "chamfer_normal_form_search": start_cd,
        "chamfer_normal_form_after": final_cd,
        "grid": {"azimuth_step": eval_cfg.align_azimuth_step, "elevations": list(eval_cfg.align_elevations)},
        "points": int(n),
        "icp_iterations": int(eval_cfg.align_icp_iterations),
    }
    return aligned, record
