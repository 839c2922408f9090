"""Geometry metrics of the GSO benchmark (paper A.2, Eq. 10): Chamfer distance and volumetric IoU,
and those of the community protocols (eval/protocols.py): the mean-of-means Chamfer, mesh2sdf's
IoU, F-score and normal consistency.

Both compare two meshes after normalising *each on its own* into the unit cube: its
bounding-box centre goes to the origin and its longest bounding-box side becomes 1. So the
metrics measure shape, never the (arbitrary) scale or placement of a reconstruction.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from consistent123.config import EvalConfig
from consistent123.meshes import is_closed, load_mesh, normalise_pair

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- Chamfer distance (Eq. 10)
def sample_points(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> np.ndarray:
    """``count`` points uniformly on the surface (area-weighted), reproducible by ``seed``."""
    points, _ = trimesh.sample.sample_surface(mesh, int(count), seed=seed)
    return np.asarray(points, dtype=np.float64)


def chamfer_distance(points_a: np.ndarray, points_b: np.ndarray) -> float:
    """Eq. 10: mean squared-L2 nearest-neighbour distance a->b plus the same b->a."""
    d_ab, _ = cKDTree(points_b).query(points_a, k=1)
    d_ba, _ = cKDTree(points_a).query(points_b, k=1)
    return float(np.mean(d_ab**2) + np.mean(d_ba**2))


def one_way_distances(points_a: np.ndarray, points_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unsquared nearest-neighbour distances a->b and b->a (scipy's k-d tree)."""
    d_ab, _ = cKDTree(points_b).query(points_a, k=1)
    d_ba, _ = cKDTree(points_a).query(points_b, k=1)
    return d_ab, d_ba


def chamfer_mean_of_means(points_a: np.ndarray, points_b: np.ndarray) -> float:
    """SyncDreamer's / EscherNet's Chamfer: the mean of the two one-way mean (unsquared) distances."""
    d_ab, d_ba = one_way_distances(points_a, points_b)
    return float((d_ab.mean() + d_ba.mean()) / 2.0)


def fscore(gt_points: np.ndarray, pred_points: np.ndarray, threshold: float) -> float:
    """Harmonic mean of precision (prediction points within ``threshold`` of the ground truth)
    and recall (ground-truth points within ``threshold`` of the prediction); 0 when both are 0."""
    d_gp, d_pg = one_way_distances(gt_points, pred_points)
    precision, recall = float((d_pg < threshold).mean()), float((d_gp < threshold).mean())
    return 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)


