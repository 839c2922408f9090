"""The oracle prior and the known-answer ground truth: exact answers, no trained model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from consistent123.config import load_config
from consistent123.experiments.known_answer import Z_UP_TO_Y_UP, prepare_ground_truth, render_case
from consistent123.priors.oracle import (
    GroundTruth,
    OraclePrior,
    camera_from_pose,
    ideal_noise,
    mesh_vertex_colours,
    noise_levels,
    predicted_x0,
)
from consistent123.priors.sds import add_noise
from consistent123.render.cameras import Camera, camera_to_world, zero123_embedding

REPO = Path(__file__).resolve().parents[2]
PANDA = REPO / "datasets" / "known_answer" / "Android_Figure_Panda.ply"
REF = Camera(90.0, 0.0, 3.2, 20.0)


@pytest.fixture(scope="module")
def cfg():
    return load_config(None, ["sds.zero123_resolution=32", "sds.sd_resolution=32"])


@pytest.fixture(scope="module")
def truth(cfg):
    gt = prepare_ground_truth(trimesh.load(PANDA, process=False), "z", cfg.oracle)
    return GroundTruth(
        torch.as_tensor(np.asarray(gt.vertices), dtype=torch.float32),
        torch.as_tensor(np.asarray(gt.faces)),
        torch.as_tensor(mesh_vertex_colours(gt)),
        "cpu",
    )


def _random_camera(gen: np.random.Generator, fovy: float) -> Camera:
    return Camera(float(gen.uniform(5, 175)), float(gen.uniform(-180, 180)), float(gen.uniform(2.5, 4.0)), fovy)


def test_ideal_noise_denoises_to_the_ground_truth(cfg, truth):
    ab = noise_levels(cfg.oracle, cfg.sds.num_train_timesteps)
    target = truth.render([Camera(70.0, 130.0, 3.3, 20.0)], 32) * 2 - 1
    x = torch.rand_like(target) * 2 - 1  # any current render
    for step in (1, 200, 600, 999):
        t = torch.tensor([step])
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(step))
        noisy = add_noise(x, noise, t, ab)
        x0 = predicted_x0(noisy, ideal_noise(noisy, target, t, ab), t, ab)
        torch.testing.assert_close(x0, target, atol=2e-4, rtol=0)


def test_noise_levels_are_stable_diffusions(cfg):
    ab = noise_levels(cfg.oracle, 1000)
    # scaled_linear 0.00085 -> 0.012 (SD 2.1-base / zero123-xl scheduler_config.json)
    assert ab.shape == (1000,)
    assert abs(float(ab[0]) - (1 - 0.00085)) < 1e-6
    assert 0.004 < float(ab[-1]) < 0.006


def test_camera_rebuilt_from_the_relative_pose_is_the_novel_camera():
    gen = np.random.default_rng(0)
    for _ in range(50):
        ref = _random_camera(gen, 20.0)
        cam = _random_camera(gen, ref.fovy)
        rebuilt = camera_from_pose(zero123_embedding(cam, ref), ref)
        torch.testing.assert_close(camera_to_world(rebuilt), camera_to_world(cam), atol=1e-4, rtol=0)
        assert rebuilt.fovy == ref.fovy
        wrong = camera_from_pose(zero123_embedding(cam, ref), ref, flip_azimuth=True)
        d_az = (cam.azimuth - ref.azimuth) % 360.0
        if 5.0 < d_az < 175.0 or 185.0 < d_az < 355.0:
            assert (camera_to_world(wrong) - camera_to_world(cam)).abs().max() > 1e-2


def _gradient(prior, rgb, cams):
    rgb = rgb.clone().requires_grad_(True)
    loss, info = prior.sds(rgb, cams, (0.2, 0.6), torch.Generator().manual_seed(3))
    loss.backward()
    return rgb.grad, info


@pytest.mark.parametrize("role", ["3d", "2d"])
def test_sds_pulls_towards_the_truth_seen_from_the_novel_camera(cfg, truth, role):
    prior = OraclePrior(truth, cfg, role, "cpu")
    prior.set_reference(torch.ones(1, 3, 32, 32), REF)
    cam = Camera(60.0, -110.0, 3.4, 20.0)
    exact = truth.render([cam], 32)
    grad, info = _gradient(prior, exact, [cam])
    torch.testing.assert_close(info["target"], exact * 2 - 1)
    assert grad.abs().max() < 1e-3  # the truth itself: nothing to change
    rgb = torch.full_like(exact, 0.5)
    grad, info = _gradient(prior, rgb, [cam])
    ab = float(prior.alphas_cumprod[info["t"][0]])
    scale = float(info["grad_scale"][0]) if "grad_scale" in info else 1.0
    # d loss / d rgb = 2 * w(t) * sqrt(ab) / sqrt(1 - ab) * (x - x_gt) * scale, x = 2 rgb - 1
    expected = 2 * np.sqrt(ab * (1 - ab)) * scale * ((rgb * 2 - 1) - (exact * 2 - 1))
    torch.testing.assert_close(grad, expected, atol=1e-4, rtol=1e-3)


def test_wrong_azimuth_sign_renders_the_truth_from_elsewhere(cfg, truth):
    prior = OraclePrior(
        truth, cfg.model_copy(update={"oracle": cfg.oracle.model_copy(update={"flip_azimuth": True})}), "3d", "cpu"
    )
    prior.set_reference(torch.ones(1, 3, 32, 32), REF)
    cam = Camera(80.0, 90.0, 3.2, 20.0)
    _, info = _gradient(prior, truth.render([cam], 32), [cam])
    assert (info["target"] - (truth.render([cam], 32) * 2 - 1)).abs().mean() > 0.05
    torch.testing.assert_close(info["target"], truth.render([Camera(80.0, -90.0, 3.2, 20.0)], 32) * 2 - 1)


def test_ground_truth_is_normalised_turned_up_and_coloured(cfg):
    source = trimesh.load(PANDA, process=False)
    gt = prepare_ground_truth(source, "z", cfg.oracle)
    lo, hi = gt.bounds
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-6)
    assert abs(float((hi - lo).max()) - cfg.oracle.object_size) < 1e-6
    # GSO panda: tallest along z (0.076 m) -> the scene's +y
    assert int(np.argmax(hi - lo)) == 1
    np.testing.assert_allclose(Z_UP_TO_Y_UP[:3, :3] @ [0, 0, 1], [0, 1, 0])
    colours = mesh_vertex_colours(gt)
    assert colours.shape == (len(gt.vertices), 3) and colours.std(0).min() > 0.05


def test_reference_case_follows_the_preprocess_conventions(cfg, tmp_path):
    from consistent123.case import load_case

    gt = prepare_ground_truth(trimesh.load(PANDA, process=False), "z", cfg.oracle)
    small = cfg.model_copy(update={"preprocess": cfg.preprocess.model_copy(update={"size": 64})})
    case = load_case(render_case(gt, tmp_path / "panda", small, "a panda"))
    mask = case.rgba[3] > 0.5
    assert 0.15 < float(mask.float().mean()) < 0.6 and case.caption == "a panda"
    inside = case.depth[0][mask]
    assert float(inside.min()) == 0.0 and float(inside.max()) == 1.0 and float(case.depth[0][~mask].max()) == 0.0
    reread = trimesh.load(tmp_path / "panda" / "ground_truth.ply", process=False)
    np.testing.assert_allclose(mesh_vertex_colours(reread), mesh_vertex_colours(gt), atol=1 / 255)


def test_known_answer_rejects_a_missing_mesh_in_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "consistent123.cli",
            "known-answer",
            str(tmp_path / "nope.ply"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope.ply: mesh file not found" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_known_answer_scans_match_their_checksums():
    import hashlib

    folder = PANDA.parent
    listed = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert sorted(listed) == sorted(p.name for p in folder.glob("*.ply"))
    for name, digest in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
