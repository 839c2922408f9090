"""Procedural hard shapes with exact answers for the known-answer benchmark (cavities, thin walls, holes).

Each shape is a signed distance function (negative inside) built from primitives with min/max
(union/intersection/difference), meshed by marching cubes (skimage) on a grid with an empty
border, so the surface is one closed, watertight body whatever the primitives overlap. A shape
also names its **cavity**: the empty space a reconstruction must carve (the inside of a cup or a
bowl, the hole of a ring or a pierced box, the space under a table), as another SDF. The
known-answer benchmark reports the share of the cavity's voxels that a result fills.

Coordinates: +y up (the project's frame), the shape's bounding box centred at the origin with
its longest side 1 (what ``eval.mesh_metrics.normalise_mesh`` gives), so the cavity needs no
further transform in the evaluation's frame. Sizes below are in that frame.

    consistent123 known-answer hard:cup --out DIR --config config/known_answer.yaml
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import trimesh

Sdf = Callable[[np.ndarray], np.ndarray]  # points [N, 3] -> signed distance [N] (negative inside)
PREFIX = "hard:"
# Marching-cubes cells along the longest side: ~10-20 k faces, like the scans of the easy set.
DEFAULT_RESOLUTION = 96


# ---------------------------------------------------------------- primitives (exact or bounding SDFs)
def capped_cylinder(radius: float, y0: float, y1: float, axis: int = 1) -> Sdf:
    """A solid cylinder of ``radius`` about ``axis`` through the origin, from y0 to y1 along it."""
    others = [a for a in range(3) if a != axis]
    mid, half = 0.5 * (y0 + y1), 0.5 * (y1 - y0)

    def sdf(p):
        d = np.stack([np.linalg.norm(p[:, others], axis=1) - radius, np.abs(p[:, axis] - mid) - half], 1)
        return np.minimum(d.max(1), 0.0) + np.linalg.norm(np.maximum(d, 0.0), axis=1)

    return sdf


def box(centre, half_size) -> Sdf:
    c, h = np.asarray(centre, float), np.asarray(half_size, float)

    def sdf(p):
        q = np.abs(p - c) - h
        return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(1), 0.0)

    return sdf


def sphere(radius: float, centre=(0.0, 0.0, 0.0)) -> Sdf:
    c = np.asarray(centre, float)
    return lambda p: np.linalg.norm(p - c, axis=1) - radius


def torus(major: float, minor: float, centre=(0.0, 0.0, 0.0), axis: int = 1) -> Sdf:
    """A torus whose ring lies in the plane normal to ``axis``."""
    c = np.asarray(centre, float)
    others = [a for a in range(3) if a != axis]

    def sdf(p):
        q = p - c
        ring = np.linalg.norm(q[:, others], axis=1) - major
        return np.sqrt(ring**2 + q[:, axis] ** 2) - minor

    return sdf


def half_space_below(y: float) -> Sdf:
    return lambda p: p[:, 1] - y


def union(*parts: Sdf) -> Sdf:
    return lambda p: np.min([f(p) for f in parts], axis=0)


def intersection(*parts: Sdf) -> Sdf:
    return lambda p: np.max([f(p) for f in parts], axis=0)


def difference(a: Sdf, b: Sdf) -> Sdf:
    return lambda p: np.maximum(a(p), -b(p))


# ---------------------------------------------------------------- the shapes
@dataclass(frozen=True)
class HardShape:
    name: str
    solid: Sdf  # the object, in design coordinates
    cavity: Sdf | None  # the space it must leave empty (None: no cavity to score)
    description: str


def _cup(wall: float = 0.05, floor: float = 0.06, name: str = "cup") -> HardShape:
    r_out, y0, y1 = 0.30, -0.35, 0.35
    cavity = capped_cylinder(r_out - wall, y0 + floor, y1 + 0.5)  # open at the top
    body = capped_cylinder(r_out, y0, y1)
    # A vertical ring (in the x-y plane) on the +x side, cut where it would enter the cavity.
    handle = intersection(torus(0.17, 0.035, (r_out, 0.0, 0.0), axis=2), box((r_out + 0.3, 0, 0), (0.3, 1, 1)))
    return HardShape(
        name,
        difference(union(body, handle), cavity),
        intersection(cavity, half_space_below(y1)),
        f"hollow cylinder (radius 0.30, wall {wall}, floor {floor}) with a torus handle",
    )


def _bowl() -> HardShape:
    r_out, r_in = 0.5, 0.42
    cavity = intersection(sphere(r_in), half_space_below(0.0))
    return HardShape(
        "bowl",
        intersection(difference(sphere(r_out), sphere(r_in)), half_space_below(0.0)),
        cavity,
        "hemispherical shell (radius 0.50, wall 0.08), open at the top",
    )


def _torus() -> HardShape:
    major, minor = 0.36, 0.12
    return HardShape(
        "torus",
        torus(major, minor),
        capped_cylinder(major - minor, -minor, minor),  # the hole
        "flat ring (radii 0.36 and 0.12), its hole seen from above",
    )


def _table() -> HardShape:
    top = box((0, 0.22, 0), (0.5, 0.03, 0.35))
    legs = [box((sx * 0.42, -0.03, sz * 0.27), (0.03, 0.25, 0.03)) for sx in (-1, 1) for sz in (-1, 1)]
    under = box((0, -0.03, 0), (0.39, 0.22, 0.24))  # between the legs, under the plate
    return HardShape("table", union(top, *legs), under, "thin plate (0.06 thick) on four legs")


def _pierced_box() -> HardShape:
    hole = capped_cylinder(0.16, -1.0, 1.0, axis=2)  # through the box along z (towards the reference camera)
    return HardShape(
        "pierced_box",
        difference(box((0, 0, 0), (0.5, 0.3, 0.25)), hole),
        intersection(hole, box((0, 0, 0), (1, 1, 0.25))),
        "box 1.0 x 0.6 x 0.5 with a round hole (radius 0.16) through it",
    )


SHAPES: dict[str, Callable[[], HardShape]] = {
    "cup": _cup,
    "bowl": _bowl,
    "torus": _torus,
    "table": _table,
    "pierced_box": _pierced_box,
    # walls twice as thick: resolvable by the tests' small grids (not part of the benchmark's set)
    "thick_cup": lambda: _cup(wall=0.10, floor=0.10, name="thick_cup"),
}
BENCHMARK_SET = ("cup", "bowl", "torus", "table", "pierced_box")


def is_hard_shape(spec: str) -> bool:
    return str(spec).startswith(PREFIX)


def shape_name(spec: str) -> str:
    name = str(spec)[len(PREFIX) :] if is_hard_shape(spec) else str(spec)
    if name not in SHAPES:
        raise KeyError(f"unknown hard shape {name!r} (choose from {', '.join(SHAPES)})")
    return name


# ---------------------------------------------------------------- meshing and the normalised frame
@dataclass(frozen=True)
class BuiltShape:
    shape: HardShape
    mesh: trimesh.Trimesh  # normalised: box centred at the origin, longest side 1, +y up
    centre: np.ndarray  # design coordinates of the normalised origin
    scale: float  # normalised = (design - centre) * scale

    def cavity_mask(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Bool [N]: normalised ``points`` at least ``margin`` (normalised units) inside the cavity."""
        if self.shape.cavity is None:
            return np.zeros(len(points), bool)
        return self.shape.cavity(points / self.scale + self.centre) * self.scale < -margin

    def solid_mask(self, points: np.ndarray) -> np.ndarray:
        return self.shape.solid(points / self.scale + self.centre) < 0


