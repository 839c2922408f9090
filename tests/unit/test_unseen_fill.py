"""The unseen fill: space no camera sees is made solid, space a camera sees empty stays empty."""

import pytest
import torch
import trimesh

from consistent123.config import Config
from consistent123.fields.density_grid import density_grid
from consistent123.fields.unseen_fill import fill_unseen, surface_density, unseen_cells
from consistent123.render.visibility import orbit_cameras, seen_empty_counts

THRESH, PEAK = 10.0, 50.0


def hollow_ball(points):
    """A closed skin 0.1 thick (0.3 < r < 0.4): the NeRF of a solid ball as fine samples leave it."""
    r = points.norm(dim=-1)
    return torch.where((r > 0.3) & (r < 0.4), PEAK, 0.0)


def open_bowl(points):
    """The same skin with its top cut open (y > 0.15): its inside is seen from above."""
    return torch.where(points[:, 1] > 0.15, 0.0, hollow_ball(points))


def _configs(polar_range=(15.0, 105.0)):
    cfg = Config()
    dm = cfg.dmtet.model_copy(
        update=dict(
            unseen_fill=True, unseen_grid=40, unseen_views=(4, 8), unseen_render_size=64, init_density_threshold=THRESH
        )
    )
    cams = cfg.cameras.model_copy(update=dict(polar_range=polar_range))
    return dm, cams


def test_a_closed_skin_hides_its_inside_from_every_camera_and_outside_points_are_seen():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
    cams = orbit_cameras((15.0, 105.0), 3.2, 20.0, (3, 6))
    points = torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.1, 0.05], [0.0, 0.6, 0.0], [0.55, 0.0, 0.0]])
    counts = seen_empty_counts(
        torch.as_tensor(sphere.vertices, dtype=torch.float32), torch.as_tensor(sphere.faces), points, cams, 64
    )
    assert counts[:2].tolist() == [0, 0]
    assert (counts[2:] >= 2).all()  # seen empty from several of the 18 cameras


def test_the_inside_of_a_closed_skin_becomes_solid_and_the_outside_stays_empty():
    dm, cams = _configs()
    filled = fill_unseen(hollow_ball, 1.0, THRESH, cams, dm)
    probes = torch.tensor([[0.0, 0.0, 0.0], [0.15, 0.0, 0.1], [0.0, 0.7, 0.0], [0.6, -0.2, 0.3]])
    sigma = filled(probes)
    assert (sigma[:2] > THRESH).all()
    assert (sigma[2:] == 0).all()
    # the skin itself is untouched
    skin = torch.tensor([[0.35, 0.0, 0.0]])
    assert float(filled(skin)) == PEAK


def test_a_cavity_the_cameras_see_into_stays_empty():
    dm, cams = _configs()
    sigma = density_grid(open_bowl, 1.0, dm.unseen_grid)
    unseen = unseen_cells(sigma, 1.0, THRESH, cams, dm)
    filled = fill_unseen(open_bowl, 1.0, THRESH, cams, dm)
    inside_bowl = torch.tensor([[0.0, 0.0, 0.0], [0.0, -0.15, 0.0], [0.1, 0.05, -0.1]])
    assert (filled(inside_bowl) < THRESH).all()
    assert unseen.sum() < 0.02 * (sigma <= THRESH).sum()


def test_cameras_only_from_the_side_leave_the_bowls_bottom_unseen_and_filled():
    """What decides is what the orbit sees: from the equator down, the bowl's low inside is unseen."""
    dm, cams = _configs(polar_range=(90.0, 105.0))
    filled = fill_unseen(open_bowl, 1.0, THRESH, cams, dm)
    assert float(filled(torch.tensor([[0.0, -0.2, 0.0]]))) > THRESH


@pytest.mark.parametrize("fill", [False, True])
def test_the_hand_over_reads_the_filled_density_only_when_asked(fill):
    from consistent123.fields.nerf import NeRFField

    cfg = Config()
    hg = cfg.hashgrid.model_copy(update=dict(num_levels=4, log2_hashmap_size=10, backend="torch"))
    nerf = NeRFField(cfg.nerf, hg)
    dm, cams = _configs()
    density_fn, threshold = surface_density(nerf, dm.model_copy(update={"unseen_fill": fill}), cams)
    assert threshold == nerf.surface_threshold(dm.init_density_threshold, dm.init_density_rule)
    assert (density_fn == nerf.density) is (not fill)


def test_the_dmtet_built_from_a_hollow_nerf_is_solid_with_the_fill_and_hollow_without():
    from consistent123.fields.dmtet import DMTetField
    from consistent123.fields.nerf import NeRFField

    cfg = Config()
    hg = cfg.hashgrid.model_copy(update=dict(num_levels=4, log2_hashmap_size=10, backend="torch"))
    nerf = NeRFField(cfg.nerf.model_copy(update={"blob_density": 0.0}), hg)
    nerf.density = hollow_ball  # the skin a NeRF trained with fine samples leaves of a solid ball
    dm, cams = _configs()
    dm = dm.model_copy(update=dict(tet_grid_size=24, init_density_rule="fixed"))
    centre = {}
    for fill in (False, True):
        field = DMTetField.from_nerf(nerf, dm.model_copy(update={"unseen_fill": fill}), hg, cams)
        near_centre = field.grid_vertices().norm(dim=-1) < 0.15
        centre[fill] = field.sdf.detach()[near_centre]
    assert (centre[False] < 0).all()  # hollow: the inside is outside the surface
    assert (centre[True] > 0).all()
