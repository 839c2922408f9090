"""The 3D prior variants: the table, Stable Zero123's camera vector, the refusal, and each
variant end to end on CPU with its random-weight stand-in."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from consistent123.cli import main as cli_main
from consistent123.config import Config, load_config
from consistent123.errors import ConfigError
from consistent123.priors.variants import VARIANTS, describe, prior_3d_source
from consistent123.render.cameras import CAMERA_LAYOUTS, Camera, orbit_position, stable_zero123_embedding
from consistent123.testing import TINY_OVERRIDES, make_case


# ---------------------------------------------------------------- Stable Zero123's camera vector
def _threestudio_angles(cam: Camera) -> tuple[float, float]:
    """(elevation, azimuth) in degrees as threestudio defines them for a camera position in its
    z-up world: position = d (cos e cos a, cos e sin a, sin e) (threestudio/data/uncond.py).
    The project's y-up world maps to z-up by (x, y, z) -> (x, -z, y) (a right-handed turn)."""
    x, y, z = orbit_position(cam.polar, cam.azimuth, cam.radius).tolist()
    zx, zy, zz = x, -z, y
    return math.degrees(math.asin(zz / cam.radius)), math.degrees(math.atan2(zy, zx))


def _published_stable_zero123(target: Camera, reference: Camera) -> list[float]:
    """threestudio/models/guidance/stable_zero123_guidance.py, StableZero123Guidance.get_cond:
    T = [deg2rad((90 - elevation) - (90 - cond_elevation_deg)), sin(deg2rad(azimuth - cond_azimuth_deg)),
         cos(deg2rad(azimuth - cond_azimuth_deg)), deg2rad(90 - cond_elevation_deg)]."""
    elevation, azimuth = _threestudio_angles(target)
    cond_elevation, cond_azimuth = _threestudio_angles(reference)
    return [
        math.radians((90 - elevation) - (90 - cond_elevation)),
        math.sin(math.radians(azimuth - cond_azimuth)),
        math.cos(math.radians(azimuth - cond_azimuth)),
        math.radians(90 - cond_elevation),
    ]


@pytest.mark.parametrize(
    "target,reference",
    [
        (Camera(60.0, 30.0, 3.2, 20.0), Camera(90.0, 0.0, 3.2, 20.0)),  # above, turned left (+azimuth)
        (Camera(100.0, -75.0, 3.4, 20.0), Camera(60.0, 0.0, 3.2, 20.0)),  # input from 30 deg above, turned right
        (Camera(75.0, 150.0, 3.0, 20.0), Camera(105.0, 20.0, 3.2, 20.0)),  # input from below
    ],
)
def test_stable_zero123_camera_vector_matches_threestudio_entry_by_entry(target, reference):
    ours = stable_zero123_embedding(target, reference).tolist()
    published = _published_stable_zero123(target, reference)
    for entry, (a, b) in enumerate(zip(ours, published)):
        assert a == pytest.approx(b, abs=1e-5), f"entry {entry}"
    # The azimuth's sign: a turn towards +azimuth here is a turn towards +azimuth there.
    assert np.sign(ours[1]) == np.sign(math.sin(math.radians(target.azimuth - reference.azimuth)))
    # The 4th entry is the input's absolute polar, not a radius difference (Zero-1-to-3's).
    assert ours[3] == pytest.approx(math.radians(reference.polar))
    assert CAMERA_LAYOUTS["zero123"](target, reference)[3].item() == pytest.approx(target.radius - reference.radius)


