"""The procedural hard shapes: closed, one body, the volume their design says, cavities empty."""

from __future__ import annotations

import math

import numpy as np
import pytest

from consistent123.experiments import hard_shapes
from eval.mesh_metrics import solid_voxels

# Design volumes (consistent123/experiments/hard_shapes.py's sizes) in closed form.
EXACT_VOLUMES = {
    "torus": 2 * math.pi**2 * 0.36 * 0.12**2,
    "bowl": 2 / 3 * math.pi * (0.5**3 - 0.42**3),
    "table": 1.0 * 0.06 * 0.7 + 4 * 0.06 * 0.06 * 0.47,  # legs from y = -0.28 up to the plate at 0.19
    "pierced_box": 1.0 * 0.6 * 0.5 - math.pi * 0.16**2 * 0.5,
    # the cup without its handle: outer cylinder minus the cavity; the handle adds a few percent
    "cup": math.pi * 0.30**2 * 0.70 - math.pi * 0.25**2 * 0.64,
    "thick_cup": math.pi * 0.30**2 * 0.70 - math.pi * 0.20**2 * 0.60,
}


@pytest.fixture(scope="module", params=list(hard_shapes.SHAPES))
def built(request):
    return hard_shapes.build(f"hard:{request.param}")


def test_shape_is_one_watertight_body_in_the_unit_frame(built):
    mesh = built.mesh
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.body_count == 1
    assert mesh.volume > 0  # outward normals
    lo, hi = mesh.bounds
    assert np.allclose((lo + hi) / 2, 0, atol=1e-9)
    assert math.isclose(float((hi - lo).max()), 1.0, rel_tol=1e-9)


def test_shape_has_the_volume_of_its_design(built):
    design_volume = built.mesh.volume / built.scale**3
    exact = EXACT_VOLUMES[built.shape.name]
    if built.shape.name.endswith("cup"):  # exact for the body; the handle adds between 1 and 10 percent
        assert exact * 1.01 < design_volume < exact * 1.10
    else:
        assert design_volume == pytest.approx(exact, rel=0.02)


def test_truth_leaves_its_cavity_empty_and_a_filled_copy_does_not(built):
    truth = solid_voxels(built.mesh, 64)
    empty = hard_shapes.cavity_fill(built, truth)
    assert empty["cavity_voxels"] > 500
    assert empty["cavity_filled"] == 0.0
    hull = solid_voxels(built.mesh.convex_hull, 64)  # every cavity here lies inside the convex hull
    assert hard_shapes.cavity_fill(built, hull)["cavity_filled"] > 0.95


def test_unknown_shape_is_named_in_the_error():
    with pytest.raises(KeyError, match="choose from cup"):
        hard_shapes.build("hard:teapot")


def test_known_answer_names_the_hard_shapes_in_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "consistent123.cli", "known-answer", "hard:teapot", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "choose from cup, bowl" in proc.stderr
    assert not (tmp_path / "out").exists()
