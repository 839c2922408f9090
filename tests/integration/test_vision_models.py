"""Tiny captioner / depth / segmenter: built with the real classes, saved like the hub repos, loaded back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from consistent123.errors import ConfigError, ModelUnavailableError
from consistent123.priors.standins.vision import build_tiny_vision_models
from consistent123.priors.vision import (
    Captioner,
    DepthEstimator,
    Segmenter,
    load_captioner,
    load_depth_estimator,
    load_segmenter,
)
from consistent123.testing import C10


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_tiny_vision_models(tmp_path_factory.mktemp("tiny"))
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def photo():
    return Image.open(C10 / "avatar.jpg").convert("RGB")  # real, non-square (564x705)


def test_saved_in_hub_format(built):
    assert set(built) == {"captioner", "depth", "segmenter"}
    for key, folder in built.items():
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "model.safetensors"} <= names, (key, names)
        assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)  # nothing to unpickle
        assert names & {"preprocessor_config.json", "processor_config.json"}
        size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        assert size_mb < 5, (key, size_mb)
    assert json.loads((built["segmenter"] / "config.json").read_text())["model_type"] == "clipseg"
    assert json.loads((built["depth"] / "config.json").read_text())["model_type"] == "dpt"
    assert json.loads((built["captioner"] / "config.json").read_text())["model_type"] == "blip"


def test_build_is_seeded(built, tmp_path):
    again = build_tiny_vision_models(tmp_path)
    for key in built:
        a, b = load_file(built[key] / "model.safetensors"), load_file(again[key] / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), key
    other = build_tiny_vision_models(tmp_path / "other", seed=1)
    a, b = load_file(built["depth"] / "model.safetensors"), load_file(other["depth"] / "model.safetensors")
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_captioner_round_trip(built, photo):
    captioner = load_captioner(str(built["captioner"]), "cpu")
    assert isinstance(captioner, Captioner)
    caption = captioner(photo)
    assert isinstance(caption, str) and caption.strip() and "\n" not in caption
    assert "[" not in caption  # special tokens are stripped


def test_depth_round_trip(built, photo):
    estimator = load_depth_estimator(str(built["depth"]), "cpu")
    assert isinstance(estimator, DepthEstimator) and not estimator.metric
    depth = estimator(photo)
    assert depth.dtype == np.float32 and depth.shape == (photo.height, photo.width)
    assert np.isfinite(depth).all() and np.ptp(depth) > 0


def test_segmenter_round_trip(built, photo):
    segmenter = load_segmenter(str(built["segmenter"]), "cpu")
    assert isinstance(segmenter, Segmenter)
    long_prompt = "a very long caption " * 40  # beyond CLIP's 77-token window: truncated, not an error
    for prompt in (None, "a woman", long_prompt):
        prob = segmenter(photo, prompt=prompt)
        assert prob.dtype == np.float32 and prob.shape == (photo.height, photo.width)
        assert prob.min() >= 0.0 and prob.max() <= 1.0 and np.ptp(prob) > 0


def test_missing_weights_are_one_clear_error(tmp_path):
    for loader, key in (
        (load_captioner, "models.captioner"),
        (load_depth_estimator, "models.depth"),
        (load_segmenter, "models.segmenter"),
    ):
        with pytest.raises(ModelUnavailableError) as info:
            loader(str(tmp_path / "nowhere"), "cpu")
        message = str(info.value)
        assert "\n" not in message and key in message and "fetch-models" in message


def test_segmenter_refuses_remote_code_models():
    with pytest.raises(ConfigError, match="remote code"):
        load_segmenter("briaai/RMBG-1.4", "cpu")


def test_segmenter_refuses_other_architectures(built):
    with pytest.raises(ConfigError, match="clipseg"):
        load_segmenter(str(built["depth"]), "cpu")