def sample_with_normals(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` surface points (area-weighted) and the unit normal of the face each lies on."""
    points, faces = trimesh.sample.sample_surface(mesh, int(count), seed=seed)
    return np.asarray(points, np.float64), np.asarray(mesh.face_normals[faces], np.float64)


def normal_consistency(gt: trimesh.Trimesh, pred: trimesh.Trimesh, count: int, seed: int = 0) -> float:
    """Mean |cos| between each sample's normal and its nearest neighbour's on the other surface,
    both ways averaged (the Occupancy Networks definition): 1 = same orientation everywhere."""
    pg, ng = sample_with_normals(gt, count, seed)
    pp, np_ = sample_with_normals(pred, count, seed)
    _, i_gp = cKDTree(pp).query(pg, k=1)
    _, i_pg = cKDTree(pg).query(pp, k=1)
    cos_g = np.abs((ng * np_[i_gp]).sum(1))
    cos_p = np.abs((np_ * ng[i_pg]).sum(1))
    return float((cos_g.mean() + cos_p.mean()) / 2.0)


# ---------------------------------------------------------------- volumetric IoU
def mesh2sdf_voxels(mesh: trimesh.Trimesh, resolution: int = 64) -> np.ndarray:
    """Bool grid where mesh2sdf's signed distance is negative, as SyncDreamer and EscherNet take
    it (``mesh2sdf.compute(vertices, faces, size, fix=False)``: the grid spans [-1, 1]^3, so a
    mesh normalised into the unit cube fills the middle half of it, as in their code)."""
    import mesh2sdf

    sdf = mesh2sdf.compute(np.asarray(mesh.vertices), np.asarray(mesh.faces), resolution, fix=False, return_mesh=False)
    return sdf < 0


def voxel_centres(resolution: int) -> np.ndarray:
    """Centres of a resolution³ grid tiling the unit cube [-0.5, 0.5]³ (the normalised frame)."""
    return (np.arange(resolution) + 0.5) / resolution - 0.5


# Column rays are nudged by this fixed, irrational-ratio offset (a tiny fraction of a voxel) so
# they never pass exactly through a mesh edge or vertex, where a parity count would double- or
# under-count a crossing (e.g. the diagonal edge of every triangulated cube face).
_RAY_NUDGE = np.array([1.0, np.sqrt(2.0)]) * 1e-7


def _parity_along(triangles: np.ndarray, resolution: int, axis: int) -> np.ndarray:
    """Inside/outside of each voxel centre by counting surface crossings along ``axis``.

    One ray per grid column (parallel to ``axis``); a centre is inside when an odd number of
    crossings lie below it. Vectorised over (triangle, column) pairs whose 2D boxes overlap.
    """
    u_ax, v_ax = [a for a in range(3) if a != axis]
    g = voxel_centres(resolution)
    n = resolution
    tri_u, tri_v, tri_w = triangles[:, :, u_ax], triangles[:, :, v_ax], triangles[:, :, axis]

    # Column index range covered by each triangle's projected bounding box.
    def idx_range(c):
        lo = np.ceil((c.min(1) + 0.5) * n - 0.5).astype(np.int64).clip(0, n)
        hi = np.floor((c.max(1) + 0.5) * n - 0.5).astype(np.int64).clip(-1, n - 1)
        return lo, hi

    u0, u1 = idx_range(tri_u - _RAY_NUDGE[0])
    v0, v1 = idx_range(tri_v - _RAY_NUDGE[1])
    nu, nv = (u1 - u0 + 1).clip(0), (v1 - v0 + 1).clip(0)
    counts = nu * nv
    keep = counts > 0
    tri_ids = np.repeat(np.nonzero(keep)[0], counts[keep])
    # Position of each pair inside its triangle's (nu x nv) block of columns.
    starts = np.repeat(np.cumsum(counts[keep]) - counts[keep], counts[keep])
    local = np.arange(tri_ids.size) - starts
    iu = u0[tri_ids] + local // nv[tri_ids]
    iv = v0[tri_ids] + local % nv[tri_ids]
    pu = g[iu] + _RAY_NUDGE[0]
    pv = g[iv] + _RAY_NUDGE[1]

    # 2D barycentric coordinates of the column point in the projected triangle.
    a_u, b_u, c_u = tri_u[tri_ids].T
    a_v, b_v, c_v = tri_v[tri_ids].T
    det = (b_v - c_v) * (a_u - c_u) + (c_u - b_u) * (a_v - c_v)
    ok = np.abs(det) > 1e-18  # faces parallel to the ray never count as crossings
    det = np.where(ok, det, 1.0)
    l1 = ((b_v - c_v) * (pu - c_u) + (c_u - b_u) * (pv - c_v)) / det
    l2 = ((c_v - a_v) * (pu - c_u) + (a_u - c_u) * (pv - c_v)) / det
    l3 = 1.0 - l1 - l2
    hit = ok & (l1 >= 0) & (l2 >= 0) & (l3 >= 0)
    a_w, b_w, c_w = tri_w[tri_ids].T
    w = (l1 * a_w + l2 * b_w + l3 * c_w)[hit]
    col = (iu * n + iv)[hit]

    # Crossings below each centre, per column: histogram of crossing heights into voxel slots.
    slot = np.searchsorted(g, w, side="left")  # crossing lies below centres slot..n-1
    below = np.zeros((n * n, n + 1), dtype=np.int64)
    np.add.at(below, (col, slot), 1)
    inside = (np.cumsum(below[:, :n], axis=1) % 2 == 1).reshape(n, n, n)  # [u, v, axis]
    # Back to [x, y, z] order.
    order = np.argsort([u_ax, v_ax, axis])
    return np.transpose(inside, order)


def solid_voxels(mesh: trimesh.Trimesh, resolution: int = 64) -> np.ndarray:
    """Bool [res, res, res] (x, y, z): voxel centres inside the (normalised) mesh's solid.

    Parity along each of the three axes, then a majority vote: one small hole in a scanned
    or marched mesh flips one axis' answer for a column, not the other two.
    """
    tris = np.asarray(mesh.triangles, dtype=np.float64)
    votes = sum(_parity_along(tris, resolution, axis).astype(np.int8) for axis in range(3))
    return votes >= 2


def volumetric_iou(vox_a: np.ndarray, vox_b: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two voxel grids on the same lattice (0 when both are empty)."""
    union = np.logical_or(vox_a, vox_b).sum()
    if union == 0:
        return 0.0
    return float(np.logical_and(vox_a, vox_b).sum() / union)


# ---------------------------------------------------------------- both metrics
def compare_meshes(
    gt: trimesh.Trimesh,
    pred: trimesh.Trimesh,
    points: int = 2000,
    resolution: int = 64,
    seed: int = 0,
    normalise: str = "each",
) -> dict:
    """Chamfer distance and volumetric IoU of two meshes, normalised as ``normalise_pair`` says."""
    gt_n, pred_n = normalise_pair(gt, pred, normalise)
    cd = chamfer_distance(sample_points(gt_n, points, seed), sample_points(pred_n, points, seed))
    iou = volumetric_iou(solid_voxels(gt_n, resolution), solid_voxels(pred_n, resolution))
    return {
        "chamfer_distance": cd,
        "volumetric_iou": iou,
        "chamfer_points": int(points),
        "iou_resolution": int(resolution),
        "seed": int(seed),
        "normalise": normalise,
    }


def protocol_points(mesh: trimesh.Trimesh, protocol, count: int, seed: int) -> np.ndarray:
    """The points a protocol measures distances between: surface samples or the vertices."""
    if protocol.points == "vertices":
        return np.asarray(mesh.vertices, dtype=np.float64)
    return sample_points(mesh, protocol.point_count or count, seed)


def compare_with_protocol(gt: trimesh.Trimesh, pred: trimesh.Trimesh, eval_cfg: EvalConfig, protocol=None) -> dict:
    """Every geometry metric of ``protocol`` (default: ``eval_cfg.protocol``; eval/protocols.py)."""
    from eval.protocols import fscore_name, get_protocol

    protocol = protocol or get_protocol(eval_cfg.protocol)
    if protocol.name == "paper":
        out = compare_meshes(
            gt, pred, eval_cfg.chamfer_points, eval_cfg.iou_resolution, eval_cfg.seed, eval_cfg.normalise
        )
        gt_n, pred_n = normalise_pair(gt, pred, eval_cfg.normalise)
    else:
        gt_n, pred_n = normalise_pair(gt, pred, eval_cfg.normalise)
        seed = eval_cfg.seed
        pg = protocol_points(gt_n, protocol, eval_cfg.chamfer_points, seed)
        pp = protocol_points(pred_n, protocol, eval_cfg.chamfer_points, seed)
        out = {"chamfer_distance": chamfer_mean_of_means(pg, pp)}
        if protocol.iou == "mesh2sdf":
            res = protocol.iou_resolution or eval_cfg.iou_resolution
            out["volumetric_iou"] = volumetric_iou(mesh2sdf_voxels(gt_n, res), mesh2sdf_voxels(pred_n, res))
            out["iou_resolution"] = int(res)
        for t in protocol.fscore_thresholds:
            out[fscore_name(t)] = fscore(pg, pp, t)
        out.update(chamfer_points=None if protocol.points == "vertices" else len(pg), seed=int(seed))
        out["normalise"] = eval_cfg.normalise
    out["normal_consistency"] = normal_consistency(
        gt_n, pred_n, protocol.point_count or eval_cfg.chamfer_points, eval_cfg.seed
    )
    out["protocol"] = protocol.name
    return out


def compare_as_configured(
    gt: trimesh.Trimesh,
    pred: trimesh.Trimesh,
    eval_cfg: EvalConfig,
    names: tuple[str, str] = ("the ground truth", "the reconstruction"),
) -> dict:
    """The geometry metrics of the configured protocol (``eval.protocol``), with its counts and
    frame; a mesh that is not watertight has no inside, so its IoU is not defined: said in a
    warning and in the result (``watertight``)."""
    result = compare_with_protocol(gt, pred, eval_cfg)
    result["watertight"] = {}
    for role, mesh, name in (("gt", gt, names[0]), ("pred", pred, names[1])):
        closed = is_closed(mesh)
        result["watertight"][role] = closed
        if not closed and "volumetric_iou" in result:
            log.warning(
                "%s is not watertight (%d faces): its inside is undefined, so volumetric IoU (%.4f) is not meaningful",
                name,
                len(mesh.faces),
                result["volumetric_iou"],
            )
    return result


def compare_mesh_files(gt_path: str | Path, pred_path: str | Path, eval_cfg: EvalConfig) -> dict:
    """``compare_as_configured`` on two files."""
    return compare_as_configured(load_mesh(gt_path), load_mesh(pred_path), eval_cfg, (str(gt_path), str(pred_path)))
