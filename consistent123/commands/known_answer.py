"""``consistent123 known-answer MESH --out DIR``: reconstruct a mesh from its own render through
the oracle prior and score it against the mesh (``consistent123.experiments.known_answer``)."""

from __future__ import annotations

import argparse
import json

from consistent123.config import Config
from consistent123.experiments.known_answer import known_answer
from consistent123.tracking.run import parse_tags


def add_arguments(parser) -> None:
    parser.add_argument("mesh", metavar="MESH", help="ground-truth mesh (PLY, OBJ, GLB...)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (case/, run/, metrics.json)")
    parser.add_argument("--up-axis", choices=("y", "z"), default="y", help="the mesh's up axis (GSO scans: z)")
    parser.add_argument("--run-name", default=None, help="MLflow run name (default: known_answer/<mesh name>)")
    parser.add_argument("--tags", nargs="*", default=[], metavar="KEY=VALUE", help="extra MLflow tags")
    parser.add_argument("--parent-run-id", default=None, help="MLflow parent run (the sweep's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace, cfg: Config) -> int:
    summary = known_answer(
        args.mesh,
        args.out,
        cfg,
        args.up_axis,
        args.run_name,
        parse_tags(args.tags),
        progress=not args.no_progress,
        parent_run_id=args.parent_run_id,
    )
    print(json.dumps(summary["metrics"], indent=2))
    return 0
