"""Marching tetrahedra: SDF on a tet grid -> triangle mesh, differentiable in vertex positions.

The surface is sdf = 0 with sdf > 0 inside (as DMTet). Each crossing edge (a, b) gives the
vertex (a * s_b - b * s_a) / (s_b - s_a), so gradients reach both the SDF values and the
(deformed) grid positions. Which edges cross and how they connect is discrete (no gradient).
Tables follow the 16-case layout of DMTet/kaolin (edge order 01 02 03 12 13 23). One
implementation, vectorised PyTorch on the tensors' device ("auto" and "torch" both name it);
kaolin's version is not offered, see consistent123.backends.
"""

from __future__ import annotations

import torch

_TRIANGLE_TABLE = torch.tensor(
    [
        [-1, -1, -1, -1, -1, -1],
        [1, 0, 2, -1, -1, -1],
        [4, 0, 3, -1, -1, -1],
        [1, 4, 2, 1, 3, 4],
        [3, 1, 5, -1, -1, -1],
        [2, 3, 0, 2, 5, 3],
        [1, 4, 0, 1, 5, 4],
        [4, 2, 5, -1, -1, -1],
        [4, 5, 2, -1, -1, -1],
        [4, 1, 0, 4, 5, 1],
        [3, 2, 0, 3, 5, 2],
        [1, 3, 5, -1, -1, -1],
        [4, 1, 2, 4, 3, 1],
        [3, 0, 4, -1, -1, -1],
        [2, 0, 1, -1, -1, -1],
        [-1, -1, -1, -1, -1, -1],
    ],
    dtype=torch.long,
)
_NUM_TRIANGLES = torch.tensor([0, 1, 1, 2, 1, 2, 2, 1, 1, 2, 2, 1, 2, 1, 1, 0], dtype=torch.long)
_TET_EDGES = torch.tensor([0, 1, 0, 2, 0, 3, 1, 2, 1, 3, 2, 3], dtype=torch.long)
_CASE_BITS = 2 ** torch.arange(4)


def marching_tetrahedra(
    verts: torch.Tensor, tets: torch.Tensor, sdf: torch.Tensor, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """verts [V,3], tets [T,4] (long), sdf [V] -> (mesh verts [M,3], faces [F,3] long)."""
    from consistent123 import backends

    backends.resolve("marching_tets", backend, verts.device)  # validates the name; torch is the one implementation
    return _marching_tets_torch(verts, tets.long(), sdf)


def _marching_tets_torch(verts, tets, sdf):
    dev = verts.device
    with torch.no_grad():
        occ = sdf > 0
        occ_t = occ[tets]  # [T,4]
        n_in = occ_t.sum(-1)
        valid = (n_in > 0) & (n_in < 4)
        if not bool(valid.any()):
            return verts.new_zeros(0, 3), torch.zeros(0, 3, dtype=torch.long, device=dev)
        occ_t = occ_t[valid]
        edges = tets[valid][:, _TET_EDGES.to(dev)].reshape(-1, 2)
        edges = torch.sort(edges, dim=1).values
        # 1-D keys: torch.unique(dim=0) is far slower than unique on a flat int64 tensor.
        n = verts.shape[0]
        keys, edge_of = torch.unique(edges[:, 0] * n + edges[:, 1], return_inverse=True)
        unique_edges = torch.stack([torch.div(keys, n, rounding_mode="floor"), keys % n], -1)
        crossing = occ[unique_edges].sum(-1) == 1
        new_id = torch.full((unique_edges.shape[0],), -1, dtype=torch.long, device=dev)
        new_id[crossing] = torch.arange(int(crossing.sum()), device=dev)
        edge_of = new_id[edge_of].reshape(-1, 6)
        cross_edges = unique_edges[crossing]
        case = (occ_t.long() * _CASE_BITS.to(dev)).sum(-1)
        n_tri = _NUM_TRIANGLES.to(dev)[case]
        table = _TRIANGLE_TABLE.to(dev)[case]

    # The differentiable part: where each crossing edge meets sdf = 0.
    p = verts[cross_edges]  # [E,2,3]
    s = sdf[cross_edges]  # [E,2]
    w = torch.stack([-s[:, 1], s[:, 0]], -1) / (s[:, 0] - s[:, 1]).unsqueeze(-1)
    mesh_verts = (p * w.unsqueeze(-1)).sum(1)

    with torch.no_grad():
        one = n_tri == 1
        two = n_tri == 2
        faces = torch.cat(
            [
                torch.gather(edge_of[one], 1, table[one][:, :3]).reshape(-1, 3),
                torch.gather(edge_of[two], 1, table[two][:, :6]).reshape(-1, 3),
            ]
        )
    # With positively oriented tets the table winds triangles inwards; flip to face outwards.
    return mesh_verts, faces.flip(-1)