# ---------------------------------------------------------------- the table
def test_each_variant_has_its_id_layout_guidance_and_licence_in_one_table():
    assert set(VARIANTS) == {"zero123_xl", "zero123", "stable_zero123", "oracle"}
    for v in VARIANTS.values():
        assert v.layout in CAMERA_LAYOUTS and v.licence
    cfg = Config()
    assert cfg.models.prior_3d == "zero123_xl" and prior_3d_source(cfg) == "ashawkey/zero123-xl-diffusers"
    cfg.models.prior_3d = "stable_zero123"
    assert prior_3d_source(cfg) == "ashawkey/stable-zero123-diffusers"
    cfg.models.zero123 = "/my/weights"  # a local copy replaces the id, not the layout
    assert prior_3d_source(cfg) == "/my/weights"
    text = describe(load_config(None, ["models.prior_3d=stable_zero123"]))
    assert "* stable_zero123" in text and "Non-Commercial" in text and "kxic/zero123-165000" in text
    assert "usually run at 5" in text  # the run's guidance (the paper's 10) is not Stable Zero123's
    assert "usually run at" not in describe(Config())


def test_fetch_models_fetches_the_chosen_variant():
    from consistent123.priors.fetch import configured_sources

    for name in ("zero123_xl", "zero123", "stable_zero123"):
        cfg = load_config(None, [f"models.prior_3d={name}"])
        assert configured_sources(cfg)["zero123"] == VARIANTS[name].model_id
    assert "zero123" not in configured_sources(load_config(None, ["models.prior_3d=oracle"]))


# ---------------------------------------------------------------- end to end, one per variant
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_models):
    tmp = tmp_path_factory.mktemp("variants")
    models = tiny_models
    case = make_case(tmp / "cases")
    overrides = TINY_OVERRIDES + [
        f"models.tiny_dir={models}",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        "train.device=cpu",
        "train.nerf_iters=8",
        "train.mesh_iters=4",
        "dynamic.strategy=3d_only",  # the 3D prior alone: what differs between the variants
        "elevation.sampling_steps=3",
    ]

    def run(out_name: str, *extra: str) -> tuple[int, object]:
        args = ["reconstruct", str(case), "--out", str(tmp / out_name), "--no-progress"]
        for o in [*overrides, *extra]:
            args += ["--set", o]
        return cli_main(args), tmp / out_name

    run.case = case
    return run


@pytest.mark.slow
@pytest.mark.parametrize(
    "variant,elevation",
    [("zero123_xl", None), ("zero123", "12.5"), ("stable_zero123", "auto")],
)
def test_each_variant_runs_end_to_end_with_its_stand_in(tiny_run, variant, elevation):
    extra = [f"models.prior_3d={variant}"] + ([f"cameras.ref_elevation={elevation}"] if elevation else [])
    code, out = tiny_run(f"out-{variant}", *extra)
    assert code == 0 and (out / "DONE").is_file()
    record = json.loads((out / "run.json").read_text())["input_elevation"]
    if elevation == "auto":
        assert record["source"] == "auto" and record["prior_evaluations"] == 2 * 3 * 3  # two passes, 3 views, 3 steps
        assert record["prior"].startswith("stable_zero123:")
        kept = json.loads((tiny_run.case / "elevation.json").read_text())["auto"][record["prior"]]
        assert kept["elevation"] == record["elevation"]  # written to the case, reused by later runs
    else:
        assert record == {"elevation": float(elevation or 0.0), "source": "config"}


@pytest.mark.slow
def test_stable_zero123_refuses_to_run_without_an_elevation(tiny_run, capsys):
    code, out = tiny_run("out-refused", "models.prior_3d=stable_zero123")
    assert code != 0 and not (out / "DONE").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cameras.ref_elevation" in err[0] and "stable_zero123" in err[0]


def test_the_refusal_is_a_config_error_and_a_recorded_elevation_lifts_it(tmp_path):
    from consistent123.case import ELEVATION
    from consistent123.pipeline.elevation import check_elevation_known

    case = make_case(tmp_path)
    cfg = load_config(None, ["models.prior_3d=stable_zero123"])
    with pytest.raises(ConfigError):
        check_elevation_known(case, cfg)
    (case / ELEVATION).write_text(json.dumps({"given": 20.0, "auto": {}}))
    check_elevation_known(case, cfg)
    check_elevation_known(tmp_path, load_config(None, ["models.prior_3d=stable_zero123", "cameras.ref_elevation=0"]))
