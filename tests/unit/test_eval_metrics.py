"""Metrics against independent computations on inputs whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from skimage.metrics import peak_signal_noise_ratio

from consistent123 import meshes
from consistent123.errors import InputError, ModelUnavailableError
from consistent123.priors.lpips_backbone import lpips_backbone_path
from eval import mesh_metrics as mm
from eval.clip_similarity import clip_similarity
from eval.image_metrics import LpipsMetric, load_image_on_white, psnr
from tests.support.eval_inputs import real_rgba, tiny_clip


# ---------------------------------------------------------------- images
def test_white_composite_of_real_rgba():
    from PIL import Image

    raw = np.asarray(Image.open(real_rgba()).convert("RGBA"), dtype=np.float32) / 255.0
    img = load_image_on_white(real_rgba())
    transparent = raw[..., 3] == 0
    assert transparent.any() and (~transparent).any()
    assert np.allclose(img[transparent], 1.0)
    opaque = raw[..., 3] == 1
    assert np.allclose(img[opaque], raw[opaque][:, :3])
    assert load_image_on_white(real_rgba(), 64).shape == (64, 64, 3)


def test_psnr_matches_skimage_and_the_formula():
    rng = np.random.default_rng(1)
    a = rng.random((32, 40, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    expected = 10 * math.log10(1.0 / np.mean((a - b) ** 2))
    assert psnr(b, a) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), rel=1e-12)
    assert psnr(b, a) == pytest.approx(expected, rel=1e-9)
    assert psnr(a, a) == math.inf


@pytest.fixture(scope="module")
def lpips_random():
    # NOT LPIPS: random trunk + the real v0.1 linear layers (no backbone weights offline).
    return LpipsMetric("alex", random_backbone=True)


def test_lpips_zero_for_identical_and_rising_with_noise(lpips_random):
    img = load_image_on_white(real_rgba("cactus"), 64)
    rng = np.random.default_rng(0)
    assert lpips_random(img, img) == pytest.approx(0.0, abs=1e-7)
    values = [
        lpips_random(np.clip(img + rng.normal(0, s, img.shape), 0, 1).astype(np.float32), img) for s in (0.02, 0.1, 0.3)
    ]
    assert values[0] > 0 and values[0] < values[1] < values[2]
    assert "RANDOM-BACKBONE" in lpips_random.name


def test_lpips_real_backbone_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as err:
        LpipsMetric("alex", allow_download=False)
    msg = str(err.value)
    assert str(lpips_backbone_path("alex")) in msg and "\n" not in msg and str(tmp_path) in msg


def test_lpips_loads_its_backbone_from_the_torch_cache(tmp_path, monkeypatch):
    """Offline, the trunk comes from the torch cache file (a seeded stand-in here: the real
    ImageNet weights cannot be shipped), not from a download and not from a random init."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = lpips_backbone_path("alex")
    cached.parent.mkdir(parents=True)
    torch.manual_seed(3)
    weights = torchvision.models.alexnet().state_dict()
    torch.save(weights, cached)
    metric = LpipsMetric("alex", allow_download=False)
    assert torch.equal(metric.model.net.slice1[0].weight.cpu(), weights["features.0.weight"])
    img = load_image_on_white(real_rgba(), 64)
    assert metric(img, img) == pytest.approx(0.0, abs=1e-7)
    assert metric(np.clip(img + 0.2, 0, 1), img) > 0.0


