"""Cavities: what the training cameras can see empty, the blob's fade, the cross-section picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from consistent123.config import NeRFConfig
from consistent123.experiments import hard_shapes
from consistent123.render.visibility import seen_empty
from consistent123.training.schedule import blob_scale
from eval.cross_section import section_image

REPO = Path(__file__).resolve().parents[2]
RADIUS, FOVY = 3.2, 20.0


@pytest.fixture(scope="module")
def cup():
    return hard_shapes.build("hard:cup")


def _cavity_axis_points(cup, depths):
    """Normalised points on the cup's axis, ``depths`` below its rim (normalised units)."""
    centre = (np.array([0.0, 0.0, 0.0]) - cup.centre) * cup.scale  # the design's axis is x = z = 0
    rim = (0.35 - cup.centre[1]) * cup.scale
    return np.array([[centre[0], rim - d, centre[2]] for d in depths])


def test_cameras_45_degrees_up_cannot_see_a_deep_cup_floor_but_steeper_ones_can(cup):
    # Inner radius r: a ray 45 degrees down that crosses the axis entered the opening at most r
    # away from it, so it crosses the axis at most r below the rim; 75 degrees down: 3.7 r.
    r = 0.25 * cup.scale
    points = _cavity_axis_points(cup, [0.5 * r, 1.5 * r])
    assert cup.cavity_mask(points).all()
    scene = cup.mesh.copy()
    seen_45 = seen_empty(scene, points, (45.0, 105.0), RADIUS, FOVY, views=(4, 12))
    seen_15 = seen_empty(scene, points, (15.0, 105.0), RADIUS, FOVY, views=(7, 12))
    assert seen_45.tolist() == [True, False]
    assert seen_15.tolist() == [True, True]


def test_points_outside_the_mesh_are_seen_empty_and_points_in_the_wall_are_not(cup):
    wall = np.array([[(0.275 - cup.centre[0]) * cup.scale, -cup.centre[1] * cup.scale, -cup.centre[2] * cup.scale]])
    outside = np.array([[0.0, 0.49, 0.49]])
    assert cup.solid_mask(wall).all() and not cup.solid_mask(outside).any()
    seen = seen_empty(cup.mesh, np.concatenate([wall, outside]), (45.0, 105.0), RADIUS, FOVY, (3, 8))
    assert seen.tolist() == [False, True]


def test_blob_is_permanent_by_default_and_fades_linearly_when_asked():
    assert NeRFConfig().blob_fade == 0.0  # R's permanent blob
    assert [blob_scale(NeRFConfig(), p) for p in (0.0, 0.5, 1.0)] == [1.0, 1.0, 1.0]
    fading = NeRFConfig(blob_fade=0.5)
    assert [blob_scale(fading, p) for p in (0.0, 0.25, 0.5, 0.9)] == pytest.approx([1.0, 0.5, 0.0, 0.0])


def test_cross_section_colours_each_kind_of_voxel():
    truth = np.zeros((4, 4, 4), bool)
    result = np.zeros((4, 4, 4), bool)
    cavity = np.zeros((4, 4, 4), bool)
    truth[0, 2, 0] = result[0, 2, 0] = True  # both
    truth[1, 2, 0] = True  # missed
    result[2, 2, 0] = True  # added
    result[3, 2, 0] = cavity[3, 2, 0] = True  # added inside the cavity
    image = section_image(truth, result, cavity)[::4, ::4]  # one pixel per voxel: rows z, columns x
    assert image.shape == (4, 4, 3)
    assert image[0, 0].tolist() == [0, 0, 0]
    assert image[0, 1].tolist() == [200, 200, 200]
    assert image[0, 2].tolist() == [230, 60, 60]
    assert image[0, 3].tolist() == [130, 0, 0]
    assert image[1, 0].tolist() == [255, 255, 255]


# A NeRF phase small enough for about a minute on 2 idle CPU cores, on a cup whose walls its grids
# resolve (measured: IoU 0.60, 71 % of the truth's solid and 19 % of the cavity above the threshold).
SMALL_NERF = [
    "hashgrid.num_levels=6",
    "hashgrid.log2_hashmap_size=13",
    "hashgrid.desired_resolution_per_bound=64",
    "hashgrid.backend=torch",
    "nerf.render_size=48",
    "nerf.hidden_dim=16",
    "nerf.num_steps=32",
    "nerf.upsample_steps=16",
    "nerf.occupancy_grid_resolution=16",
    "sds.zero123_resolution=48",
    "sds.sd_resolution=48",
    "train.nerf_iters=500",
    "dynamic.fixed_switch_iter=250",
    "eval.iou_resolution=32",
]


def test_small_cup_keeps_its_walls_and_leaves_its_cavity_empty(tmp_path):
    from consistent123.config import load_config
    from consistent123.experiments.cavity_probe import probe

    cfg = load_config(REPO / "config" / "known_answer.yaml", SMALL_NERF)
    result = probe("thick_cup", cfg, tmp_path)
    assert (tmp_path / "cross_section.png").is_file()
    assert result["seen"] > 0.95  # the known-answer cameras see the whole cavity empty
    assert result["wall"] > 0.6  # most of the truth's solid voxels are solid
    assert result["filled"] < 0.3  # and most of its cavity's voxels are not


def test_a_run_resumed_at_the_hand_over_builds_the_mesh_without_a_faded_blob(tmp_path):
    # The NeRF's blob strength is set per iteration; a trainer resumed from the NeRF phase's last
    # checkpoint once built its DMTet with the blob back at full strength (a cup's middle refilled).
    import torch

    from consistent123.case import load_case
    from consistent123.config import load_config
    from consistent123.priors.base import Priors
    from consistent123.testing import TINY_OVERRIDES, synthetic_case
    from consistent123.training.trainer import Trainer

    cfg = load_config(
        None,
        [
            *TINY_OVERRIDES,
            "train.use_priors=false",
            "train.nerf_iters=4",
            "train.mesh_iters=1",
            "nerf.blob_fade=0.5",
            "dmtet.init_density_threshold=0.5",
        ],
    )
    case = load_case(synthetic_case(tmp_path))
    cpu = torch.device("cpu")
    straight = Trainer(cfg, case, Priors(), cpu)
    for _ in range(4):
        straight.step()
    straight.save_checkpoint(tmp_path / "nerf_end.pt")
    resumed = Trainer(cfg, case, Priors(), cpu)
    resumed.load_checkpoint(tmp_path / "nerf_end.pt")
    assert resumed.nerf.blob_scale == 1.0  # a fresh field: the blob at full strength until told
    straight.step()
    resumed.step()
    assert straight.nerf.blob_scale == resumed.nerf.blob_scale == 0.0
    assert torch.equal(straight.mesh.sdf, resumed.mesh.sdf)
