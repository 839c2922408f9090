"""The generated tetrahedral grid: valid, conforming and filling the cube."""

import torch

from consistent123.fields.tets import cells_for_grid_size, make_tet_grid, tet_volumes


def test_grid_is_positive_complete_and_without_duplicates():
    cells, bound = 5, 0.8
    verts, tets = make_tet_grid(cells, bound)
    vol = tet_volumes(verts, tets)
    assert (vol > 0).all()
    # The tets tile the cube exactly: no gap, no overlap.
    torch.testing.assert_close(vol.sum(), torch.tensor((2 * bound) ** 3), rtol=1e-5, atol=0)
    assert torch.unique(verts, dim=0).shape[0] == verts.shape[0] == (cells + 1) ** 3
    torch.testing.assert_close(verts.amin(0), torch.full((3,), -bound))
    torch.testing.assert_close(verts.amax(0), torch.full((3,), bound))
    assert torch.unique(torch.sort(tets, 1).values, dim=0).shape[0] == tets.shape[0]
    assert torch.unique(tets).numel() == verts.shape[0]  # every vertex used


def test_grid_is_conforming():
    """Each interior triangle is shared by exactly two tets, each boundary one by one."""
    cells = 3
    verts, tets = make_tet_grid(cells)
    tris = torch.cat([tets[:, [0, 1, 2]], tets[:, [0, 1, 3]], tets[:, [0, 2, 3]], tets[:, [1, 2, 3]]])
    _, counts = torch.unique(torch.sort(tris, 1).values, dim=0, return_counts=True)
    assert set(counts.tolist()) <= {1, 2}
    # Boundary triangles: 6 faces x cells^2 squares x 2 triangles.
    assert int((counts == 1).sum()) == 6 * cells**2 * 2


def test_random_points_fall_in_exactly_one_tet():
    verts, tets = make_tet_grid(2)
    p = (torch.rand(200, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.999
    v = verts[tets]  # [T,4,3]
    m = torch.stack([v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], v[:, 3] - v[:, 0]], -1)  # [T,3,3]
    lam = torch.linalg.solve(m.unsqueeze(0), (p[:, None] - v[None, :, 0]).unsqueeze(-1)).squeeze(-1)
    inside = (lam >= -1e-6).all(-1) & (lam.sum(-1) <= 1 + 1e-6)
    assert (inside.sum(1) >= 1).all()


def test_grid_size_convention():
    assert cells_for_grid_size(128) == 64 and cells_for_grid_size(256) == 128
