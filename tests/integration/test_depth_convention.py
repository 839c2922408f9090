"""depth.png holds depth (larger = farther), whether it comes from a file or an estimator."""

import numpy as np
from PIL import Image

from consistent123.case import load_case
from consistent123.config import Config
from consistent123.preprocess.pipeline import preprocess_image
from consistent123.testing import C10, RF15


def _bump_disparity(image):
    """A disparity map (larger = nearer) of a dome facing the camera: nearest at the centre."""
    w, h = image.size
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    return np.clip(1.0 - r2, 0.0, 1.0).astype(np.float32)


def test_published_depth_is_far_at_the_rim_of_a_bulging_object():
    depth = np.asarray(Image.open(RF15 / "colorful_teapot_depth.png").convert("L"), dtype=float)
    inside = depth > 0
    cy, cx = (np.argwhere(inside).mean(0)).astype(int)
    centre = depth[cy - 10 : cy + 10, cx - 10 : cx + 10].mean()
    assert centre < np.percentile(depth[inside], 50)


def test_estimated_depth_is_stored_far_larger(tmp_path):
    out = tmp_path / "case"
    preprocess_image(
        RF15 / "colorful_teapot_rgba.png", out, Config(), caption="a teapot", models={"depth": _bump_disparity}
    )
    case = load_case(out)
    depth = case.depth[0].numpy()
    mask = case.rgba[3].numpy() > 0.5
    cy, cx = np.argwhere(mask).mean(0).astype(int)
    assert depth[cy - 5 : cy + 5, cx - 5 : cx + 5].mean() < np.percentile(depth[mask], 25)


def test_depth_model_input_size_follows_the_config(tmp_path):
    from consistent123.priors.standins.vision import build_tiny_vision_models
    from consistent123.priors.vision import load_depth_estimator

    folder = build_tiny_vision_models(tmp_path)["depth"]
    image = Image.open(C10 / "29.jpg")
    for size in (64, 96):
        est = load_depth_estimator(str(folder), "cpu", input_size=size)
        assert est.processor(images=image, return_tensors="pt", **est.resize).pixel_values.shape[-2:] == (size, size)
        assert est(image).shape == (image.height, image.width)