def build(name: str, resolution: int = DEFAULT_RESOLUTION) -> BuiltShape:
    """The watertight, normalised mesh of hard shape ``name`` (``hard:`` prefix allowed)."""
    from skimage.measure import marching_cubes

    shape = SHAPES[shape_name(name)]()
    extent = 0.75  # every design fits in [-0.75, 0.75]^3 with an empty border
    step = 2 * extent / resolution
    # Shifted off the design's round numbers: no grid vertex sits exactly on a flat face (a zero
    # value there makes marching cubes emit degenerate, unmatched triangles).
    origin = -extent + 0.3719 * step
    axis = np.arange(resolution + 1) * step + origin
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    values = shape.solid(grid).reshape((resolution + 1,) * 3)
    verts, faces, _, _ = marching_cubes(values, level=0.0, spacing=(step,) * 3)
    mesh = trimesh.Trimesh(verts + origin, faces, process=True)
    if mesh.volume < 0:  # outward normals whatever skimage's face order
        mesh.invert()
    lo, hi = mesh.bounds
    centre, scale = 0.5 * (lo + hi), 1.0 / float((hi - lo).max())
    mesh.vertices = (mesh.vertices - centre) * scale
    return BuiltShape(shape, mesh, centre, scale)


def cavity_fill(
    built: BuiltShape, predicted_solid: np.ndarray, margin_voxels: float = 1.0, seen: np.ndarray | None = None
) -> dict:
    """Share of the cavity's voxels that ``predicted_solid`` [res]^3 (eval.mesh_metrics.solid_voxels'
    lattice, the normalised frame) fills; voxels within ``margin_voxels`` of the cavity's wall are
    left out, so a surface off by a voxel does not count as a filled cavity. With ``seen`` (bool
    [res]^3, e.g. from ``consistent123.render.visibility.seen_empty``) also the share of the cavity that the cameras see empty
    and the share of that part the result fills (what its cameras could have carved)."""
    from eval.mesh_metrics import voxel_centres

    res = predicted_solid.shape[0]
    g = voxel_centres(res)
    centres = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    cavity = built.cavity_mask(centres, margin_voxels / res).reshape((res,) * 3)
    count = int(cavity.sum())
    filled = int((cavity & predicted_solid).sum())
    out = {"cavity_voxels": count, "cavity_filled_voxels": filled, "cavity_filled": filled / max(count, 1)}
    if seen is not None:
        visible = cavity & seen
        out["cavity_seen_empty"] = float(visible.sum() / max(count, 1))
        out["seen_cavity_filled"] = float((visible & predicted_solid).sum() / max(int(visible.sum()), 1))
    return out