# ---------------------------------------------------------------- CLIP-similarity
@pytest.fixture(scope="module")
def clip_model(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


def test_clip_similarity_identical_and_symmetric(clip_model):
    a = load_image_on_white(real_rgba("banana"), 64)
    b = load_image_on_white(real_rgba("cactus"), 64)
    assert clip_similarity(clip_model, a, [a])["clip_similarity"] == pytest.approx(1.0, abs=1e-5)
    ab = clip_similarity(clip_model, a, [b])["clip_similarity"]
    ba = clip_similarity(clip_model, b, [a])["clip_similarity"]
    assert ab == pytest.approx(ba, abs=1e-6) and ab < 1.0 - 1e-6
    # Independent: cosine of the embeddings, averaged over views.
    emb = clip_model.encode_images(torch.as_tensor(np.stack([a, b])).permute(0, 3, 1, 2))
    result = clip_similarity(clip_model, a, [a, b])
    assert result["clip_similarity"] == pytest.approx(float((1.0 + emb[0] @ emb[1]) / 2), abs=1e-5)
    assert result["clip_model"] == clip_model.name and len(result["per_view"]) == 2


# ---------------------------------------------------------------- meshes
def box(x, y, z):
    return trimesh.creation.box((x, y, z))


def test_normalisation_centres_and_scales():
    m = meshes.normalise_mesh(box(2.0, 4.0, 1.0).apply_translation([5, -3, 2]))
    lo, hi = m.bounds
    assert np.allclose((lo + hi) / 2, 0) and np.isclose((hi - lo).max(), 1.0)
    assert np.allclose(hi - lo, [0.5, 1.0, 0.25])


def test_iou_cube_vs_half_height_box_is_one_half():
    # Same longest side (1), so normalisation leaves both as they are: the half box is the centred half.
    cube, half = meshes.normalise_mesh(box(1, 1, 1)), meshes.normalise_mesh(box(1, 0.5, 1))
    va, vb = mm.solid_voxels(cube, 64), mm.solid_voxels(half, 64)
    assert va.all()  # every voxel centre of the unit cube is inside it
    assert mm.volumetric_iou(va, vb) == pytest.approx(0.5, abs=1e-12)


def test_iou_sphere_in_cube_is_pi_over_6():
    # Tolerance: icosphere(5) holds 99.95 % of the ball's volume, and counting lattice points
    # in a ball of radius 32 voxels errs by O(R^1.5) ~ 200 of 137k points (0.15 %): 0.5 % covers both.
    sphere = meshes.normalise_mesh(trimesh.creation.icosphere(subdivisions=5))
    iou = mm.volumetric_iou(mm.solid_voxels(meshes.normalise_mesh(box(1, 1, 1)), 64), mm.solid_voxels(sphere, 64))
    assert iou == pytest.approx(math.pi / 6, rel=5e-3)


def test_solid_voxels_agree_with_analytic_inside_test():
    sphere = meshes.normalise_mesh(trimesh.creation.icosphere(subdivisions=5))
    vox = mm.solid_voxels(sphere, 48)
    g = mm.voxel_centres(48)
    r = np.sqrt(sum(c**2 for c in np.meshgrid(g, g, g, indexing="ij")))
    clear = np.abs(r - 0.5) > 0.005  # away from the polygonal surface
    assert np.array_equal(vox[clear], (r < 0.5)[clear])
    # A torus: the hole must stay empty (parity, not a hull fill).
    torus = meshes.normalise_mesh(trimesh.creation.torus(1.0, 0.3))
    assert not mm.solid_voxels(torus, 32)[16, 16, 16]


def test_chamfer_identical_is_zero_and_point_sets_exact():
    m = meshes.normalise_mesh(trimesh.creation.icosphere(subdivisions=3))
    p = mm.sample_points(m, 2000, seed=0)
    assert mm.chamfer_distance(p, p) == 0.0
    # Two copies of one point set, one shifted by h perpendicular: every NN is its partner.
    rng = np.random.default_rng(0)
    xy = rng.random((500, 2))
    h = 0.001
    a = np.c_[xy, np.zeros(500)]
    assert mm.chamfer_distance(a, a + [0, 0, h]) == pytest.approx(2 * h * h, rel=1e-9)


def test_chamfer_plate_vs_two_plates_matches_analytic():
    # A unit square at z=0 vs two unit squares at z=±0.25 (bbox 1 x 1 x 0.5 -> unchanged by
    # normalisation). Each point is 0.25 from the other surface: CD = 2 * 0.25² = 0.125, plus the
    # in-plane gap to the nearest sample, E[r²] = 1 / (pi * density), at 1000 and 2000 per unit area.
    plate = trimesh.Trimesh([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], [[0, 1, 2], [0, 2, 3]])
    top, bottom = plate.copy().apply_translation([0, 0, 0.25]), plate.copy().apply_translation([0, 0, -0.25])
    two = trimesh.util.concatenate([top, bottom])
    result = mm.compare_meshes(plate, two, points=2000, resolution=16)
    analytic = 0.125 + 1 / (math.pi * 1000) + 1 / (math.pi * 2000)
    assert result["chamfer_distance"] == pytest.approx(analytic, rel=0.01)


def test_compare_meshes_ignores_scale_and_position():
    gt = trimesh.creation.icosphere(subdivisions=3)
    pred = trimesh.creation.capsule(height=1.0, radius=0.5)
    base = mm.compare_meshes(meshes.normalise_mesh(gt), meshes.normalise_mesh(pred))
    other = mm.compare_meshes(mm_moved(gt, 3.0, [1, 2, 3]), mm_moved(pred, 0.2, [-5, 0, 7]))
    assert other["chamfer_distance"] == pytest.approx(base["chamfer_distance"], rel=1e-9)
    assert other["volumetric_iou"] == base["volumetric_iou"]
    assert 0 < base["volumetric_iou"] < 1 and base["chamfer_distance"] > 0


def mm_moved(mesh, scale, offset):
    from tests.support.eval_inputs import moved

    return moved(mesh, scale, offset)


def test_load_mesh_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        meshes.load_mesh(tmp_path / "absent.obj")
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"this is not a mesh at all" * 10)
    with pytest.raises(InputError, match="junk.glb"):
        meshes.load_mesh(junk)
    empty = tmp_path / "empty.obj"
    empty.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(InputError, match="empty"):
        meshes.load_mesh(empty)


