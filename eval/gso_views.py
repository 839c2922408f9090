"""Multi-view protocol of the GSO benchmark (paper A.2, Eq. 11-12): the ground-truth mesh and
the reconstruction, each normalised into the unit cube, rendered by our rasteriser under the
same cameras on white; PSNR, SSIM and LPIPS averaged over the views. The view set is the
protocol's (eval/protocols.py): the paper's 18 views or SyncDreamer's 16 (elevation 30 degrees,
every 22.5 degrees of azimuth, its meta_info/camera-16.pkl layout).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import trimesh
from tqdm import tqdm

from consistent123.config import EvalConfig
from consistent123.meshes import normalise_pair
from consistent123.render.cameras import gso_cameras
from eval.image_metrics import psnr, ssim


def _colour_inputs(mesh: trimesh.Trimesh) -> dict:
    """render_mesh keyword arguments for the mesh's own colours (texture, vertex colours or none)."""
    visual = mesh.visual
    if getattr(visual, "kind", None) == "texture" and visual.uv is not None:
        material = visual.material
        image = getattr(material, "image", None)
        if image is None:
            image = getattr(material, "baseColorTexture", None)
        if image is not None:
            tex = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
            return {"uv": torch.as_tensor(np.asarray(visual.uv), dtype=torch.float32), "texture": torch.as_tensor(tex)}
        factor = getattr(material, "baseColorFactor", None)
        if factor is None:
            factor = getattr(material, "diffuse", None)
        if factor is not None:  # a single flat colour
            rgb = np.asarray(factor, dtype=np.float32)[:3] / 255.0
            return {"vertex_colors": torch.as_tensor(np.tile(rgb, (len(mesh.vertices), 1)))}
    if getattr(visual, "kind", None) in ("vertex", "face"):
        return {"vertex_colors": torch.as_tensor(np.asarray(visual.vertex_colors)[:, :3], dtype=torch.float32) / 255.0}
    # No colour of its own: show its shape as a normal map (world space, so both meshes of a
    # pair are shaded alike), not a white silhouette on a white background.
    return {"color_fn": _normal_colour}


def _normal_colour(points: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    return normals * 0.5 + 0.5


def render_views(
    mesh: trimesh.Trimesh, cameras, size: int, backend: str = "auto", device: str | torch.device = "cpu"
) -> list[np.ndarray]:
    """RGB [size, size, 3] renders on white, one per camera (on ``device``: nvdiffrast on CUDA)."""
    from consistent123.render.rasterize import render_mesh

    verts = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32, device=device)
    faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64, device=device)
    colours = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in _colour_inputs(mesh).items()}
    out = []
    for cam in cameras:
        r = render_mesh(verts, faces, cam, size, size, bg_color=(1.0, 1.0, 1.0), backend=backend, **colours)
        out.append(r["rgb"].clamp(0, 1).cpu().numpy().astype(np.float32))
    return out


# SyncDreamer's 16 views: meta_info/camera-16.pkl of liuyuan-pal/SyncDreamer@cc373c8 (elevation 30
# degrees, azimuths every 22.5 degrees, distance 1.5, focal 280 px on 256 px: fovy 2 atan(128/280)).
SYNCDREAMER_ELEVATION = 30.0
SYNCDREAMER_VIEWS = 16
SYNCDREAMER_RADIUS = 1.5
SYNCDREAMER_FOVY = 2.0 * math.degrees(math.atan(128.0 / 280.0))


def protocol_views(eval_cfg: EvalConfig, views: str) -> tuple[list[float], list[float], float, float]:
    """(azimuths, elevations, radius, fovy) of a protocol's view set."""
    if views == "paper18":
        angles = list(eval_cfg.gso_azimuths), list(eval_cfg.gso_elevations)
        return (*angles, eval_cfg.gso_render_radius, eval_cfg.gso_render_fovy)
    if views == "syncdreamer16":
        step = 360.0 / SYNCDREAMER_VIEWS
        azimuths = [i * step for i in range(SYNCDREAMER_VIEWS)]
        return azimuths, [SYNCDREAMER_ELEVATION] * SYNCDREAMER_VIEWS, SYNCDREAMER_RADIUS, SYNCDREAMER_FOVY
    raise ValueError(f"unknown view set {views!r}")


def multiview_metrics(
    gt: trimesh.Trimesh,
    pred: trimesh.Trimesh,
    eval_cfg: EvalConfig,
    lpips_metric,
    backend: str = "auto",
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> dict:
    """{"mv_psnr", "mv_lpips", per-view lists, the views used} for two meshes."""
    from eval.protocols import get_protocol

    azimuths, elevations, radius, fovy = protocol_views(eval_cfg, get_protocol(eval_cfg.protocol).views)
    views_cfg = eval_cfg.model_copy(update={"gso_azimuths": azimuths, "gso_elevations": elevations})
    cams = gso_cameras(views_cfg, radius, fovy)
    size = eval_cfg.render_size
    gt_n, pred_n = normalise_pair(gt, pred, eval_cfg.normalise)
    gt_views = render_views(gt_n, cams, size, backend, device)
    pred_views = render_views(pred_n, cams, size, backend, device)
    psnrs, ssims, lpipss = [], [], []
    for g, p in tqdm(list(zip(gt_views, pred_views)), desc="GSO views", disable=not progress, leave=False):
        psnrs.append(psnr(p, g))
        ssims.append(ssim(p, g))
        lpipss.append(lpips_metric(p, g))
    return {
        "mv_psnr": float(np.mean(psnrs)),
        "mv_ssim": float(np.mean(ssims)),
        "mv_lpips": float(np.mean(lpipss)),
        "mv_psnr_per_view": psnrs,
        "mv_ssim_per_view": ssims,
        "mv_lpips_per_view": lpipss,
        "gso_views": {
            "azimuths": azimuths,
            "elevations": elevations,
            "radius": radius,
            "fovy": fovy,
            "size": size,
        },
    }
