"""The one camera convention: poses, rays, projection, and the Zero-1-to-3 relative camera."""

import math

import numpy as np
import pytest
import torch

from consistent123.config import CamerasConfig, EvalConfig
from consistent123.render.cameras import (
    Camera,
    camera_to_world,
    check_cameras,
    get_rays,
    gso_cameras,
    mvp_matrix,
    orbit_position,
    project,
    sample_novel_camera,
    zero123_embedding,
)


def test_front_camera_sits_on_plus_z_and_is_a_rotation():
    c2w = camera_to_world(Camera(90, 0, 3.2, 20))
    assert torch.allclose(c2w[:3, 3], torch.tensor([0, 0, 3.2]), atol=1e-6)
    R = c2w[:3, :3]
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6)
    assert torch.det(R) == pytest.approx(1.0, abs=1e-6)
    # Screen right is world +x, screen up is world +y when looking from the front.
    assert torch.allclose(R[:, 0], torch.tensor([1.0, 0, 0]), atol=1e-6)
    assert torch.allclose(R[:, 1], torch.tensor([0, 1.0, 0]), atol=1e-6)


def test_azimuth_turns_right_handed_about_up_and_polar_from_up():
    assert torch.allclose(orbit_position(90, 90, 2.0), torch.tensor([2.0, 0, 0]), atol=1e-6)
    assert torch.allclose(orbit_position(0, 0, 2.0), torch.tensor([0, 2.0, 0]), atol=1e-6)
    assert torch.allclose(orbit_position(45, 0, 1.0), torch.tensor([0, math.sqrt(0.5), math.sqrt(0.5)]), atol=1e-6)


def test_project_known_point_and_rays_round_trip():
    cam = Camera(70, 30, 3.0, 25)
    H = 64
    point = torch.tensor([[0.3, -0.2, 0.1]])
    pix, depth = project(point, cam, H)
    col, row = pix[0]
    # The ray through that pixel passes through the point.
    origins, dirs = get_rays(cam, H)
    # Interpolate the ray direction at the (fractional) pixel by building it directly.
    c, r = int(col), int(row)
    o, d = origins[r, c], dirs[r, c]
    to_point = torch.nn.functional.normalize(point[0] - o, dim=0)
    assert torch.dot(to_point, d) > math.cos(math.radians(25) / H * 2)  # within ~1 pixel
    assert depth[0] > 0
    # The origin projects to the image centre for every orbit camera.
    centre, _ = project(torch.zeros(1, 3), cam, H)
    assert torch.allclose(centre[0], torch.tensor([H / 2, H / 2]), atol=1e-4)


def test_mvp_matches_project():
    cam = Camera(80, -40, 3.3, 18)
    H = 128
    pts = torch.rand(20, 3) - 0.5
    clip = torch.cat([pts, torch.ones(20, 1)], 1) @ mvp_matrix(cam).T
    ndc = clip[:, :3] / clip[:, 3:]
    col = (ndc[:, 0] + 1) / 2 * H
    row = (1 - ndc[:, 1]) / 2 * H
    pix, _ = project(pts, cam, H)
    assert torch.allclose(torch.stack([col, row], 1), pix, atol=1e-3)


def _zero123_reference_T(target_xyz_zup, cond_xyz_zup):
    """Zero-1-to-3's own get_T: spherical coordinates of the camera centres in its z-up world."""

    def sph(xyz):
        x, y, z = xyz
        polar = math.atan2(math.sqrt(x * x + y * y), z)
        azimuth = math.atan2(y, x)
        return polar, azimuth, math.sqrt(x * x + y * y + z * z)

    pt, at, rt = sph(target_xyz_zup)
    pc, ac, rc = sph(cond_xyz_zup)
    d_az = (at - ac) % (2 * math.pi)
    return [pt - pc, math.sin(d_az), math.cos(d_az), rt - rc]


@pytest.mark.parametrize("target", [Camera(90, 90, 3.2, 20), Camera(60, -45, 3.5, 20), Camera(100, 170, 3.0, 20)])
def test_zero123_embedding_matches_zero123_convention(target):
    ref = Camera(90, 0, 3.2, 20)

    # Our y-up world -> a z-up world by a proper rotation (x, y, z) -> (x, -z, y), as in Blender.
    def to_zup(cam):
        x, y, z = orbit_position(cam.polar, cam.azimuth, cam.radius).tolist()
        return (x, -z, y)

    expected = _zero123_reference_T(to_zup(target), to_zup(ref))
    assert np.allclose(zero123_embedding(target, ref).numpy(), expected, atol=1e-5)


def test_camera_sets():
    cams = check_cameras(CamerasConfig())
    assert [c.azimuth for c in cams] == [0, 45, 90, 135, 180, 225, 270, 315]
    assert all(c.polar == 90 and c.radius == 3.2 for c in cams)
    gso = gso_cameras(EvalConfig(), 3.2, 20)
    assert len(gso) == 18 and gso[2].polar == 120  # elevation -30
    g = torch.Generator().manual_seed(0)
    cfg = CamerasConfig()
    for _ in range(50):
        c = sample_novel_camera(cfg, g)
        assert (
            45 <= c.polar <= 105 and -180 <= c.azimuth <= 180 and 3.0 <= c.radius <= 3.5 and c.fovy == 20
        )  # R: fixed fov with Zero-1-to-3
