"""A tiny but complete method configuration and a real case folder, shared by the run tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests._data import RF15, rf15_prompts

# Small enough for a few seconds per phase on 2 CPU cores, large enough to exercise every part:
# a boundary window that can fire, a forced switch bound, both phases and a checkpoint.
TINY_OVERRIDES = [
    "hashgrid.num_levels=4",
    "hashgrid.log2_hashmap_size=12",
    "hashgrid.base_resolution=8",
    "hashgrid.desired_resolution_per_bound=64",
    "hashgrid.backend=torch",
    "nerf.render_size=32",
    "nerf.num_steps=24",
    "nerf.upsample_steps=0",
    "nerf.hidden_dim=16",
    "nerf.occupancy_grid_resolution=16",
    "dmtet.tet_grid_size=16",
    "dmtet.render_size=48",
    "train.nerf_iters=24",
    "train.mesh_iters=12",
    "train.checkpoint_every=8",
    "train.log_every=4",
    "train.log_images_every=12",
    "boundary.every=4",
    "boundary.window=2",
    "boundary.least_3d_only=4",
    "boundary.most_3d_only=16",
    "boundary.delta=1.0",  # any settled window switches: a real (not forced) switch at 4 + 2*4
    "boundary.check_render_size=32",
    "sds.zero123_resolution=32",
    "sds.sd_resolution=32",
    "export.texture_size=64",
    "export.turntable_views=4",
    "export.turntable_size=48",
    "export.marching_cubes_resolution=32",
    "eval.render_size=48",
    "eval.clip_views_azimuths=[0,90,180,270]",
]


def make_case(root: Path, name: str = "banana") -> Path:
    """A preprocessed case folder from the published RealFusion15 files (already recentred)."""
    case = root / name
    case.mkdir(parents=True, exist_ok=True)
    shutil.copy(RF15 / f"{name}_rgba.png", case / "rgba.png")
    shutil.copy(RF15 / f"{name}_depth.png", case / "depth.png")
    (case / "caption.txt").write_text(rf15_prompts()[name] + "\n")
    return case
