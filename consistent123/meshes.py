"""Meshes in and out of files: load and check, normalise into the unit cube, textured load.

One home for mesh I/O: the export writes meshes (``pipeline/export.py``), everything that
reads one (the oracle prior, the known-answer harness, the metrics) reads it here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import trimesh

from consistent123.errors import InputError


# ---------------------------------------------------------------- loading
def load_mesh(path: str | Path) -> trimesh.Trimesh:
    """Read a triangle mesh (OBJ, GLB, PLY, STL, OFF...); a scene is merged into one mesh.

    Raises InputError naming the file when it is missing, is not a mesh, or has no faces.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: mesh file not found")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise InputError(
            f"{path}: not a readable mesh ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if not isinstance(mesh, trimesh.Trimesh):
        raise InputError(f"{path}: not a triangle mesh (got {type(mesh).__name__})")
    return check_mesh(mesh, str(path))


def is_closed(mesh: trimesh.Trimesh) -> bool:
    """Watertight as a shape: a textured file splits its vertices along UV seams (and trimesh's
    ``is_watertight`` then sees open edges), so the test runs on a copy with those merged."""
    merged = mesh.copy()
    merged.merge_vertices(merge_tex=True, merge_norm=True)
    return bool(merged.is_watertight)


def check_mesh(mesh: trimesh.Trimesh, name: str = "mesh") -> trimesh.Trimesh:
    """A usable mesh has faces, finite vertices and a non-degenerate bounding box."""
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise InputError(f"{name}: empty mesh (no faces)")
    if not np.isfinite(mesh.vertices).all():
        raise InputError(f"{name}: mesh has non-finite vertex coordinates")
    if float(np.ptp(mesh.vertices, axis=0).max()) <= 0.0:
        raise InputError(f"{name}: mesh is a single point (zero-size bounding box)")
    if float(mesh.area) <= 0.0:
        raise InputError(f"{name}: mesh has zero surface area (all faces degenerate)")
    return mesh


# ---------------------------------------------------------------- normalisation
def normalise_mesh(mesh: trimesh.Trimesh, frame: trimesh.Trimesh | None = None) -> trimesh.Trimesh:
    """Copy of ``mesh`` moved so that ``frame``'s bbox (``mesh``'s own by default) has its centre
    at the origin and its longest side = 1."""
    lo, hi = (mesh if frame is None else frame).bounds
    centre = (lo + hi) / 2.0
    scale = float((hi - lo).max())
    out = mesh.copy()
    out.vertices = (np.asarray(mesh.vertices, dtype=np.float64) - centre) / scale
    return out


def normalise_pair(gt: trimesh.Trimesh, pred: trimesh.Trimesh, mode: str = "each"):
    """(gt, pred) in the unit-cube frame the metrics compare in.

    ``each``: every mesh by its own bbox (the benchmark protocol: a reconstruction's scale and
    position are arbitrary). ``ground_truth``: both by the ground truth's bbox, for runs whose
    frame is the ground truth's (known-answer): a scale error then counts, and a few stray
    faces far from the object cannot rescale the whole reconstruction.
    """
    if mode == "each":
        return normalise_mesh(gt), normalise_mesh(pred)
    if mode == "ground_truth":
        return normalise_mesh(gt), normalise_mesh(pred, frame=gt)
    raise ValueError(f"eval.normalise must be 'each' or 'ground_truth', not {mode!r}")


def load_textured_mesh(path):
    """(verts [V,3], faces [F,3], uv [V,2] or None, texture [H,W,3] float in [0,1] or None) of a
    .glb/.obj (a scene is concatenated into one mesh); uv_faces are ``faces``. For rendering a
    ground-truth or reconstructed mesh with ``render_mesh``."""
    mesh = trimesh.load(path, force="mesh", process=False)
    verts = torch.tensor(np.asarray(mesh.vertices), dtype=torch.float32)
    faces = torch.tensor(np.asarray(mesh.faces), dtype=torch.long)
    uv = texture = None
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.TextureVisuals) and visual.uv is not None:
        material = visual.material
        image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
        if image is not None:
            uv = torch.tensor(np.asarray(visual.uv), dtype=torch.float32)
            texture = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    return verts, faces, uv, texture
