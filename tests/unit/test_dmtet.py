"""DMTet initialised from an analytic NeRF-like density (a Gaussian blob, like the NeRF's)."""

import math

import pytest
import torch
import trimesh

from consistent123.config import Config
from consistent123.errors import Consistent123Error
from consistent123.fields.dmtet import DMTetField
from consistent123.render.cameras import Camera

PEAK, WIDTH, THRESH = 30.0, 0.35, 10.0
RADIUS = WIDTH * math.sqrt(2 * math.log(PEAK / THRESH))  # where the density crosses the threshold


def density(points):
    return PEAK * torch.exp(-(points**2).sum(-1) / (2 * WIDTH**2))


def _field(grid=32):
    cfg = Config()
    dm = cfg.dmtet.model_copy(
        update=dict(
            tet_grid_size=grid, init_density_threshold=THRESH, rasteriser_backend="torch", marching_backend="torch"
        )
    )
    hg = cfg.hashgrid.model_copy(update=dict(num_levels=6, log2_hashmap_size=12, backend="torch"))
    return DMTetField.from_density(density, dm, hg, bound=1.0)


def test_mesh_from_density_is_the_sphere():
    field = _field()
    verts, faces = field.get_mesh()
    spacing = 2 * float(field.tet_scale.max()) / (field.cfg.tet_grid_size // 2)
    # The grid was shrunk to the occupied box plus the margin.
    assert float(field.tet_scale.max()) < 0.75
    r = verts.detach().norm(dim=-1)
    assert (r - RADIUS).abs().max() < spacing / 2
    assert abs(float(r.mean()) - RADIUS) < 0.01
    mesh = trimesh.Trimesh(verts.detach().numpy(), faces.numpy(), process=False)
    assert mesh.is_watertight and mesh.volume > 0


def test_render_gives_the_expected_silhouette_and_gradients():
    field = _field()
    cam = Camera(90.0, 30.0, 3.2, 20.0)
    light = torch.tensor([0.3, 0.2, 1.0])
    out = field.render_view(cam, 64, 64, shading=("lambertian", 0.2, light), bg_color=torch.ones(3))
    for key, ch in (("rgb", 3), ("opacity", 1), ("depth", 1), ("normals", 3)):
        assert out[key].shape == (64, 64, ch) and torch.isfinite(out[key]).all()
    # A sphere of radius R seen from distance d covers a disc of NDC radius R / sqrt(d^2 - R^2) / tan(fovy/2).
    ndc_r = RADIUS / math.sqrt(3.2**2 - RADIUS**2) / math.tan(math.radians(10.0))
    expected = math.pi * ndc_r**2 / 4
    assert abs(float(out["opacity"].detach().mean()) / expected - 1) < 0.06
    assert float(out["opacity"][32, 32].detach()) == 1.0 and float(out["opacity"][0, 0].detach()) == 0.0
    assert torch.allclose(out["rgb"][0, 0], torch.ones(3))  # background colour
    assert abs(float(out["depth"][32, 32].detach()) - (3.2 - RADIUS)) < 0.03
    out["rgb"].mean().backward()
    assert field.sdf.grad.abs().sum() > 0 and field.deform.grad.abs().sum() > 0
    assert all(p.grad is not None for p in field.color_net.parameters())


def test_regularisers_are_finite_differentiable_and_penalise_noise():
    field = _field()
    smooth = (float(field.normal_consistency_loss().detach()), float(field.laplacian_loss().detach()))
    with torch.no_grad():
        field.deform.add_(torch.randn(field.deform.shape, generator=torch.Generator().manual_seed(0)) * 3)
    nc, lap = field.normal_consistency_loss(), field.laplacian_loss()
    assert torch.isfinite(nc) and torch.isfinite(lap)
    assert float(nc.detach()) > smooth[0] and float(lap.detach()) > smooth[1]
    (nc + lap).backward()
    assert field.deform.grad.abs().sum() > 0 and field.sdf.grad.abs().sum() > 0


def test_empty_density_is_refused():
    cfg = Config()
    with pytest.raises(Consistent123Error, match="init_density_threshold"):
        DMTetField.from_density(
            lambda p: torch.zeros(p.shape[0]),
            cfg.dmtet.model_copy(update=dict(tet_grid_size=8)),
            cfg.hashgrid.model_copy(update=dict(num_levels=2, log2_hashmap_size=8)),
            1.0,
        )


def test_mesh_texture_starts_from_the_nerf_albedo():
    from consistent123.config import Config
    from consistent123.fields.dmtet import DMTetField
    from consistent123.fields.nerf import NeRFField

    cfg = Config()
    cfg.hashgrid.num_levels, cfg.hashgrid.log2_hashmap_size = 4, 10
    cfg.dmtet.tet_grid_size = 8
    cfg.dmtet.color_hidden_dim = cfg.nerf.hidden_dim
    cfg.dmtet.color_num_layers = cfg.nerf.num_layers
    torch.manual_seed(0)
    nerf = NeRFField(cfg.nerf, cfg.hashgrid)
    with torch.no_grad():
        for p in nerf.parameters():
            p.normal_(0, 0.5)
    field = DMTetField(cfg.dmtet, cfg.hashgrid, 1.0)
    x = torch.rand(64, 3) * 1.6 - 0.8
    assert not torch.allclose(field.albedo(x), nerf(x)[1])
    assert field.inherit_color(nerf)
    assert torch.allclose(field.albedo(x), nerf(x)[1], atol=1e-6)


def test_surface_threshold_follows_the_occupancy_grids_mean_density_when_lower():
    # R under -O: min(mean_density, density_thresh) (nerf/renderer.py init_tet, export_mesh).
    from consistent123.config import HashGridConfig, NeRFConfig
    from consistent123.fields.nerf import NeRFField

    nerf = NeRFField(NeRFConfig(hidden_dim=8, occupancy_grid_resolution=4), HashGridConfig(num_levels=2))
    assert nerf.surface_threshold(10.0, "min_mean") == 10.0  # no grid estimate yet
    nerf.occupancy.update(lambda x: torch.full(x.shape[:1], 3.0))
    assert nerf.occupancy.mean_density() == pytest.approx(3.0)
    assert nerf.surface_threshold(10.0, "min_mean") == pytest.approx(3.0)
    assert nerf.surface_threshold(2.0, "min_mean") == 2.0
    assert nerf.surface_threshold(10.0, "fixed") == 10.0
