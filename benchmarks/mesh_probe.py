"""Mesh probe: the mesh phase again from a finished known-answer run's NeRF, one row per setting.

    python benchmarks/mesh_probe.py SOURCE [--out results/mesh_probe] [--row NAME=k=v[,k=v...]] ...
        [--only NAME,...] [--set k=v]

SOURCE is a finished ``consistent123 known-answer`` folder (case/, run/ with its checkpoint). Each
row trains the mesh phase of SOURCE's own config with the row's overrides, from the NeRF the NeRF
phase left (consistent123/experiments/mesh_probe.py), exports, evaluates and prints CD, IoU,
mvPSNR, the share of a hard shape's cavity filled and the mesh phase's time; "nerf_only" scores
the NeRF itself (marching cubes at the hand-over threshold). Every row's folder holds
metrics.json, cross_section.png and top_down.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consistent123.experiments.mesh_probe import mesh_phase_again  # noqa: E402

ROWS = {
    "as_trained": [],
    "tet_grid_128": ["dmtet.tet_grid_size=128"],
    "tet_grid_128_render_192": ["dmtet.tet_grid_size=128", "dmtet.render_size=192"],
    "fixed_threshold": ["dmtet.init_density_rule=fixed"],
    "mesh_iters_x3": ["train.mesh_iters=1500"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a finished known-answer folder")
    parser.add_argument("--out", type=Path, default=Path("results/mesh_probe"))
    parser.add_argument("--only", default=None, help="comma-separated row names (nerf_only: the NeRF itself)")
    parser.add_argument("--row", action="append", default=[], metavar="NAME=k=v[,k=v]")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    rows = {**ROWS, "nerf_only": []}
    for spec in args.row:
        name, _, sets = spec.partition("=")
        rows[name] = sets.split(",")
    names = args.only.split(",") if args.only else list(rows)
    print(f"ORACLE prior: the mesh phase again from the NeRF of {args.source} (not the method's results)")
    print(f"{'row':<26} {'CD':>7} {'IoU':>6} {'mvPSNR':>6} {'filled%':>7} {'time_s':>6}  changes", flush=True)
    for name in names:
        summary = mesh_phase_again(
            args.source, args.out / name, [*args.overrides, *rows[name]], nerf_only=name == "nerf_only"
        )
        m = summary["metrics"]
        filled = f"{100 * m['cavity_filled']:7.1f}" if "cavity_filled" in m else f"{'-':>7}"
        print(
            f"{name:<26} {m['chamfer_distance']:7.4f} {m['volumetric_iou']:6.3f} {m['mv_psnr']:6.2f} {filled} "
            f"{m['time_s']:6.0f}  {' '.join(rows[name]) or '-'}",
            flush=True,
        )


if __name__ == "__main__":
    main()
