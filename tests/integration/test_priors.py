"""Pretrained parts: tiny models through the real loaders, both priors' SDS, CLIP, missing weights."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from consistent123.errors import ModelUnavailableError
from consistent123.priors import provenance, registry
from consistent123.priors.fetch import select_files
from consistent123.priors.standins import tiny
from consistent123.priors.standins.constants import MANIFEST
from consistent123.priors.zero123 import angle_grad_scale, load_camera_projection
from consistent123.render.cameras import Camera, orbit_position, zero123_embedding
from consistent123.testing import RF15
from tests.support.tiny_models import tiny_config, tiny_models_dir

REF = Camera(90.0, 0.0, 3.2, 20.0)


def _image(size: int, seed: int = 0) -> torch.Tensor:
    """A real input image (the ``seed``-th RealFusion15 case), [1,3,s,s] in [0,1]."""
    import numpy as np
    from PIL import Image

    candidates = sorted(RF15.glob("*_rgba.png"))
    assert candidates, f"no RealFusion15 images in {RF15}"
    img = Image.open(candidates[seed % len(candidates)]).convert("RGB").resize((size, size))
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def zero123():
    prior = registry.load_zero123(tiny_config(32), "cpu")
    prior.set_reference(_image(32), REF)
    return prior


@pytest.fixture(scope="module")
def stable_diffusion():
    prior = registry.load_stable_diffusion(tiny_config(32), "cpu")
    prior.set_prompt("a photo of a teddy bear")
    return prior


@pytest.fixture(scope="module")
def clip():
    return registry.load_clip_judge(tiny_config(), "cpu")


# ---------------------------------------------------------------- round trip
def test_tiny_models_load_through_the_registry():
    cfg = tiny_config()
    sources = registry.model_sources(cfg)
    for key in ("zero123", "stable_diffusion", "clip_judge", "clip_metric"):
        assert Path(sources[key]).is_dir() and Path(sources[key]).parent == tiny_models_dir()
    manifest = json.loads((tiny_models_dir() / MANIFEST).read_text())
    assert manifest["format"] == tiny.FORMAT_VERSION
    # the tiny Zero123 is laid out like the real diffusers repo
    z = Path(sources["zero123"])
    for part in ("unet", "vae", "image_encoder", "feature_extractor", "scheduler", "clip_camera_projection"):
        assert (z / part).is_dir(), part
    assert json.loads((z / "unet" / "config.json").read_text())["in_channels"] == 8
    assert registry.load_clip_metric(cfg, "cpu").name == sources["clip_metric"]


def test_loaded_models_say_whether_their_weights_are_random(zero123, stable_diffusion, clip, tmp_path):
    """Detected from the loaded folders (the tiny-models manifest), not from the config."""
    sources = registry.model_sources(tiny_config())
    for model, key in ((zero123, "zero123"), (stable_diffusion, "stable_diffusion"), (clip, "clip_judge")):
        assert model.origin == {"source": sources[key], "weights": "random"}
    record = provenance.loaded_models_record({"zero123": zero123, "stable_diffusion": None, "clip_judge": clip})
    assert record["priors"] == "random" and set(record["models"]) == {"zero123", "clip_judge"}
    assert record["tags"]["model.zero123"] == sources["zero123"] + " (random weights)"
    # A copy of a tiny model outside its manifest's folder, or a hub id, counts as pretrained.
    import shutil

    shutil.copytree(sources["clip_judge"], tmp_path / "clip")
    assert not provenance.is_random_weight(tmp_path / "clip")
    assert provenance.origin("ViT-B-16/openai") == {"source": "ViT-B-16/openai", "weights": "pretrained"}
    assert provenance.priors_kind([provenance.origin(str(tmp_path / "clip"))]) == "real"
    assert provenance.priors_kind([]) == "none"
    assert provenance.evaluation_kind("real", "random") == "random"
    assert provenance.evaluation_kind("unknown", "real") == "unknown"
    # MLflow params name the folders loaded, never the hub ids the config also holds.
    params = registry.params_naming_loaded_models(tiny_config())
    assert params["models"]["zero123"] == sources["zero123"] and params["eval"]["clip_model"] == sources["clip_metric"]


def test_vision_parts_load_through_the_registry():
    cfg = tiny_config()
    for load in (registry.load_captioner, registry.load_depth_estimator, registry.load_segmenter):
        assert load(cfg, "cpu") is not None


def test_camera_projection_dims_come_from_the_weights():
    linear = load_camera_projection(str(tiny_models_dir() / "zero123"))
    assert (linear.in_features, linear.out_features) == (tiny.TINY_DIM + 4, tiny.TINY_DIM)


def test_ensure_is_idempotent_and_safe_under_a_race(tmp_path, monkeypatch):
    calls = []
    real_build = tiny.build_tiny_models
    monkeypatch.setattr(tiny, "build_tiny_models", lambda root: calls.append(root) or real_build(root))
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(tiny.ensure_tiny_models(tmp_path / "m"))) for _ in range(2)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(calls) == 1 and results[0] == results[1]
    stamp = (tmp_path / "m" / MANIFEST).stat().st_mtime_ns
    assert tiny.ensure_tiny_models(tmp_path / "m") == results[0]
    assert len(calls) == 1 and (tmp_path / "m" / MANIFEST).stat().st_mtime_ns == stamp
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".") and p.is_dir()]  # no temp leftovers


def test_tiny_models_command(capsys):
    from consistent123.cli import main

    assert main(["tiny-models", str(tiny_models_dir())]) == 0
    out = capsys.readouterr().out
    assert f"zero123\t{tiny_models_dir() / 'zero123'}" in out


# ---------------------------------------------------------------- Zero-1-to-3
def test_zero123_sds_is_finite_and_reaches_the_image(zero123):
    rgb = _image(32, seed=1).repeat(2, 1, 1, 1).requires_grad_(True)
    cams = [Camera(90.0, 120.0, 3.2, 20.0), Camera(60.0, -45.0, 3.0, 25.0)]
    loss, info = zero123.sds(rgb, cams, (0.2, 0.6), torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0
    assert info["t"].min() >= 200 and info["t"].max() <= 600


def test_zero123_conditioning_matches_the_reference_recipe(zero123):
    """cond: cc_projection(CLIP(ref) ⊕ camera) + unscaled reference latent; uncond: both zeroed."""
    cams = [Camera(75.0, 90.0, 3.4, 20.0)]
    noisy, t = torch.randn(1, 4, 4, 4), torch.tensor([400])
    eps_u, eps_c = zero123.predict_noise(noisy, t, cams)
    ref = F.interpolate(_image(32), (32, 32))
    with torch.no_grad():
        ref_latent = zero123.vae.encode(ref * 2 - 1).latent_dist.mode()  # no scaling factor
        clip_in = F.interpolate(ref, zero123.clip_size, mode="bicubic", antialias=True)
        clip_in = (clip_in - zero123.clip_mean) / zero123.clip_std
        emb = zero123.image_encoder(pixel_values=clip_in).image_embeds[:, None]
        pose = zero123_embedding(cams[0], REF)[None, None]
        cond = zero123.cc_projection(torch.cat([emb, pose], -1))
        want_c = zero123.unet(torch.cat([noisy, ref_latent], 1), t, encoder_hidden_states=cond).sample
        want_u = zero123.unet(
            torch.cat([noisy, torch.zeros_like(ref_latent)], 1), t, encoder_hidden_states=torch.zeros_like(cond)
        ).sample
    torch.testing.assert_close(eps_c, want_c, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(eps_u, want_u, rtol=1e-4, atol=1e-5)
    # the camera really enters: another azimuth changes the conditional prediction
    other = zero123.predict_noise(noisy, t, [Camera(75.0, -90.0, 3.4, 20.0)])[1]
    assert not torch.allclose(other, eps_c)


def test_angle_grad_scale_follows_the_view_angle(zero123):
    cams = [REF, Camera(90.0, 90.0, 3.2, 20.0), Camera(90.0, 180.0, 3.0, 20.0), Camera(30.0, 0.0, 3.2, 20.0)]
    torch.testing.assert_close(angle_grad_scale(cams, REF), torch.tensor([0.0, 0.5, 1.0, 60.0 / 180.0]))
    a, b = orbit_position(60.0, 40.0, 1.0), orbit_position(REF.polar, REF.azimuth, 1.0)
    cos = float(torch.dot(a, b))
    assert angle_grad_scale([Camera(60.0, 40.0, 3.3, 20.0)], REF).item() == pytest.approx(
        torch.rad2deg(torch.arccos(torch.tensor(cos))).item() / 180.0, abs=1e-5
    )
    # at the reference view the 3D prior pushes nothing; "none" switches the scaling off
    rgb = _image(32, seed=2).repeat(2, 1, 1, 1).requires_grad_(True)
    zero123.sds(rgb, [REF, cams[2]], (0.2, 0.6), torch.Generator().manual_seed(0))[0].backward()
    assert rgb.grad[0].abs().sum() == 0 and rgb.grad[1].abs().sum() > 0
    zero123.grad_scale_mode = "none"
    try:
        rgb.grad = None
        zero123.sds(rgb, [REF, cams[2]], (0.2, 0.6), torch.Generator().manual_seed(0))[0].backward()
        assert rgb.grad[0].abs().sum() > 0
    finally:
        zero123.grad_scale_mode = "angle"


# ---------------------------------------------------------------- Stable Diffusion
def test_stable_diffusion_sds_is_finite_and_reaches_the_image(stable_diffusion):
    rgb = _image(32, seed=3).requires_grad_(True)
    loss, info = stable_diffusion.sds(rgb, [REF], (0.2, 0.5), torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0
    assert 200 <= int(info["t"]) <= 500


def test_stable_diffusion_guidance_uses_negative_and_prompt(stable_diffusion):
    noisy, t = torch.randn(1, 4, 4, 4), torch.tensor([300])
    eps_u, eps_c = stable_diffusion.predict_noise(noisy, t, [REF])  # azimuth 0: the front-view prompt
    neg, pos = stable_diffusion.encode_text(["", "a photo of a teddy bear, front view"]).chunk(2)
    with torch.no_grad():
        torch.testing.assert_close(
            eps_u, stable_diffusion.unet(noisy, t, encoder_hidden_states=neg).sample, rtol=1e-4, atol=1e-5
        )
        torch.testing.assert_close(
            eps_c, stable_diffusion.unet(noisy, t, encoder_hidden_states=pos).sample, rtol=1e-4, atol=1e-5
        )
    assert not torch.allclose(eps_u, eps_c)


# ---------------------------------------------------------------- CLIP
def test_clip_similarity_self_is_one_and_symmetric(clip):
    a = torch.cat([_image(48, seed=s) for s in range(3)])
    b = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(clip.image_similarity(a, a), torch.ones(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(clip.image_similarity(a, b), clip.image_similarity(b, a))
    assert (clip.image_similarity(a, b) < 1 - 1e-4).all()
    sims = clip.text_similarity(a, "a teddy bear")
    assert sims.shape == (3,) and (sims.abs() <= 1 + 1e-5).all()
    emb = clip.encode_images(a)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))


# ---------------------------------------------------------------- missing weights
@pytest.fixture
def offline(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    from consistent123.config import Config

    cfg = Config()
    cfg.models.cache_dir = str(tmp_path / "empty-cache")
    return cfg


@pytest.mark.parametrize(
    "key,value,load",
    [
        ("zero123", "/nonexistent/zero123-weights", registry.load_zero123),
        ("zero123", "nobody-c123/no-such-zero123", registry.load_zero123),
        ("stable_diffusion", "nobody-c123/no-such-sd", registry.load_stable_diffusion),
        ("clip_judge", "hf-hub:nobody-c123/no-such-clip", registry.load_clip_judge),
        ("clip_judge", "ViT-B-16/openai", registry.load_clip_judge),
    ],
)
def test_missing_weights_give_one_clear_error(offline, key, value, load):
    setattr(offline.models, key, value)
    with pytest.raises(ModelUnavailableError) as err:
        load(offline, "cpu")
    msg = str(err.value)
    assert value in msg and "consistent123 fetch-models" in msg and "\n" not in msg


def test_fetch_models_offline_gives_the_same_error(offline, capsys):
    from consistent123.commands import fetch_models

    offline.models.zero123 = "nobody-c123/no-such-zero123"
    with pytest.raises(ModelUnavailableError, match="no-such-zero123.*fetch-models"):
        fetch_models.run(type("Args", (), {"only": ["zero123"]})(), offline)


def test_fetch_selects_one_weights_format_per_folder():
    files = [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/pytorch_model.bin",
        "tokenizer/vocab.json",
        "v2-1_512-ema-pruned.ckpt",
        "v2-1_512-ema-pruned.safetensors",
        "README.md",
    ]
    assert select_files(files) == [
        "model_index.json",
        "text_encoder/pytorch_model.bin",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in select_files(files, variant="fp16")
    # a transformers repo keeps its weights at the root
    assert select_files(["config.json", "model.safetensors", "pytorch_model.bin"]) == [
        "config.json",
        "model.safetensors",
    ]


def test_stable_diffusion_prompt_interpolates_front_side_back_by_azimuth(stable_diffusion):
    """R train_step: front at 0, side at +-90, back at 180, linear in |azimuth| in between."""
    front, side, back = stable_diffusion.encode_text(
        [f"a photo of a teddy bear, {v} view" for v in ("front", "side", "back")]
    )
    expected = {
        0.0: front,
        45.0: 0.5 * front + 0.5 * side,
        90.0: side,
        135.0: 0.5 * side + 0.5 * back,
        180.0: back,
        -90.0: side,
        -45.0: 0.5 * front + 0.5 * side,
        -135.0: 0.5 * side + 0.5 * back,
    }
    got = stable_diffusion.view_embeddings([Camera(90.0, a, 3.2, 20.0) for a in expected])
    for (azimuth, want), have in zip(expected.items(), got):
        torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-6, msg=f"azimuth {azimuth}")
    assert not torch.allclose(front, back)  # the three prompts really differ


def test_zero123_timestep_is_t_max_in_fixed_mode(zero123):
    from consistent123.config import Config
    from consistent123.training.schedule import plan

    cfg = Config()
    for t, t_max in ((1, 600), (cfg.train.nerf_iters + 1, 500)):  # NeRF run, mesh run
        it = plan(t, cfg, None)
        for seed in range(3):
            _, info = zero123.sds(
                _image(32), [Camera(80.0, 40.0 + seed, 3.2, 20.0)], it.t_range_3d, torch.Generator().manual_seed(seed)
            )
            assert int(info["t"]) == t_max
    uniform = plan(1, cfg.model_copy(update={"sds": cfg.sds.model_copy(update={"zero123_timestep": "uniform"})}), None)
    seen = {
        int(
            zero123.sds(
                _image(32), [Camera(80.0, 40.0, 3.2, 20.0)], uniform.t_range_3d, torch.Generator().manual_seed(s)
            )[1]["t"]
        )
        for s in range(8)
    }
    assert len(seen) > 1 and all(200 <= v <= 600 for v in seen)


def test_v_prediction_scheduler_is_refused_with_one_line(tmp_path):
    import shutil

    from consistent123.errors import ConfigError
    from consistent123.priors.stable_diffusion import StableDiffusionPrior

    source = Path(registry.model_sources(tiny_config())["stable_diffusion"])
    copy = tmp_path / "sd-v"
    shutil.copytree(source, copy)
    config_path = copy / "scheduler" / "scheduler_config.json"
    data = json.loads(config_path.read_text())
    data["prediction_type"] = "v_prediction"
    config_path.write_text(json.dumps(data))
    cfg = tiny_config(32)
    with pytest.raises(ConfigError) as err:
        StableDiffusionPrior.from_config(cfg, "cpu", source=str(copy))
    message = str(err.value)
    assert "\n" not in message and "v_prediction" in message and "epsilon" in message
