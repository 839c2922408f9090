"""``consistent123 evaluate-meshes DIR --benchmark gso --method NAME --gt-pattern PATTERN --out OUT``:
any method's meshes (one per case, named by case) scored with our alignment and the configured
protocol (``eval.protocol``); rows for ``consistent123 tables --supplied OUT`` (``eval.mesh_folder``)."""

from __future__ import annotations

import argparse

from consistent123.config import Config
from eval.mesh_folder import default_manifest, evaluate_mesh_folder
from eval.protocols import get_protocol

METRIC_COLUMNS = (
    "chamfer_distance",
    "volumetric_iou",
    "fscore_0.1",
    "normal_consistency",
    "mv_psnr",
    "mv_ssim",
    "mv_lpips",
)


def add_arguments(parser) -> None:
    parser.add_argument("mesh_dir", metavar="DIR", help="one mesh per case, named by case (GLB, OBJ or PLY)")
    parser.add_argument("--benchmark", required=True, choices=["gso"], help="the benchmark the meshes answer")
    parser.add_argument("--method", required=True, metavar="NAME", help="the method's name for the tables' rows")
    parser.add_argument(
        "--gt-pattern",
        required=True,
        metavar="PATTERN",
        help="ground-truth mesh path with {model} (the manifest's gt_mesh) and/or {case}, "
        "e.g. /data/gso/{model}/meshes/model.obj",
    )
    parser.add_argument("--out", required=True, metavar="OUT", help="output folder (OUT/<case>/metrics.json, runs.csv)")
    parser.add_argument(
        "--manifest", default=None, help="object list (default: the protocol's, e.g. datasets/gso.tsv for paper)"
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    protocol = get_protocol(cfg.eval.protocol)
    manifest = args.manifest or default_manifest(protocol.objects)
    runs = evaluate_mesh_folder(
        args.mesh_dir, args.out, args.method, cfg, args.gt_pattern, manifest, benchmark=args.benchmark
    )
    shown = ["case", *[c for c in METRIC_COLUMNS if c in runs and runs[c].notna().any()]]
    print(f"{args.method} (supplied by the user), protocol {protocol.name}, {len(runs)} case(s)")
    print(runs[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if cfg.eval.lpips_random_backbone:
        print("mv_lpips: LPIPS on a RANDOM-BACKBONE trunk (eval.lpips_random_backbone): not LPIPS, not comparable")
    return 0
