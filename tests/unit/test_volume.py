"""Volume rendering of an analytic sphere: silhouette, depth, empty-space skipping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from consistent123.fields.occupancy import OccupancyGrid
from consistent123.losses import entropy, orientation
from consistent123.render.cameras import Camera, get_rays, project
from consistent123.render.volume import ray_aabb, render_nerf

RADIUS = 0.5
CENTRE = torch.tensor([0.1, -0.05, 0.0])
SIZE = 40


class SphereField(nn.Module):
    """sigma = 1000 inside a ball, 0 outside; albedo a fixed colour; exact outward normals."""

    def __init__(self, bound: float = 1.0):
        super().__init__()
        self.bound = bound
        self.colour = nn.Parameter(torch.tensor([0.9, 0.3, 0.1]))
        self.occupancy = OccupancyGrid(32, bound, decay=0.95, density_threshold=10.0)

    def density(self, x):
        return torch.where((x - CENTRE).norm(dim=-1) < RADIUS, 1000.0, 0.0)

    def forward(self, x):
        return self.density(x), self.colour.expand(x.shape[0], 3)

    def normals(self, x):
        return torch.nn.functional.normalize(x - CENTRE, dim=-1)


def analytic_hits(cam: Camera, size: int):
    """Per pixel: closest approach of the ray to the centre, and entry distance (nan on a miss)."""
    o, d = get_rays(cam, size)
    oc = o - CENTRE
    b = (oc * d).sum(-1)
    closest = (oc - b.unsqueeze(-1) * d).norm(dim=-1)
    disc = b**2 - ((oc**2).sum(-1) - RADIUS**2)
    entry = -b - torch.sqrt(disc.clamp(min=0))
    return closest, torch.where(disc > 0, entry, torch.full_like(entry, math.nan))


@pytest.mark.parametrize("cam", [Camera(90.0, 0.0, 3.2, 30.0), Camera(60.0, 135.0, 3.0, 35.0)])
def test_sphere_silhouette_and_depth(cam):
    field = SphereField()
    g = torch.Generator().manual_seed(0)
    out = render_nerf(field, cam, SIZE, generator=g, num_steps=64, upsample_steps=32, bg_color=torch.ones(3))
    closest, entry = analytic_hits(cam, SIZE)
    opacity = out["opacity"][..., 0]
    pixel = 2 * cam.radius * math.tan(math.radians(cam.fovy) / 2) / SIZE  # world size of a pixel at the centre
    inside = closest < RADIUS - pixel
    outside = closest > RADIUS + pixel
    assert inside.sum() > 100 and outside.sum() > 100
    assert opacity[inside].min() > 0.99
    assert opacity[outside].max() < 0.01
    # The silhouette's centre lands where cameras.project puts the sphere's centre.
    ys, xs = torch.nonzero(opacity > 0.5, as_tuple=True)
    centre_px, _ = project(CENTRE.unsqueeze(0), cam, SIZE)
    assert abs(xs.float().mean() + 0.5 - centre_px[0, 0]) < 1.0
    assert abs(ys.float().mean() + 0.5 - centre_px[0, 1]) < 1.0
    # Depth is the entry distance along the ray, within a fraction of the coarse step.
    step = 2 * math.sqrt(3) / 64
    err = (out["depth"][..., 0][inside] - entry[inside]).abs()
    assert err.median() < 0.25 * step and err.max() < step
    # Colour: the albedo inside, the background outside.
    torch.testing.assert_close(
        out["rgb"][inside], field.colour.detach().expand(int(inside.sum()), 3), atol=0.02, rtol=0
    )
    torch.testing.assert_close(out["rgb"][outside], torch.ones(int(outside.sum()), 3), atol=0.02, rtol=0)


def test_occupancy_grid_skips_samples_without_changing_the_image():
    field = SphereField()
    cam = Camera(75.0, 30.0, 3.2, 30.0)
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):  # jittered updates, as during training
        field.occupancy.update(field, gen)
    assert 0.0 < field.occupancy.occupied_fraction() < 0.2
    ref = render_nerf(field, cam, SIZE, generator=torch.Generator().manual_seed(2), use_occupancy=False)
    fast = render_nerf(field, cam, SIZE, generator=torch.Generator().manual_seed(2), use_occupancy=True)
    assert fast["num_samples"] < 0.5 * ref["num_samples"]
    assert ref["num_samples"] == ref["num_candidates"]
    torch.testing.assert_close(fast["opacity"], ref["opacity"], atol=1e-3, rtol=0)
    torch.testing.assert_close(fast["depth"], ref["depth"], atol=1e-3, rtol=0)
    torch.testing.assert_close(fast["rgb"], ref["rgb"], atol=1e-3, rtol=0)


def test_fresh_occupancy_grid_skips_nothing():
    field = SphereField()
    out = render_nerf(field, Camera(90.0, 0.0, 3.2, 30.0), 16, perturb=False)
    assert out["num_samples"] == out["num_candidates"]


def test_ray_aabb_against_brute_force():
    g = torch.Generator().manual_seed(3)
    o = torch.randn(200, 3, generator=g) * 3
    d = torch.nn.functional.normalize(torch.randn(200, 3, generator=g), dim=-1)
    near, far, hit = ray_aabb(o, d, 1.0)
    ts = torch.linspace(0, 12, 6001)
    pts = o.unsqueeze(1) + ts.view(1, -1, 1) * d.unsqueeze(1)
    inside = (pts.abs() <= 1.0).all(-1)
    brute_hit = inside.any(1)
    # Rays that only graze an edge can disagree at the sampling resolution; all others must not.
    assert (hit == brute_hit).float().mean() > 0.98
    both = hit & brute_hit
    first = ts[inside.float().argmax(1)]
    assert (near[both] - first[both]).abs().max() < 0.01


def test_shaded_render_normals_and_regularisers():
    field = SphereField()
    cam = Camera(90.0, 0.0, 3.2, 30.0)
    light = torch.tensor([0.0, 0.0, 1.0])
    out = render_nerf(field, cam, 24, shading=("lambertian", 0.2, light), perturb=False)
    closest, _ = analytic_hits(cam, 24)
    centre_pixel = closest.flatten().argmin()
    # At the pixel facing the sphere's centre the normal points back at the camera (+z).
    n = out["normals"].reshape(-1, 3)[centre_pixel]
    assert n[2] > 0.95
    # Lambertian with a light from +z: brighter in the middle than near the rim.
    lum = out["rgb"].sum(-1).flatten()
    opacity = out["opacity"].flatten()
    rim = (closest.flatten() > 0.8 * RADIUS) & (closest.flatten() < 0.95 * RADIUS) & (opacity > 0.99)
    assert lum[centre_pixel] > lum[rim].max()
    # Front-facing normals: the orientation penalty is ~0; flipping them makes it large.
    front = float(orientation(out))
    field.normals = lambda x: -torch.nn.functional.normalize(x - CENTRE, dim=-1)
    flipped = render_nerf(field, cam, 24, shading=("lambertian", 0.2, light), perturb=False)
    # (a mean over every evaluated sample, most of which carry almost no weight)
    assert front < 1e-6 and float(orientation(flipped)) > 1e-3
    # Entropy of the per-sample weights: a crisp surface (weights near 0 or 1) low, halves high.
    assert entropy(out["sample_weights"]) < 0.2 < entropy(torch.full((16,), 0.5))
    with pytest.raises(ValueError):
        orientation(render_nerf(field, cam, 8, perturb=False))


# ---------------------------------------------------------------- R's fixed-step marcher (recipe row 2)
def test_the_marcher_steps_2_sqrt3_over_max_steps_from_a_jittered_start():
    from consistent123.render.volume import march_steps

    near, far = torch.tensor([0.0, 1.0]), torch.tensor([2 * 3**0.5, 1.5])
    t, inside, dt = march_steps(near, far, 1024, perturb=False)
    assert torch.allclose(dt, torch.full((2,), 2 * 3**0.5 / 1024))
    assert int(inside[0].sum()) == 1024  # the unit bound's diagonal takes every step
    assert int(inside[1].sum()) == 148  # 0.5 / dt = 147.8 steps fit before far
    assert torch.allclose(t[:, 1] - t[:, 0], dt)
    jittered, _, _ = march_steps(near, far, 1024, perturb=True, generator=torch.Generator().manual_seed(0))
    offset = jittered[:, 0] - near
    assert ((offset >= 0) & (offset < dt)).all() and (offset > 0).any()


def test_a_ray_stops_where_rs_compositing_stops():
    from consistent123.render.volume import composite_weights

    sigma = torch.tensor([[0.0, 1e4, 5.0, 5.0]])
    t = torch.tensor([[0.0, 0.1, 0.2, 0.3]])
    full = composite_weights(sigma, t, torch.tensor([0.1]))
    stopped = composite_weights(sigma, t, torch.tensor([0.1]), transmittance_threshold=1e-4)
    assert float(full[0, 2]) > 0 and float(stopped[0, 2]) == 0.0  # behind an opaque sample: nothing
    assert torch.equal(stopped[0, :2], full[0, :2])


def test_marched_and_finely_stratified_renders_of_the_same_field_agree():
    from consistent123.config import Config
    from consistent123.fields.nerf import NeRFField
    from consistent123.render.cameras import Camera
    from consistent123.render.volume import render_nerf

    cfg = Config()
    torch.manual_seed(0)
    hg = cfg.hashgrid.model_copy(update=dict(num_levels=4, log2_hashmap_size=10, backend="torch"))
    nerf = NeRFField(cfg.nerf.model_copy(update=dict(max_steps=512)), hg)
    cam = Camera(70.0, 20.0, 3.2, 20.0)
    marched = render_nerf(nerf, cam, 16, perturb=False)
    nerf.cfg = nerf.cfg.model_copy(update=dict(sampler="stratified", num_steps=512, upsample_steps=0))
    stratified = render_nerf(nerf, cam, 16, perturb=False)
    assert float(marched["opacity"].detach().max()) > 0.5  # the blob is in view
    assert (marched["opacity"] - stratified["opacity"]).abs().max() < 0.02
    assert (marched["rgb"] - stratified["rgb"]).abs().max() < 0.02


def test_a_march_past_its_candidate_limit_is_refused_and_the_paper_config_is_not():
    from pathlib import Path

    from consistent123.config import cost_errors, load_config
    from consistent123.errors import ConfigError

    paper = load_config(Path(__file__).resolve().parents[2] / "config" / "paper.yaml")
    assert paper.nerf.sampler == "march" and cost_errors(paper) == []
    with pytest.raises(ConfigError, match=r"nerf.max_steps=4096 .* > limits.max_march_candidates="):
        load_config(None, ["nerf.max_steps=4096"])
