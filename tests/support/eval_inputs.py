"""Inputs of the evaluation tests: a real input image, the fixture runs, a tiny CLIP, a moved mesh."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from consistent123.testing import RF15

FIXTURE_RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "runs"


def real_rgba(name: str = "banana") -> Path:
    return RF15 / f"{name}_rgba.png"


def tiny_clip(root: Path):
    """The project's tiny random-weight open_clip model, loaded through the real loader."""
    from consistent123.priors.clip import load_clip
    from consistent123.priors.standins.tiny import build_tiny_clip

    return load_clip(str(build_tiny_clip(root / "tiny_clip")), "cpu")


def moved(mesh: trimesh.Trimesh, scale: float, offset) -> trimesh.Trimesh:
    out = mesh.copy()
    out.vertices = np.asarray(mesh.vertices) * scale + np.asarray(offset, dtype=float)
    return out
