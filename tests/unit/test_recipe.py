"""The authors' training recipe, row by row (spec §2-§4, §7), and the one plan per iteration.

Expected values are written out from the spec's formulas, not read back from the code.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from consistent123.config import Config, load_config
from consistent123.fields.common import active_levels
from consistent123.training.schedule import draw_novel_view, draw_reference_view, plan, run_plan

CFG = Config()


# ---------------------------------------------------------------- progressive view range and level
@pytest.mark.parametrize(
    "t, r_v, max_level",
    [
        (0, 0.2, 0.25),  # p = 0
        (500, 0.4, 0.45),  # p = 0.1: 0.2 + 0.2, 0.25 + 0.2
        (2000, 1.0, 1.0),  # p = 0.4: both saturate
    ],
)
def test_camera_ranges_and_max_level_follow_the_spec(t, r_v, max_level):
    it = plan(t, CFG, None)
    assert it.phase == "nerf" and it.progress == pytest.approx(t / 5000)
    ranges = it.camera_ranges
    # ref (polar 90, azimuth 0, radius 3.2, fovy 20) * (1 - r_v) + full range * r_v
    assert ranges.polar_range == pytest.approx((90 * (1 - r_v) + 45 * r_v, 90 * (1 - r_v) + 105 * r_v))
    assert ranges.azimuth_range == pytest.approx((-180 * r_v, 180 * r_v))
    assert ranges.radius_range == pytest.approx((3.2 * (1 - r_v) + 3.0 * r_v, 3.2 * (1 - r_v) + 3.5 * r_v))
    assert ranges.fovy_range == pytest.approx((20.0, 20.0))  # fixed fov with Zero-1-to-3
    assert it.max_level == pytest.approx(max_level)


def test_explicit_ranges_at_iteration_zero():
    ranges = plan(0, CFG, None).camera_ranges
    assert ranges.polar_range == pytest.approx((81.0, 93.0))
    assert ranges.azimuth_range == pytest.approx((-36.0, 36.0))
    assert ranges.radius_range == pytest.approx((3.16, 3.26))
    assert active_levels(0.25, 16) == 4 and active_levels(0.45, 16) == 8 and active_levels(1.0, 16) == 16


def test_mesh_run_restarts_the_level_and_samples_the_full_range():
    it = plan(CFG.train.nerf_iters, CFG, None)
    assert it.phase == "mesh" and it.phase_iteration == 0
    assert it.max_level == pytest.approx(0.25)  # R keeps progressive_level in the mesh run, p restarts
    assert it.camera_ranges.polar_range == (45.0, 105.0)  # R's mesh run turns progressive_view off
    assert it.camera_ranges.azimuth_range == (-180.0, 180.0)


def test_level_mask_zeroes_the_finer_levels():
    from consistent123.config import HashGridConfig, NeRFConfig
    from consistent123.fields.nerf import NeRFField

    torch.manual_seed(0)
    field = NeRFField(NeRFConfig(), HashGridConfig(num_levels=8, log2_hashmap_size=10, backend="torch"))
    with torch.no_grad():
        field.encoder.impl.table.uniform_(-1, 1)
    x = torch.rand(16, 3) * 2 - 1
    full = field.encode(x)
    field.set_max_level(0.25)  # 2 of 8 levels, 2 features each
    part = field.encode(x)
    torch.testing.assert_close(part[:, :4], full[:, :4])
    assert (part[:, 4:] == 0).all() and (full[:, 4:] != 0).any()


# ---------------------------------------------------------------- timesteps, ramps
def test_timestep_ranges_per_prior_and_phase():
    nerf, mesh = plan(1, CFG, None), plan(CFG.train.nerf_iters + 1, CFG, None)
    assert nerf.t_range_3d == (0.6, 0.6) and mesh.t_range_3d == (0.5, 0.5)  # Zero-1-to-3: t = t_max
    assert nerf.t_range_2d == (0.2, 0.6) and mesh.t_range_2d == (0.2, 0.5)  # Stable Diffusion: uniform


def test_entropy_ramp_is_min_one_two_p():
    for t, expected in ((0, 0.0), (500, 0.2), (1250, 0.5), (2500, 1.0), (4999, 1.0)):
        assert plan(t, CFG, None).lambda_entropy == pytest.approx(1.0 * min(1.0, 2 * t / 5000))
        assert plan(t, CFG, None).lambda_entropy == pytest.approx(expected)
    assert plan(CFG.train.nerf_iters + 10, CFG, None).lambda_entropy == 0.0  # no volume in the mesh


def test_regulariser_weights_are_the_authors():
    loss = CFG.loss
    assert (loss.lambda_entropy, loss.lambda_orient, loss.lambda_normal_smooth_3d) == (1.0, 1.0, 20.0)
    assert loss.normal_perturb == 0.01


# ---------------------------------------------------------------- draws
def test_novel_view_shading_and_background_frequencies():
    it = plan(4999, CFG, None)
    gen = torch.Generator().manual_seed(0)
    n = 10_000
    modes, ambients, backgrounds = [], [], []
    for _ in range(n):
        draw = draw_novel_view(it, CFG, gen)
        modes.append(draw.shading[0])
        ambients.append(draw.shading[1])
        backgrounds.append(draw.background)
    assert modes.count("lambertian") / n == pytest.approx(0.8, abs=0.02)
    assert modes.count("textureless") / n == pytest.approx(0.2, abs=0.02)
    assert "albedo" not in modes
    amb = torch.tensor(ambients)
    assert amb.min() >= 0.1 and amb.max() <= 1.0 and float((amb < 0.55).float().mean()) == pytest.approx(0.5, abs=0.02)
    bg = torch.stack(backgrounds)
    assert bg.shape == (n, 3)  # one solid colour per view
    for lo, hi in ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)):  # uniform per channel
        frac = ((bg >= lo) & (bg < hi)).float().mean(0)
        torch.testing.assert_close(frac, torch.full((3,), 0.25), atol=0.02, rtol=0)
    white = CFG.model_copy(update={"nerf": CFG.nerf.model_copy(update={"novel_background": "white"})})
    assert torch.equal(draw_novel_view(it, white, gen).background, torch.ones(3))


def test_reference_view_draw():
    gen = torch.Generator().manual_seed(0)
    draw = draw_reference_view(plan(0, CFG, None), CFG, gen, 96)
    assert draw.shading[:2] == ("lambertian", 1.0)  # normals exist, colour = albedo
    assert draw.background.shape == (96, 96, 3)  # one random colour per pixel
    assert float(draw.background.std()) > 0.2
    o, d = draw.ray_noise
    assert 0 < float(o.abs().max()) < 0.02 and 0 < float(d.abs().max()) < 0.02  # 2e-3 * N(0, 1)
    assert draw_reference_view(plan(CFG.train.nerf_iters, CFG, None), CFG, gen, 96).ray_noise is None  # mesh


def test_whole_run_plan_without_rendering():
    cfg = load_config(None, ["train.nerf_iters=40", "train.mesh_iters=20"])
    rows = run_plan(cfg, t_switch=24)
    assert len(rows) == 60
    assert [r.view for r in rows[:8]] == ["reference", "novel", "novel", "novel"] * 2
    assert {r.phase for r in rows[:40]} == {"nerf"} and {r.phase for r in rows[40:]} == {"mesh"}
    assert all(r.stage == 1 for r in rows[:24]) and all(r.stage == 2 for r in rows[24:])
    w2d = [r.w2d for r in rows[24:]]
    assert w2d == sorted(w2d) and w2d[-1] > 0.6
    assert rows[40].max_level == pytest.approx(0.25) and rows[39].max_level == 1.0


# ---------------------------------------------------------------- optimiser
def test_adan_at_five_lr_with_grid_at_ten_times():
    from timm.optim import Adan

    from consistent123.config import HashGridConfig
    from consistent123.fields.nerf import NeRFField
    from consistent123.training.trainer import make_optimizer

    field = NeRFField(CFG.nerf, HashGridConfig(num_levels=4, log2_hashmap_size=10, backend="torch"))
    opt = make_optimizer(field, CFG.train)
    assert isinstance(opt, Adan)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([5e-2, 5e-3])
    assert all(g["weight_decay"] == 2e-5 and g["eps"] == 1e-8 for g in opt.param_groups)
    adam = make_optimizer(field, CFG.train.model_copy(update={"optimizer": "adam"}))
    assert isinstance(adam, torch.optim.Adam) and [g["lr"] for g in adam.param_groups] == pytest.approx([1e-2, 1e-3])


def test_mesh_phase_grid_at_ten_times():
    from consistent123.fields.dmtet import DMTetField

    dm = CFG.dmtet.model_copy(update={"tet_grid_size": 8})
    field = DMTetField(
        dm, CFG.hashgrid.model_copy(update={"num_levels": 2, "log2_hashmap_size": 8, "backend": "torch"}), 1.0
    )
    groups = field.param_groups(5e-3, CFG.train.encoder_lr_scale)
    assert [g["lr"] for g in groups] == pytest.approx([5e-2, 5e-3])
    ids = {id(p) for p in groups[1]["params"]}
    assert id(field.sdf) in ids and id(field.deform) in ids


def test_adan_step_clips_the_global_gradient_norm_at_five():
    from timm.optim import Adan

    from consistent123.training.trainer import optimizer_step

    a = [torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(3))]
    b = [torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(3))]
    grads = [torch.full((4,), 30.0), torch.full((3,), -40.0)]  # global norm sqrt(3600 + 4800) ~ 91.7
    opt_a = Adan([{"params": a, "lr": 0.1}], eps=1e-8, weight_decay=2e-5)
    opt_b = Adan([{"params": b, "lr": 0.1}], eps=1e-8, weight_decay=2e-5)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    for step in range(2):
        for p, g in zip(a, grads):
            p.grad = g.clone() * (step + 1)
        optimizer_step(opt_a, scaler, CFG.train)
        total = torch.sqrt(sum(p.grad.square().sum() for p in a))
        assert float(total) == pytest.approx(5.0, rel=1e-5)  # clipped in place before the step
        norm = torch.sqrt(sum((g * (step + 1)).square().sum() for g in grads))
        for p, g in zip(b, grads):  # the same Adan fed gradients clipped by hand
            p.grad = g * (step + 1) * 5.0 / norm
        opt_b.step()
        for pa, pb in zip(a, b):
            torch.testing.assert_close(pa.detach(), pb.detach())
    assert float(a[0].detach().abs().max()) > 0  # it stepped


# ---------------------------------------------------------------- the config shows it
def test_config_command_shows_the_authors_values(capsys):
    from consistent123.cli import main

    assert main(["config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["train"]["optimizer"] == "adan" and cfg["train"]["adan_lr_scale"] == 5.0
    assert cfg["train"]["adan_max_grad_norm"] == 5.0 and cfg["train"]["encoder_lr_scale"] == 10.0
    assert cfg["cameras"]["fovy_range"] == [20.0, 20.0] and cfg["cameras"]["progressive_view"] is True
    assert cfg["hashgrid"]["interpolation"] == "smoothstep" and cfg["hashgrid"]["progressive_level"] is True
    assert cfg["nerf"]["shading"] == {"lambertian": 0.8, "textureless": 0.2}
    assert cfg["nerf"]["novel_background"] == "random" and cfg["nerf"]["ref_background"] == "per_pixel"
    assert cfg["nerf"]["ref_shading"] == "lambertian" and cfg["nerf"]["ref_ray_noise"] == 0.002
    assert cfg["sds"]["zero123_timestep"] == "max" and cfg["sds"]["view_dependent_prompt"] is True
    assert (cfg["loss"]["lambda_entropy"], cfg["loss"]["lambda_orient"], cfg["loss"]["lambda_normal_smooth_3d"]) == (
        1.0,
        1.0,
        20.0,
    )
