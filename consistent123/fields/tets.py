"""The tetrahedral grid DMTet deforms, generated here (no downloaded tet file).

A regular lattice of ``cells`` cubes per axis, each cube split into 6 tetrahedra around its
main diagonal (Kuhn / Freudenthal subdivision). Every cube uses the same diagonal, so the
faces of neighbouring cubes are split the same way and the grid is conforming (no T-junctions,
every interior triangle shared by exactly two tetrahedra). All tetrahedra are oriented with
positive volume.

Size convention: the tet files used by DMTet code bases are named by a "grid size" R and hold
about (R/2 + 1)^3 vertices (e.g. the 128 file: ~277k vertices); ``cells_for_grid_size`` maps the
config's ``tet_grid_size`` to the same density, so ``tet_grid_size`` keeps its usual meaning.
"""

from __future__ import annotations

import itertools

import torch

# Cube corner k has offset (k & 1, (k >> 1) & 1, (k >> 2) & 1).
_CORNER_OFFSETS = torch.tensor([[(k >> a) & 1 for a in range(3)] for k in range(8)], dtype=torch.long)


def _kuhn_template() -> torch.Tensor:
    """The 6 tetrahedra of the unit cube as corner indices, each with positive volume."""
    tets = []
    for perm in itertools.permutations(range(3)):
        corner, path = 0, [0]
        for axis in perm:  # walk from (0,0,0) to (1,1,1) one axis at a time
            corner |= 1 << axis
            path.append(corner)
        p = _CORNER_OFFSETS[path].float()
        vol = torch.linalg.det(torch.stack([p[1] - p[0], p[2] - p[0], p[3] - p[0]]))
        if vol < 0:  # odd permutations come out mirrored: swap two corners
            path[2], path[3] = path[3], path[2]
        tets.append(path)
    return torch.tensor(tets, dtype=torch.long)


def cells_for_grid_size(tet_grid_size: int) -> int:
    return max(1, int(tet_grid_size) // 2)


def make_tet_grid(cells: int, bound: float = 1.0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices [(cells+1)^3, 3] spanning [-bound, bound]^3 and tetrahedra [6 cells^3, 4] (long)."""
    if cells < 1:
        raise ValueError(f"tet grid needs at least 1 cell per axis, got {cells}")
    n = cells + 1
    axis = torch.linspace(-bound, bound, n, device=device)
    gx, gy, gz = torch.meshgrid(axis, axis, axis, indexing="ij")
    verts = torch.stack([gx, gy, gz], -1).reshape(-1, 3)

    def vid(i, j, k):  # lattice index -> vertex id, matching the meshgrid's "ij" flattening
        return (i * n + j) * n + k

    c = torch.arange(cells, device=device)
    ci, cj, ck = torch.meshgrid(c, c, c, indexing="ij")
    ci, cj, ck = ci.reshape(-1, 1), cj.reshape(-1, 1), ck.reshape(-1, 1)
    off = _CORNER_OFFSETS.to(device)
    corners = vid(ci + off[:, 0], cj + off[:, 1], ck + off[:, 2])  # [cells^3, 8]
    tets = corners[:, _kuhn_template().to(device)].reshape(-1, 4)
    return verts, tets


def tet_volumes(verts: torch.Tensor, tets: torch.Tensor) -> torch.Tensor:
    p = verts[tets]
    return torch.linalg.det(torch.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]], 1)) / 6.0
