"""2D normal smoothness (loss.normal_smooth_2d_form): R's blur-and-neighbours form, and the old one."""

from __future__ import annotations

import pytest
import torch

from consistent123.config import LossConfig
from consistent123.losses import neighbour_differences, normal_smoothness_2d


def test_the_default_is_the_authors_form():
    assert LossConfig().normal_smooth_2d_form == "blur_and_neighbours"
    assert LossConfig().lambda_normal_smooth_2d == 10.0 and LossConfig().normal_smooth_2d_blur_kernel == 9


def test_a_flat_normal_image_costs_nothing_and_a_speckled_one_does():
    flat = torch.full((16, 16, 3), 0.5)
    assert normal_smoothness_2d({"normal_image": flat}, "blur_and_neighbours", 9).item() == pytest.approx(0.0, abs=1e-7)
    speckled = flat.clone()
    speckled[8, 8] = 1.0
    cost = normal_smoothness_2d({"normal_image": speckled}, "blur_and_neighbours", 9)
    assert cost.item() > neighbour_differences(speckled).item()  # the blur term adds to it


def test_the_blur_term_pulls_a_pixel_towards_its_neighbourhood_only():
    image = torch.full((16, 16, 3), 0.5)
    image[8, 8] = 1.0
    image.requires_grad_(True)
    from torchvision.transforms.functional import gaussian_blur

    blurred = gaussian_blur(image.detach().permute(2, 0, 1), kernel_size=9).permute(1, 2, 0)
    torch.nn.functional.mse_loss(image, blurred).backward()
    assert image.grad[8, 8, 0] > 1e-4 and abs(image.grad[0, 0, 0]) < 1e-7  # the target itself is stopped


def test_the_old_form_reads_the_signed_normals():
    normals = torch.zeros(4, 4, 3)
    normals[:, 2:, 0] = -1.0
    # one column edge in one channel: 4 of the 4 x 3 x 3 horizontal differences are 1
    assert normal_smoothness_2d({"normals": normals}, "neighbours", 9).item() == pytest.approx(4 / 36)


def test_the_volume_render_gives_the_normal_image_in_0_1_with_stopped_weights():
    from consistent123.config import HashGridConfig, NeRFConfig
    from consistent123.fields.nerf import NeRFField
    from consistent123.render.cameras import Camera
    from consistent123.render.volume import render_nerf

    torch.manual_seed(0)
    nerf = NeRFField(NeRFConfig(hidden_dim=8, num_steps=16, upsample_steps=0), HashGridConfig(num_levels=2))
    cam = Camera(polar=90.0, azimuth=0.0, radius=3.2, fovy=20.0)
    out = render_nerf(nerf, cam, 8, shading=("lambertian", 0.1, None), need_normals=True)
    image = out["normal_image"]
    assert image.shape == (8, 8, 3) and image.min() >= 0 and image.max() <= 1
    # sum w (n + 1) / 2 = (composited normals + opacity) / 2, the weights without their gradient
    torch.testing.assert_close(image, ((out["normals"] + out["opacity"]) / 2).detach(), atol=1e-6, rtol=0)
    assert image.requires_grad  # through the normals
