"""The pure-PyTorch rasteriser against geometry computed independently from the camera module."""

import numpy as np
import pytest
import torch

from consistent123.backends import unavailable
from consistent123.render.cameras import Camera, camera_to_world, get_rays, project
from consistent123.render.rasterize import make_rasteriser, render_mesh

CAM = Camera(polar=80.0, azimuth=25.0, radius=3.0, fovy=40.0)
H, W = 40, 56  # not square: checks the aspect ratio too
TRI = torch.tensor([[-0.55, -0.40, 0.10], [0.60, -0.30, -0.25], [0.05, 0.55, 0.30]])
FACES = torch.tensor([[0, 1, 2]])


def _expected_coverage(verts, cam, h, w):
    """Pixel centres inside the projected triangle, and their distance to the nearest edge."""
    pix, _ = project(verts, cam, h, w)
    p = pix.double().numpy()
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    c = np.stack([cols, rows], -1)

    def edge(a, b):
        d = p[b] - p[a]
        return (d[0] * (c[..., 1] - p[a][1]) - d[1] * (c[..., 0] - p[a][0])) / np.linalg.norm(d)

    e = np.stack([edge(0, 1), edge(1, 2), edge(2, 0)], -1)
    e = e * np.sign(e.sum(-1, keepdims=True).mean())  # orientation-free
    inside = (e > 0).all(-1)
    return inside, np.abs(e).min(-1)


def _ray_plane(verts, cam, h, w):
    """World point and view depth where each pixel's ray meets the triangle's plane."""
    o, d = get_rays(cam, h, w)
    o, d, v = o.double(), d.double(), verts.double()
    n = torch.linalg.cross(v[1] - v[0], v[2] - v[0])
    t = ((v[0] - o) @ n) / (d @ n)
    point = o + t[..., None] * d
    forward = -camera_to_world(cam)[:3, 2].double()
    return point, t * (d @ forward)


def test_coverage_depth_and_attributes_of_a_known_triangle():
    out = render_mesh(TRI, FACES, CAM, H, W, backend="torch")
    inside, margin = _expected_coverage(TRI, CAM, H, W)
    assert inside.sum() > 100  # the triangle is well inside the image
    clear = margin > 1e-3  # centres sitting on an edge are a matter of tie rules
    got = out["mask"][..., 0].numpy()
    np.testing.assert_array_equal(got[clear], inside[clear])

    point, depth = _ray_plane(TRI, CAM, H, W)
    m = torch.from_numpy(got)
    torch.testing.assert_close(out["depth"][..., 0][m].double(), depth[m], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["position"][m].double(), point[m], rtol=0, atol=1e-5)
    assert (out["depth"][~m] == 0).all()

    # Per-vertex colours = one-hot: interpolated colours are the 3D barycentrics of the hit point.
    colours = torch.eye(3)
    lo = render_mesh(TRI, FACES, CAM, H, W, vertex_colors=colours, backend="torch")
    r = make_rasteriser("torch", "cpu")
    from consistent123.render.cameras import mvp_matrix

    clip = torch.cat([TRI, torch.ones(3, 1)], -1) @ mvp_matrix(CAM, aspect=W / H).T
    rast, _ = r.rasterize(clip, FACES, H, W)
    bary, _ = r.interpolate(colours, rast, FACES)
    bary = torch.flip(bary[0], dims=[0])
    recon = bary.double() @ TRI.double()
    torch.testing.assert_close(recon[m], point[m], rtol=0, atol=1e-5)
    # Away from the silhouette the antialiased rgb equals the plain interpolation.
    interior = torch.from_numpy(margin > 1.5) & m
    torch.testing.assert_close(lo["rgb"][interior], bary[interior], rtol=0, atol=1e-5)


def test_depth_test_keeps_the_nearer_triangle():
    far = TRI.clone()
    near = TRI.clone() * 0.8
    near[:, 0] += 0.1
    verts = torch.cat([far, near])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    colours = torch.tensor([[1.0, 0, 0]] * 3 + [[0, 1.0, 0]] * 3)
    out = render_mesh(verts, faces, CAM, H, W, vertex_colors=colours, backend="torch")
    near_in, margin = _expected_coverage(near, CAM, H, W)
    sel = torch.from_numpy(near_in & (margin > 1.5))
    assert sel.sum() > 20
    assert torch.allclose(out["rgb"][sel], torch.tensor([0.0, 1.0, 0.0]))


