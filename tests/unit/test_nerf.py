"""The hash-grid NeRF field: density blob, normals, gradients through the volume renderer."""

from __future__ import annotations

import math

import torch

from consistent123.config import HashGridConfig, NeRFConfig
from consistent123.fields.nerf import NeRFField
from consistent123.render.cameras import Camera
from consistent123.render.volume import render_nerf

SMALL_GRID = HashGridConfig(
    num_levels=4, log2_hashmap_size=12, base_resolution=8, desired_resolution_per_bound=64, backend="torch"
)


def _field(**nerf) -> NeRFField:
    torch.manual_seed(0)
    return NeRFField(NeRFConfig(**nerf), SMALL_GRID)


def _blob_only(field: NeRFField) -> NeRFField:
    """Zero the MLP's output layer: density is then exactly the activated blob."""
    with torch.no_grad():
        field.mlp.layers[-1].weight.zero_()
        field.mlp.layers[-1].bias.zero_()
    return field


def test_density_is_the_exp_blob_at_initialisation():
    """R renderer.py density_blob: exp activation -> Gaussian blob 10 exp(-|x|^2 / (2 * 0.2^2))."""
    cfg = NeRFConfig()
    field = _blob_only(_field())
    x = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.3, 0.4], [0.05, -0.05, 0.02]])
    r = x.norm(dim=-1)
    expected = torch.exp(cfg.blob_density * torch.exp(-(r**2) / (2 * cfg.blob_radius**2)))
    torch.testing.assert_close(field.density(x), expected, rtol=1e-5, atol=0)
    sigma, albedo = field(x)
    assert sigma.shape == (4,) and albedo.shape == (4, 3)
    torch.testing.assert_close(albedo, torch.full((4, 3), 0.5))  # sigmoid(0)


def test_blob_at_radius_0_3_is_the_gaussian_for_exp():
    field = _blob_only(_field())
    x = torch.tensor([[0.3, 0.0, 0.0], [0.0, 0.0, -0.3]])
    torch.testing.assert_close(field.density_blob(x), torch.full((2,), 10 * math.exp(-1.125)))
    # the cone would be 10 (1 - 0.3 / 0.2) = -5 here
    torch.testing.assert_close(_field(density_activation="softplus").density_blob(x), torch.full((2,), -5.0))


def test_softplus_activation_uses_the_cone_blob():
    field = _blob_only(_field(density_activation="softplus"))
    x = torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0]])
    blob = 10.0 * (1 - x.norm(dim=-1) / 0.2)
    torch.testing.assert_close(field.density(x), torch.nn.functional.softplus(blob - 1.0))


def test_blob_normals_point_outwards():
    field = _blob_only(_field())
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(50, 3, generator=g), dim=-1) * 0.15
    n = field.normals(x)
    torch.testing.assert_close(n.norm(dim=-1), torch.ones(50))
    assert (n * torch.nn.functional.normalize(x, dim=-1)).sum(-1).min() > 0.99


def test_gradients_reach_hash_table_and_mlp_through_rendering():
    field = _field()
    out = render_nerf(
        field,
        Camera(80.0, 20.0, 2.0, 40.0),
        16,
        shading=("lambertian", 0.3, None),
        generator=torch.Generator().manual_seed(0),
    )
    assert out["opacity"].max() > 0.5  # the blob is visible
    out["rgb"].sum().backward()
    table_grad = field.encoder.impl.table.grad
    assert table_grad is not None and table_grad.abs().sum() > 0
    # Only the entries near the sampled points move: the table gradient is sparse.
    assert (table_grad.abs().sum(1) > 0).float().mean() < 1.0
    for layer in field.mlp.layers:
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_occupancy_grid_follows_the_blob_and_is_saved():
    field = _blob_only(_field(occupancy_grid_resolution=16))
    assert field.occupancy.maybe_update(field, step=0, every=16)
    assert not field.occupancy.maybe_update(field, step=5, every=16)
    occ = field.occupancy
    assert 0 < occ.occupied_fraction() < 0.1
    assert bool(occ.occupied_at(torch.zeros(1, 3))[0])
    assert not bool(occ.occupied_at(torch.tensor([[0.9, 0.9, 0.9]]))[0])
    state = field.state_dict()
    assert "occupancy.occupied" in state and "occupancy.density" in state
    groups = field.param_groups(1e-3)
    assert groups[0]["lr"] == 1e-2 and groups[1]["lr"] == 1e-3
