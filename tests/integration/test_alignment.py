"""Rigid alignment before the GSO metrics: a known-answer scan turned by a known rotation is turned back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from consistent123.config import load_config
from consistent123.experiments.known_answer import prepare_ground_truth
from eval.alignment import align_to, rotation
from eval.mesh_metrics import compare_meshes

PANDA = Path(__file__).resolve().parents[2] / "datasets" / "known_answer" / "Android_Figure_Panda.ply"


def _angle_between(a: np.ndarray, b: np.ndarray) -> float:
    cos = (np.trace(a.T @ b) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def test_alignment_recovers_a_known_rotation():
    cfg = load_config(None, ["eval.align=true", "eval.align_points=1500"])
    gt = prepare_ground_truth(trimesh.load(PANDA, process=False), "z", cfg.oracle)
    turn = rotation("x", 20.0) @ rotation("y", 137.0)
    moved = gt.copy()
    moved.apply_transform(turn)
    moved.apply_scale(1.7)  # a reconstruction's own scale and place
    moved.apply_translation([0.3, -0.2, 0.1])

    before = compare_meshes(gt, moved, 1500, 32)
    aligned, record = align_to(gt, moved, cfg.eval)
    after = compare_meshes(gt, aligned, 1500, 32)

    recovered = np.asarray(record["rotation"])
    assert _angle_between(recovered, turn[:3, :3].T) < 2.0, record
    assert record["enabled"] and record["chamfer_normal_form_after"] < record["chamfer_normal_form_before"]
    assert after["chamfer_distance"] < 2e-4 < before["chamfer_distance"]
    assert after["volumetric_iou"] > 0.95 > before["volumetric_iou"]
    np.testing.assert_allclose(aligned.bounds, gt.bounds, atol=0.01)
    assert len(aligned.visual.vertex_colors) == len(gt.vertices)  # colours travel with the shape
