"""``consistent123 eval-mesh GT PRED``: the geometry metrics of the configured protocol
(``eval.protocol``: Chamfer distance, volumetric IoU, F-score, normal consistency) as JSON on stdout."""

from __future__ import annotations

import argparse
import json

from consistent123.config import Config
from eval.mesh_metrics import compare_mesh_files


def add_arguments(parser) -> None:
    parser.add_argument("gt", metavar="GT", help="ground-truth mesh (OBJ, GLB, PLY, STL, OFF)")
    parser.add_argument("pred", metavar="PRED", help="reconstructed mesh")


def run(args: argparse.Namespace, cfg: Config) -> int:
    result = compare_mesh_files(args.gt, args.pred, cfg.eval)
    print(json.dumps(result, indent=2))
    return 0
