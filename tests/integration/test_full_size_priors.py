"""Full-size random priors: the real architectures, counted on the meta device (no memory, ~10 s)."""

from __future__ import annotations

import pytest
import torch

from consistent123.config import Config
from consistent123.priors.clip import ClipModel
from consistent123.priors.stable_diffusion import StableDiffusionPrior
from consistent123.priors.standins.full_size import PUBLISHED_PARAMS, load_full_size_priors, parameter_counts
from consistent123.priors.zero123 import Zero123Prior


@pytest.fixture(scope="module")
def meta_priors():
    return load_full_size_priors(Config(), torch.device("meta"))


def test_parameter_counts_equal_the_published_ones(meta_priors):
    counts = parameter_counts(meta_priors)
    for part, published in PUBLISHED_PARAMS.items():
        assert counts[part] == published, part
    # The towers whose model cards give them: OpenCLIP-H text (SD 2.x), CLIP ViT-L/14 vision +
    # projection, the 772 -> 768 camera projection, OpenAI CLIP ViT-B/16 (both towers).
    assert counts["sd_text_encoder"] == 340_387_840
    assert counts["zero123_image_encoder"] == 303_966_208
    assert counts["zero123_cc_projection"] == 772 * 768 + 768
    assert counts["clip_judge"] == 149_620_737


def test_loaded_through_the_real_prior_classes(meta_priors):
    assert isinstance(meta_priors.zero123, Zero123Prior)
    assert isinstance(meta_priors.stable_diffusion, StableDiffusionPrior)
    assert isinstance(meta_priors.clip_judge, ClipModel)
    z, sd = meta_priors.zero123, meta_priors.stable_diffusion
    assert z.unet.config.in_channels == 8 and z.cc_projection.in_features == 772
    assert z.clip_size == (224, 224) and z.resolution == 256 and sd.resolution == 512
    assert sd.unet.config.cross_attention_dim == sd.text_encoder.config.hidden_size == 1024
    assert len(sd.tokenizer) == 49408  # CLIP's full BPE vocabulary, rebuilt offline
    assert next(z.unet.parameters()).device.type == "meta"


def test_cli_prints_each_part(capsys):
    from consistent123.cli import main

    assert main(["tiny-models", "unused", "--size", "full"]) == 0
    lines = dict(line.split()[1:] for line in capsys.readouterr().out.splitlines() if line.startswith("params "))
    assert int(lines["sd_unet"]) == 865_910_724 and int(lines["zero123_unet"]) == 859_532_484
    assert set(lines) >= {
        "sd_unet",
        "sd_vae",
        "sd_text_encoder",
        "zero123_unet",
        "zero123_vae",
        "zero123_image_encoder",
        "clip_judge",
    }
