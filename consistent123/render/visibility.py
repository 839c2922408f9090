"""What a ring of cameras sees empty: space carving with depth maps.

A point is *seen empty* by a camera when it lies in front of the first surface the camera sees
through the point's pixel. Counting, per point, the cameras that see it empty tells carved space
(a cup's inside, seen from above) from space no camera can reach (the inside of a solid, or of a
closed box): the first is known to be empty, the second is known nothing about.

Used by the hand-over's unseen fill (``consistent123/fields/unseen_fill.py``) and by the
known-answer benchmark's cavity figures (``consistent123/experiments/known_answer.py``).
"""

from __future__ import annotations

import numpy as np
import torch

from consistent123.render.cameras import Camera, project
from consistent123.render.rasterize import render_mesh


def orbit_cameras(
    polar_range: tuple[float, float],
    radius: float,
    fovy: float,
    views: tuple[int, int],
    azimuth_range: tuple[float, float] = (-180.0, 180.0),
) -> list[Camera]:
    """``views`` = (polars evenly over ``polar_range``, azimuths evenly over ``azimuth_range``),
    all at ``radius`` and ``fovy``, looking at the origin (a full circle leaves out its repeated end)."""
    lo, hi = azimuth_range
    full = hi - lo >= 360.0
    azimuths = np.linspace(lo, hi, views[1], endpoint=not full) if views[1] > 1 else np.array([0.5 * (lo + hi)])
    return [
        Camera(float(polar), float(azimuth), radius, fovy)
        for polar in np.linspace(polar_range[0], polar_range[1], views[0])
        for azimuth in azimuths
    ]


@torch.no_grad()
def seen_empty_counts(
    verts: torch.Tensor, faces: torch.Tensor, points: torch.Tensor, cameras: list[Camera], size: int = 128
) -> torch.Tensor:
    """Int [N]: for each of ``points`` (world frame), how many of ``cameras`` see it empty, with
    the surface (``verts`` [V, 3], ``faces`` [F, 3]) rendered at ``size``^2 as each camera's depth map.

    A pixel's depth is its centre's, so a point counts as seen empty only well in front of it
    (two pixels' worth of depth): the surface itself and the wall just behind it never do.
    """
    verts, faces = verts.float(), faces.long()
    points = points.to(verts.device, torch.float32)
    counts = torch.zeros(len(points), dtype=torch.int32, device=verts.device)
    far = torch.full((size, size), float("inf"), device=verts.device)
    for cam in cameras:
        out = render_mesh(verts, faces, cam, size, size)
        depth = torch.where(out["mask"][..., 0], out["depth"][..., 0], far)
        px, z = project(points, cam, size)
        col, row = px[:, 0].floor().long(), px[:, 1].floor().long()
        inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        surface = torch.full_like(z, float("inf"))
        surface[inside] = depth[row[inside], col[inside]]
        counts += (inside & (z < surface - 2.0 / size)).int()
    return counts


def seen_empty(
    mesh,
    points: np.ndarray,
    polar_range: tuple[float, float],
    radius: float,
    fovy: float,
    views: tuple[int, int] = (7, 24),
    size: int = 128,
) -> np.ndarray:
    """Bool [N]: ``points`` (the mesh's frame, the scene's) that some camera of the orbit
    (``orbit_cameras``) sees empty. A cavity point that no camera sees empty can only be carved
    by a prior about the unseen."""
    verts = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)
    faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64)
    pts = torch.as_tensor(np.asarray(points), dtype=torch.float32)
    cameras = orbit_cameras(polar_range, radius, fovy, views)
    return (seen_empty_counts(verts, faces, pts, cameras, size) > 0).cpu().numpy()
