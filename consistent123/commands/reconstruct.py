"""``consistent123 reconstruct DIR --out OUT``: one case through the whole schedule
(``consistent123.pipeline.reconstruct``); OUT's files are listed in ``consistent123.run_folder``."""

from __future__ import annotations

import argparse

from consistent123.config import Config
from consistent123.pipeline.reconstruct import reconstruct
from consistent123.tracking.run import parse_tags


def add_arguments(parser) -> None:
    parser.add_argument("case_dir", metavar="DIR", help="preprocessed case folder (rgba.png, depth.png, caption.txt)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--run-name", default=None, help="MLflow run name (default: the case folder's name)")
    parser.add_argument("--parent-run-id", default=None, help="MLflow parent run (one per sweep)")
    parser.add_argument(
        "--tags", nargs="*", default=[], metavar="KEY=VALUE", help="MLflow tags (benchmark, case, variant, table)"
    )
    # Test hook: stop as if killed after N iterations (checkpoint kept), to exercise resume.
    parser.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, cfg: Config) -> int:
    reconstruct(
        args.case_dir,
        args.out,
        cfg,
        run_name=args.run_name,
        parent_run_id=args.parent_run_id,
        tags=parse_tags(args.tags),
        stop_after=args.stop_after,
        progress=not args.no_progress,
    )
    print(f"reconstruction written to {args.out}")
    return 0
