"""Marching tetrahedra on an analytic sphere SDF."""

import math

import torch
import trimesh

from consistent123.fields.marching_tets import marching_tetrahedra
from consistent123.fields.tets import make_tet_grid


def _sphere_mesh(radius=0.6, cells=24, centre=(0.05, -0.03, 0.02)):
    verts, tets = make_tet_grid(cells)
    sdf = radius - (verts - torch.tensor(centre)).norm(dim=-1)  # positive inside
    return verts, tets, sdf


def test_sphere_is_watertight_with_the_right_area_and_outward_normals():
    radius, centre = 0.6, torch.tensor([0.05, -0.03, 0.02])
    verts, tets, sdf = _sphere_mesh(radius, centre=tuple(centre.tolist()))
    mv, mf = marching_tetrahedra(verts, tets, sdf, backend="torch")
    mesh = trimesh.Trimesh(mv.numpy(), mf.numpy(), process=False)
    assert mesh.is_watertight
    assert abs(mesh.area / (4 * math.pi * radius**2) - 1) < 0.03
    assert mesh.volume > 0  # outward winding gives a positive signed volume
    normals = torch.tensor(mesh.face_normals, dtype=torch.float32)
    outward = torch.tensor(mesh.triangles_center, dtype=torch.float32) - centre
    assert ((normals * outward).sum(-1) > 0).float().mean() > 0.99
    # Vertices lie on the sphere (the SDF is linear along edges only to first order).
    assert (mv - centre).norm(dim=-1).sub(radius).abs().max() < 0.02


def test_vertices_are_differentiable_in_sdf_and_positions():
    verts, tets, sdf = _sphere_mesh(cells=8)
    verts = verts.clone().requires_grad_(True)
    sdf = sdf.clone().requires_grad_(True)
    mv, _ = marching_tetrahedra(verts, tets, sdf, backend="torch")
    mv.norm(dim=-1).sum().backward()
    assert sdf.grad.abs().sum() > 0 and verts.grad.abs().sum() > 0
    # Raising the SDF everywhere grows the surface: d(sum radius)/d(sdf) is positive.
    assert sdf.grad.sum() > 0


def test_empty_and_full_fields_give_no_surface():
    verts, tets = make_tet_grid(3)
    for value in (-1.0, 1.0):
        mv, mf = marching_tetrahedra(verts, tets, torch.full((verts.shape[0],), value), backend="torch")
        assert mv.shape == (0, 3) and mf.shape == (0, 3)
