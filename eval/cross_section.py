"""Pictures that show whether a reconstruction carved what its truth leaves empty.

cross_section.png   the mid-height horizontal slice of the evaluation's voxel grid
                    (eval.mesh_metrics.solid_voxels, the ground truth's normalised frame):
                    white empty, light grey the truth's solid the result misses, black solid in
                    both, red solid the result adds (dark red: inside the truth's cavity)
top_down.png        truth | result rendered from above (polar ``TOP_DOWN_POLAR``), shaded
                    by their normals so the geometry shows whatever the texture
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import trimesh
from PIL import Image

from consistent123.io import atomic_path

# 55 degrees above the horizon: high enough to see into a cup or bowl and through a ring's hole,
# low enough that walls are seen from the side (straight down, a floor and a lid look the same).
TOP_DOWN_POLAR = 35.0
PIXELS_PER_VOXEL = 4
_EMPTY, _MISSED, _BOTH, _ADDED, _ADDED_IN_CAVITY = (
    (255, 255, 255),
    (200, 200, 200),
    (0, 0, 0),
    (230, 60, 60),
    (130, 0, 0),
)


def _save(image: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path


def section_image(
    truth: np.ndarray, result: np.ndarray, cavity: Optional[np.ndarray] = None, height: Optional[int] = None
) -> np.ndarray:
    """uint8 [res*k, res*k, 3] of the horizontal slice at y index ``height`` (default the middle)
    of voxel grids [x, y, z]; rows run along z (back at the top, as seen from above), columns along x."""
    res = truth.shape[1]
    y = res // 2 if height is None else height
    t, r = truth[:, y, :].T, result[:, y, :].T  # [z, x]
    c = np.zeros_like(t) if cavity is None else cavity[:, y, :].T
    image = np.empty((*t.shape, 3), np.uint8)
    image[:] = _EMPTY
    image[t & ~r] = _MISSED
    image[t & r] = _BOTH
    image[~t & r] = _ADDED
    image[c & r] = _ADDED_IN_CAVITY
    return np.kron(image, np.ones((PIXELS_PER_VOXEL, PIXELS_PER_VOXEL, 1), np.uint8))


def write_cross_section(truth: np.ndarray, result: np.ndarray, path: Path, cavity: Optional[np.ndarray] = None) -> Path:
    return _save(section_image(truth, result, cavity), Path(path))


@torch.no_grad()
def shaded_view(
    mesh: trimesh.Trimesh, polar: float = TOP_DOWN_POLAR, size: int = 256, fovy: float = 30.0
) -> np.ndarray:
    """uint8 [size, size, 3]: ``mesh`` (normalised, longest side 1) on white, lit from the camera."""
    from consistent123.render.cameras import Camera, orbit_position
    from consistent123.render.rasterize import render_mesh

    cam = Camera(polar, 30.0, 2.2, fovy)
    light = torch.nn.functional.normalize(orbit_position(cam.polar, cam.azimuth, 1.0), dim=0)

    def shade(points, normals):  # half ambient, half diffuse: faces seen edge-on stay visible
        return (0.35 + 0.65 * (normals @ light).abs()).unsqueeze(-1).expand(-1, 3)

    out = render_mesh(
        torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32),
        torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64),
        cam,
        size,
        size,
        color_fn=shade,
        bg_color=(1.0, 1.0, 1.0),
    )
    return (out["rgb"].clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)


def write_top_down(truth: trimesh.Trimesh, result: trimesh.Trimesh, path: Path, size: int = 256) -> Path:
    """truth | result, both in the truth's normalised frame."""
    gap = np.full((size, 4, 3), 128, np.uint8)
    return _save(np.concatenate([shaded_view(truth, size=size), gap, shaded_view(result, size=size)], 1), Path(path))
