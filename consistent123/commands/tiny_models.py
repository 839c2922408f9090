"""``consistent123 tiny-models [DIR]``: every pretrained part at tiny size with random weights
(consistent123.priors.standins.tiny), or the full-size architectures' parameter counts."""

from __future__ import annotations

import argparse
from pathlib import Path

from consistent123.config import Config
from consistent123.priors.standins import tiny


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir",
        metavar="DIR",
        nargs="?",
        default=None,
        help="folder to build the tiny models in (default: where models.tiny looks for them: models.tiny_dir, "
        "$CONSISTENT123_TINY_MODELS, else ~/.cache/consistent123/tiny-models)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when DIR is already complete")
    parser.add_argument(
        "--size",
        choices=("tiny", "full"),
        default="tiny",
        help="full: the real architectures with random weights, built in memory (nothing is "
        "written to DIR) and loaded like the real models; prints each part's parameter count",
    )
    parser.add_argument(
        "--device",
        default="meta",
        help="with --size full: where to build them (meta = no memory, counts only; cpu/cuda allocate ~10 GB)",
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.size == "full":
        from consistent123.priors.standins.full_size import print_parameter_counts

        print_parameter_counts(cfg, args.device)
        return 0
    root = Path(args.dir) if args.dir else cfg.models.model_copy(update={"tiny": True}).tiny_models_dir()
    paths = tiny.build_tiny_models(root) if args.force else tiny.ensure_tiny_models(root)
    for name, path in paths.items():
        print(f"{name}\t{path}")
    return 0
