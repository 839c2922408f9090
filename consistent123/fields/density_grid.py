"""A density field read on a regular lattice over ``[-bound, bound]^3``, and its level surface.

One place for both readers: the NeRF-only export (``pipeline/export.py``, marching cubes of the
final NeRF) and the hand-over's unseen fill (``fields/unseen_fill.py``, the surface its cameras
see).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

DensityFn = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def density_grid(
    density_fn: DensityFn, bound: float, resolution: int, device="cpu", chunk: int = 1 << 18, progress: bool = False
) -> np.ndarray:
    """Float32 [R, R, R]: ``density_fn`` at the lattice ``linspace(-bound, bound, R)`` per axis,
    indexed (x, y, z) as ``meshgrid(..., indexing="ij")``; one x-slab at a time."""
    axis = torch.linspace(-bound, bound, resolution, device=device)
    sigma = np.empty((resolution,) * 3, dtype=np.float32)
    gy, gz = torch.meshgrid(axis, axis, indexing="ij")
    for i in tqdm(range(resolution), desc="density grid", leave=False, disable=not progress):
        pts = torch.stack([torch.full_like(gy, float(axis[i])), gy, gz], -1).reshape(-1, 3)
        vals = torch.cat([density_fn(p).reshape(-1) for p in pts.split(chunk)])
        sigma[i] = vals.reshape(resolution, resolution).float().cpu().numpy()
    return sigma


def lattice_surface(sigma: np.ndarray, bound: float, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of ``density_grid``'s ``sigma`` at ``threshold``: (verts [V, 3] in world
    coordinates, faces [F, 3] as mcubes winds them, i.e. facing inwards for "inside = above")."""
    import mcubes

    verts, faces = mcubes.marching_cubes(sigma, threshold)
    return verts / (sigma.shape[0] - 1) * 2 * bound - bound, faces
