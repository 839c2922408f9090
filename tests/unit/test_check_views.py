"""The boundary judgement's check images as R makes them: large render, 8 bits, area resize."""

from contextlib import nullcontext

import numpy as np
import pytest
import torch

from consistent123.config import Config
from consistent123.render.cameras import Camera
from consistent123.render.volume import render_nerf
from consistent123.training.check_views import (
    area_resize,
    check_image,
    check_images,
    clip_precision,
    render_in_bands,
)


def _boundary(**update):
    return Config().boundary.model_copy(update=update)


def test_area_resize_averages_the_pixels_each_output_pixel_covers():
    rng = np.random.default_rng(0)
    image = rng.random((8, 8, 3)).astype(np.float32)
    blocks = image.reshape(4, 2, 4, 2, 3).mean((1, 3))
    assert np.allclose(area_resize(image, 4), blocks, atol=1e-6)
    # a non-integer factor (R: 800 -> 128) still keeps the mean of the image
    big = rng.random((50, 50, 3)).astype(np.float32)
    assert np.allclose(area_resize(big, 8).mean((0, 1)), big.mean((0, 1)), atol=2e-3)


def test_an_8_bit_image_is_resized_to_whole_values_as_cv2_returns_them():
    image = np.array([[[0], [1]], [[1], [1]]], dtype=np.uint8).repeat(3, -1)  # mean 0.75
    out = area_resize(image, 1)
    assert out.dtype == np.float32 and out.reshape(-1).tolist() == [1.0, 1.0, 1.0]


def test_the_check_image_truncates_to_8_bits_like_rs_png_and_keeps_floats_without():
    rgb = torch.full((4, 4, 3), 0.999)
    assert torch.allclose(check_image(rgb, _boundary(check_render_size=2)), torch.full((3, 2, 2), 254 / 255))
    kept = check_image(rgb, _boundary(check_render_size=2, check_quantise=False))
    assert torch.allclose(kept, torch.full((3, 2, 2), 0.999))


def test_a_nerf_view_rendered_in_bands_is_the_view_rendered_whole():
    from consistent123.fields.nerf import NeRFField

    cfg = Config()
    torch.manual_seed(0)
    hg = cfg.hashgrid.model_copy(update=dict(num_levels=4, log2_hashmap_size=10, backend="torch"))
    nerf = NeRFField(cfg.nerf.model_copy(update=dict(num_steps=16, upsample_steps=8)), hg)
    cam = Camera(80.0, 30.0, 3.2, 20.0)

    def render_band(cam, size, rows):
        return render_nerf(nerf, cam, size, size, bg_color=torch.ones(3), perturb=False, rows=rows)["rgb"]

    whole = render_band(cam, 20, None)
    banded = render_in_bands(render_band, cam, 20, band_rows=7)  # 7 + 7 + 6 rows
    assert banded.shape == whole.shape == (20, 20, 3)
    assert torch.allclose(banded, whole, atol=1e-5)
    assert whole.std() > 0  # the blob is in view: the test compares pictures, not two blanks


def test_check_images_render_each_camera_at_the_source_size_and_hand_clip_the_small_size():
    sizes = []

    def render_band(cam, size, rows):
        sizes.append((size, rows))
        return torch.full((size if rows is None else rows[1] - rows[0], size, 3), 0.5)

    cams = [Camera(90.0, a, 3.2, 20.0) for a in (0.0, 90.0)]
    images = check_images(render_band, cams, _boundary(check_source_size=40, check_render_size=16, check_band_rows=25))
    assert images.shape == (2, 3, 16, 16)
    assert sizes == [(40, (0, 25)), (40, (25, 40))] * 2
    assert torch.allclose(images, torch.full_like(images, 127 / 255))  # 0.5 * 255 truncated
    sizes.clear()
    check_images(render_band, cams[:1], _boundary(check_source_size=None, check_render_size=16))
    assert sizes == [(16, None)]


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_clip_runs_in_fp16_only_on_cuda():
    assert isinstance(clip_precision(_boundary(), torch.device("cpu")), nullcontext)
    assert not isinstance(clip_precision(_boundary(), torch.device("cuda")), nullcontext)
    assert isinstance(clip_precision(_boundary(clip_fp16=False), torch.device("cuda")), nullcontext)