def test_silhouette_gradient_moves_the_right_vertex_outwards():
    cam = Camera(90.0, 0.0, 3.0, 40.0)  # looks down -z: world +x is image right
    verts = torch.tensor([[-0.5, -0.4, 0.0], [0.45, -0.1, 0.0], [-0.1, 0.5, 0.0]], requires_grad=True)
    out = render_mesh(verts, FACES, cam, 32, 32, backend="torch")
    mask = out["mask"][..., 0].float()
    target = mask.clone()
    for shift in (1, 2, 3):  # the target silhouette reaches further to the right
        target[:, shift:] = torch.maximum(target[:, shift:], mask[:, :-shift])
    loss = ((out["alpha"][..., 0] - target) ** 2).mean()
    loss.backward()
    g = verts.grad
    assert torch.isfinite(g).all()
    assert g[1, 0] < 0  # gradient descent pushes the right vertex further right
    assert g[1, 0].abs() > g[1, 1].abs()  # mostly sideways: the target grew to the right
    # A small step down the gradient lowers the silhouette loss.
    with torch.no_grad():
        moved = verts - 0.02 * g / g.norm()
        alpha = render_mesh(moved, FACES, cam, 32, 32, backend="torch")["alpha"][..., 0]
        assert ((alpha - target) ** 2).mean() < loss


def test_texture_lookup_matches_uv():
    quad = torch.tensor([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.5, 0.5, 0.0], [-0.5, 0.5, 0.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uv = torch.tensor([[0.1, 0.2], [0.9, 0.2], [0.9, 0.8], [0.1, 0.8]])
    n = 64  # texel (row, col) centre -> (u, v); row 0 is the top (v = 1)
    v_, u_ = torch.meshgrid((n - 1 - torch.arange(n) + 0.5) / n, (torch.arange(n) + 0.5) / n, indexing="ij")
    texture = torch.stack([u_, v_, torch.zeros_like(u_)], -1)
    cam = Camera(90.0, 0.0, 3.0, 30.0)
    tex = render_mesh(quad, faces, cam, 48, 48, uv=uv, uv_faces=faces, texture=texture, backend="torch")
    ref = render_mesh(quad, faces, cam, 48, 48, vertex_colors=torch.cat([uv, torch.zeros(4, 1)], -1), backend="torch")
    m = tex["mask"][..., 0]
    assert m.sum() > 200
    torch.testing.assert_close(tex["rgb"][m], ref["rgb"][m], rtol=0, atol=2e-3)


def _random_scene(seed=0):
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.7)
    g = torch.Generator().manual_seed(seed)
    v = torch.tensor(mesh.vertices, dtype=torch.float32)
    v = v * (1 + 0.15 * torch.rand(v.shape[0], 1, generator=g))
    return v, torch.tensor(mesh.faces, dtype=torch.int32)


@pytest.mark.gpu
@pytest.mark.skipif(unavailable("rasteriser", "cuda") is not None, reason="needs CUDA and nvdiffrast")
def test_torch_backend_matches_nvdiffrast():
    v, f = _random_scene()
    colours = (v - v.min(0).values) / (v.max(0).values - v.min(0).values)
    out = {}
    for backend, dev in (("torch", "cpu"), ("nvdiffrast", "cuda")):
        out[backend] = {
            k: t.cpu()
            for k, t in render_mesh(
                v.to(dev), f.to(dev), CAM, 96, 128, vertex_colors=colours.to(dev), backend=backend
            ).items()
        }
    a, b = out["torch"], out["nvdiffrast"]
    same = (a["mask"] == b["mask"])[..., 0]
    assert same.float().mean() > 0.998  # only pixel centres on an edge may differ
    both = a["mask"][..., 0] & b["mask"][..., 0]
    torch.testing.assert_close(a["position"][both], b["position"][both], rtol=0, atol=1e-4)
    torch.testing.assert_close(a["depth"][both], b["depth"][both], rtol=1e-4, atol=1e-4)
    assert (a["alpha"] - b["alpha"]).abs().mean() < 5e-3
