"""What the tests and the perf scripts share: a tiny but complete method configuration and the
case folders to run it on (one made in code, one copied from the published RealFusion15 files).

Part of the library so that perf/ never imports the tests; like the rest of the method it
imports nothing from eval, experiments, commands or tests.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# The published RealFusion15 and C10 cases a source checkout ships beside the package (not part
# of an installed wheel): the real inputs the tests read.
DATASETS = Path(__file__).resolve().parents[1] / "datasets"
RF15 = DATASETS / "realfusion15"
C10 = DATASETS / "c10"


def rf15_prompts() -> dict[str, str]:
    """The authors' RealFusion15 prompts (case -> text)."""
    with open(RF15 / "prompts.tsv", newline="") as f:
        return {row["case"]: row["prompt"] for row in csv.DictReader(f, delimiter="\t")}


# Small enough for a few seconds per phase on 2 CPU cores, large enough to exercise every part:
# a boundary window that can fire, a forced switch bound, both phases and a checkpoint.
TINY_OVERRIDES = [
    "hashgrid.num_levels=4",
    "hashgrid.log2_hashmap_size=12",
    "hashgrid.base_resolution=8",
    "hashgrid.desired_resolution_per_bound=64",
    "hashgrid.backend=torch",
    "nerf.render_size=32",
    "nerf.sampler=stratified",
    "nerf.num_steps=24",
    "nerf.upsample_steps=0",
    "nerf.hidden_dim=16",
    "nerf.occupancy_grid_resolution=16",
    "dmtet.tet_grid_size=16",
    "dmtet.render_size=48",
    "dmtet.unseen_grid=32",  # where a config turns the unseen fill on, it stays quick
    "dmtet.unseen_views=[3,8]",
    "dmtet.unseen_render_size=48",
    "train.nerf_iters=24",
    "train.mesh_iters=12",
    "train.checkpoint_every=8",
    "train.ema_every=8",  # the NeRF average is updated (and checkpointed) within the tiny NeRF phase
    "train.log_every=4",
    "train.log_images_every=12",
    "boundary.every=4",
    "boundary.window=2",
    "boundary.least_3d_only=4",
    "boundary.most_3d_only=16",
    "boundary.delta=1.0",  # any settled window switches: a real (not forced) switch at 4 + 2*4
    "boundary.check_render_size=32",
    "boundary.check_source_size=64",  # R's render -> 8 bits -> area resize, in two bands
    "boundary.check_band_rows=32",
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


def synthetic_case(root: Path, name: str = "egg", size: int = 64) -> Path:
    """A preprocessed case made in code (a yellow ellipse, nearer in its middle): no data files."""
    from consistent123.case import depth_to_png16

    case = Path(root) / name
    case.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    r2 = ((xx - centre) / (0.28 * size)) ** 2 + ((yy - centre) / (0.375 * size)) ** 2
    mask = r2 < 1
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = (220, 190, 40)
    rgba[..., 3] = mask * 255
    Image.fromarray(rgba, "RGBA").save(case / "rgba.png")
    depth_to_png16(np.where(mask, 1 - np.sqrt(np.clip(1 - r2, 0, 1)), 0.0)).save(case / "depth.png")
    (case / "caption.txt").write_text("a yellow egg\n")
    return case