def test_ground_truth_frame_counts_scale_and_resists_stray_faces():
    # A reconstruction in the ground truth's own frame (the known-answer benchmark).
    gt = trimesh.creation.icosphere(subdivisions=4, radius=0.4)
    # 1. The object 20 % too large: its own bbox hides the error, the ground truth's shows it.
    big = gt.copy().apply_scale(1.2)
    each = mm.compare_meshes(gt, big, 2000, 32, normalise="each")
    shared = mm.compare_meshes(gt, big, 2000, 32, normalise="ground_truth")
    assert each["volumetric_iou"] > 0.97 and each["chamfer_distance"] < 1e-3
    # 1/1.2³ = 0.58 in free space; the voxel grid spans the unit cube, which clips the larger sphere.
    assert 0.5 < shared["volumetric_iou"] < 0.75
    assert shared["chamfer_distance"] > 10 * each["chamfer_distance"]
    # 2. The exact object plus one small stray triangle far away: its own bbox shrinks the object
    #    (a wrong score for a right shape); the ground truth's leaves the object in place.
    stray = trimesh.Trimesh([[0.9, 0.9, 0.9], [0.92, 0.9, 0.9], [0.9, 0.92, 0.9]], [[0, 1, 2]])
    with_stray = trimesh.util.concatenate([gt, stray])
    each = mm.compare_meshes(gt, with_stray, 2000, 32, normalise="each")
    shared = mm.compare_meshes(gt, with_stray, 2000, 32, normalise="ground_truth")
    assert shared["volumetric_iou"] > 0.97 and shared["chamfer_distance"] < 2e-3
    assert each["volumetric_iou"] < 0.5
    with pytest.raises(ValueError, match="eval.normalise"):
        mm.compare_meshes(gt, gt, 100, 8, normalise="bbox")
