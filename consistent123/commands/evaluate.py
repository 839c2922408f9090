"""``consistent123 evaluate OUT --case DIR [--gt-mesh MESH]``: the metrics of one reconstruction
(``eval.evaluate``), written to ``OUT/metrics.json`` and logged into its MLflow run."""

from __future__ import annotations

import argparse
import json

from consistent123.config import Config
from consistent123.tracking.run import parse_tags
from eval.evaluate import evaluate_run


def add_arguments(parser) -> None:
    parser.add_argument("out_dir", metavar="OUT", help="reconstruction output folder")
    parser.add_argument("--case", required=True, metavar="DIR", help="preprocessed case folder (rgba.png)")
    parser.add_argument("--gt-mesh", default=None, metavar="MESH", help="ground-truth mesh (GSO benchmark)")
    parser.add_argument(
        "--tags",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="run tags to record (benchmark, case, category, variant, table; see eval/aggregate.py)",
    )
    parser.add_argument("--no-log", action="store_true", help="do not log into the MLflow run of OUT/run.json")


def run(args: argparse.Namespace, cfg: Config) -> int:
    record = evaluate_run(args.out_dir, args.case, cfg, args.gt_mesh, parse_tags(args.tags), log_mlflow=not args.no_log)
    print(json.dumps(record["metrics"], indent=2))
    return 0
