"""The GSO evaluation protocols (eval/protocols.py): checked against values the reference code
produced (tests/fixtures/protocol_golden.json, provenance inside), and the new metrics against
inputs whose answers are known."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
import yaml

from consistent123.config import EvalConfig
from eval import mesh_metrics as mm
from eval.image_metrics import ssim
from eval.protocols import PROTOCOLS, geometry_metrics, get_protocol, protocol_table
from tests.support.golden_pairs import pairs

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / "tests" / "fixtures" / "protocol_golden.json").read_text())


# ---------------------------------------------------------------- against the reference code
@pytest.fixture(scope="module")
def ours():
    """Our metrics of every golden pair under each protocol the golden file holds."""
    cfg = EvalConfig()
    voxelise, cache = mm.mesh2sdf_voxels, {}

    def cached(mesh, resolution):  # a ground truth recurs in four pairs: voxelise it once
        key = (np.asarray(mesh.vertices).tobytes(), np.asarray(mesh.faces).tobytes(), resolution)
        if key not in cache:
            cache[key] = voxelise(mesh, resolution)
        return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mm, "mesh2sdf_voxels", cached)
        return {
            name: {p: mm.compare_with_protocol(gt, pred, cfg, get_protocol(p)) for p in ("syncdreamer", "spar3d")}
            for name, gt, pred in pairs()
        }


def test_golden_file_covers_every_pair():
    assert [row["pair"] for row in GOLDEN["pairs"]] == [name for name, _, _ in pairs()]
    assert len(GOLDEN["pairs"]) == 11


@pytest.mark.parametrize("protocol", ["syncdreamer", "spar3d"])
def test_protocol_reproduces_the_reference_values(ours, protocol):
    tolerance = GOLDEN["tolerance"]
    for row in GOLDEN["pairs"]:
        for metric, reference in row[protocol].items():
            tol = tolerance["fscore" if metric.startswith("fscore") else metric]
            got = ours[row["pair"]][protocol][metric]
            assert abs(got - reference) <= tol, (row["pair"], protocol, metric, got, reference)


def test_golden_pairs_are_not_trivial():
    """The references see real differences: noise and decimation cost, a shift costs nothing."""
    by_pair = {row["pair"]: row for row in GOLDEN["pairs"]}
    for name in ("Android_Figure_Panda", "CHICKEN_RACER", "CITY_TAXI_POLICE_CAR"):
        assert by_pair[f"{name}/shifted"]["syncdreamer"]["chamfer_distance"] < 1e-12
        assert by_pair[f"{name}/perturbed"]["syncdreamer"]["chamfer_distance"] > 1e-3
        assert by_pair[f"{name}/decimated"]["syncdreamer"]["volumetric_iou"] < 0.99
    other = by_pair["Android_Figure_Panda/vs/CHICKEN_RACER"]
    assert other["spar3d"]["fscore_0.1"] < 0.6 and other["syncdreamer"]["volumetric_iou"] < 0.5


# ---------------------------------------------------------------- metrics with known answers
def test_chamfer_mean_of_means_by_hand():
    a = np.array([[0.0, 0, 0], [1, 0, 0]])
    b = np.array([[0.0, 0, 0.5]])
    # a->b: 0.5 and sqrt(1.25); b->a: 0.5
    assert mm.chamfer_mean_of_means(a, b) == pytest.approx(((0.5 + np.sqrt(1.25)) / 2 + 0.5) / 2)


def test_fscore_counts_points_within_the_threshold():
    gt = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]])
    pred = gt + [0.0, 0.05, 0]
    assert mm.fscore(gt, pred, 0.1) == 1.0
    pred[:2] += [0, 1.0, 0]  # half the points move away: precision = recall = 0.5
    assert mm.fscore(gt, pred, 0.1) == pytest.approx(0.5)
    assert mm.fscore(gt, gt + 10.0, 0.1) == 0.0


def test_normal_consistency_of_same_and_crossed_planes():
    plane = trimesh.Trimesh([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 3]], process=False)
    crossed = plane.copy()
    crossed.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    assert mm.normal_consistency(plane, plane, 2000) == pytest.approx(1.0)
    flipped = plane.copy()
    flipped.invert()  # |cos|: orientation of the faces does not count
    assert mm.normal_consistency(plane, flipped, 2000) == pytest.approx(1.0)
    assert mm.normal_consistency(plane, crossed, 2000) < 0.2


def test_mesh2sdf_iou_of_nested_cubes():
    """Cube of side 0.5 inside a cube of side 1. mesh2sdf samples the nodes -1 + 2i/32 of [-1, 1]:
    15 per axis lie strictly inside the unit cube, 7 inside the half one (faces on nodes: sdf 0)."""
    small, big = trimesh.creation.box(extents=[0.5] * 3), trimesh.creation.box(extents=[1.0] * 3)
    inside_small, inside_big = mm.mesh2sdf_voxels(small, 32), mm.mesh2sdf_voxels(big, 32)
    assert (inside_small.sum(), inside_big.sum()) == (7**3, 15**3)
    assert mm.volumetric_iou(inside_small, inside_big) == pytest.approx((7 / 15) ** 3)


def test_ssim_is_eschernets_call_on_uint8_views():
    """EscherNet's metrics/eval_2D_NVS.py: structural_similarity(pred_uint8, gt_uint8, channel_axis=2)."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    gt = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-40, 41, gt.shape), 0, 255).astype(np.uint8)
    reference = structural_similarity(pred, gt, channel_axis=2)
    assert ssim(pred / 255.0, gt / 255.0) == pytest.approx(reference, abs=1e-9)


