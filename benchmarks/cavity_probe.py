"""Cavity probe: does the NeRF phase carve a hard shape's cavity? One row per setting, same seed.

    python benchmarks/cavity_probe.py [--object cup] [--iters N] [--out results/cavity_probe]
        [--row NAME=k=v[,k=v...]] ... [--config config/known_answer.yaml] [--set k=v]

Trains the NeRF phase alone (the mesh phase only inherits what it leaves: DMTet's SDF starts
from its density) with the ORACLE prior in both roles, then reads the density on the
evaluation's voxel lattice (64^3 over the truth's normalised box) and prints, per row:

    IoU      of {sigma > the hand-over threshold (dmtet.init_density_rule)} with the truth's solid voxels
    filled   share of the cavity's voxels (consistent123/experiments/hard_shapes.py) above that threshold
    seen     share of the cavity that some camera of the polar range sees empty (consistent123.render.visibility.seen_empty)
    seen_filled  share of that seen-empty part above the threshold: what the cameras could carve
    wall     share of the truth's solid voxels above that threshold (a carved cup keeps its walls)
    occ      share of occupancy-grid cells still marked occupied
    time_s   the NeRF phase's wall time

and writes <out>/<row>/cross_section.png (eval/cross_section.py). Rows change one thing each
against "r_recipe" (the config with R's orbit, progressive view range and permanent blob);
"as_configured" is the config as given; ``--row`` adds rows, ``--only`` picks some.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consistent123.config import load_config  # noqa: E402
from consistent123.experiments import hard_shapes  # noqa: E402
from consistent123.experiments.cavity_probe import probe  # noqa: E402

# R's orbit, view schedule and blob (what config/known_answer.yaml changes for carving).
R_RECIPE = ["cameras.polar_range=[45.0,105.0]", "cameras.progressive_view=true", "nerf.blob_fade=0.0"]
# One change per row against "r_recipe"; "as_configured" is the config file as given.
ROWS = {
    "r_recipe": R_RECIPE,
    "no_blob": [*R_RECIPE, "nerf.blob_density=0.0"],
    "blob_fade": [*R_RECIPE, "nerf.blob_fade=0.5"],
    "no_progressive_view": [*R_RECIPE, "cameras.progressive_view=false"],
    "high_cameras": [*R_RECIPE, "cameras.polar_range=[15.0,105.0]"],
    "fine_steps": [*R_RECIPE, "nerf.num_steps=128", "nerf.upsample_steps=64"],
    "no_importance": [*R_RECIPE, "nerf.upsample_steps=0", "nerf.num_steps=48"],
    "no_occupancy_decay": [*R_RECIPE, "nerf.occupancy_decay=1.0"],
    "as_configured": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object", default="cup", choices=list(hard_shapes.SHAPES))
    parser.add_argument("--iters", type=int, default=None, help="NeRF iterations (default: the config's)")
    parser.add_argument("--config", default=str(REPO / "config" / "known_answer.yaml"))
    parser.add_argument("--out", default="results/cavity_probe")
    parser.add_argument("--only", default=None, help="comma-separated row names")
    parser.add_argument("--row", action="append", default=[], metavar="NAME=k=v[,k=v]")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    rows = dict(ROWS)
    for spec in args.row:
        name, _, sets = spec.partition("=")
        rows[name] = sets.split(",")
    names = args.only.split(",") if args.only else list(rows)
    print("ORACLE prior, NeRF phase only; one change per row against r_recipe (R's orbit, view range, blob)")
    print(
        f"{'object':<8} {'row':<22} {'IoU':>6} {'filled%':>7} {'seen%':>6} {'seen_filled%':>12} {'wall%':>5} {'occ%':>5} "
        f"{'time_s':>6}  changes",
        flush=True,
    )
    for name in names:
        iters = [f"train.nerf_iters={args.iters}"] if args.iters else []
        cfg = load_config(args.config, [*args.overrides, *rows[name], *iters])
        m = probe(args.object, cfg, Path(args.out) / name)
        print(
            f"{args.object:<8} {name:<22} {m['iou']:6.3f} {100 * m['filled']:7.1f} {100 * m['seen']:6.1f} "
            f"{100 * m['seen_filled']:12.1f} {100 * m['wall']:5.1f} {100 * m['occ']:5.1f} "
            f"{m['time_s']:6.0f}  {' '.join(rows[name]) or '-'}",
            flush=True,
        )


if __name__ == "__main__":
    main()