def test_ssim_of_same_and_noisy_images():
    rng = np.random.default_rng(0)
    image = rng.random((32, 32, 3))
    assert ssim(image, image) == pytest.approx(1.0)
    assert ssim(np.clip(image + rng.normal(0, 0.2, image.shape), 0, 1), image) < 0.9


# ---------------------------------------------------------------- the tables of choices
def test_every_protocol_cites_its_sources_and_lists_its_metrics():
    assert set(PROTOCOLS) == {"paper", "syncdreamer", "spar3d"}
    assert geometry_metrics(PROTOCOLS["spar3d"]) == [
        "chamfer_distance",
        "fscore_0.1",
        "fscore_0.2",
        "fscore_0.5",
        "normal_consistency",
    ]
    assert "volumetric_iou" in geometry_metrics(PROTOCOLS["syncdreamer"])
    for p in PROTOCOLS.values():
        assert (ROOT / p.objects).is_file() and p.sources
    assert "cc373c8ed0ef134149c5019e2384d2264649d0a6" in PROTOCOLS["syncdreamer"].sources["normalisation"]
    with pytest.raises(ValueError, match="eval.protocol"):
        get_protocol("nope")


def test_config_prints_the_protocol_table_and_the_paper_keeps_paper(capsys):
    from consistent123.cli import main

    assert main(["config", "--set", "eval.protocol=syncdreamer"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["eval"]["protocol"] == "syncdreamer"  # still one YAML document
    assert "# | choice | paper | syncdreamer (selected) | spar3d |" in out
    assert protocol_table().count("\n") > 10
    assert EvalConfig().protocol == "paper"
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    assert paper["method"]["eval"]["protocol"] == "paper"


def _names(path: Path, column: str = "case") -> list[str]:
    with open(path, newline="") as f:
        return [row[column] for row in csv.DictReader(f, delimiter="\t")]


def test_object_manifests():
    sync = _names(ROOT / "datasets" / "gso_syncdreamer30.tsv")
    assert len(sync) == len(set(sync)) == 30 and {"alarm", "stucking_cups", "turtle"} <= set(sync)
    full = set(_names(ROOT / "datasets" / "gso_full.tsv"))
    assert len(full) == 1033
    assert {"Android_Figure_Panda", "CHICKEN_RACER", "CITY_TAXI_POLICE_CAR"} <= full
    with open(ROOT / "datasets" / "gso.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["gt_mesh"]:  # the paper's model, or the other GSO model its note names
                assert row["gt_mesh"] in full or any(w.strip(":,;()") in full for w in row["gt_mesh_note"].split())
