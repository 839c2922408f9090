"""``consistent123 preprocess IMAGE --out DIR [--caption TEXT] [--depth FILE] [--elevation DEG]``."""

from __future__ import annotations

import argparse

from consistent123.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="input photo (JPEG/PNG; an alpha channel is used as the mask)")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder: rgba.png, depth.png, caption.txt, preprocess.json"
    )
    parser.add_argument("--caption", default=None, metavar="TEXT", help="use this caption instead of the captioner")
    parser.add_argument(
        "--depth",
        default=None,
        metavar="FILE",
        help="use this depth map (larger = farther, same framing as IMAGE) instead of the estimator",
    )
    parser.add_argument(
        "--elevation",
        type=float,
        default=None,
        metavar="DEG",
        help="the photo's known elevation above the object's equator (degrees; recorded in elevation.json, "
        "followed by every camera relative to the input view)",
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    from consistent123.preprocess.pipeline import preprocess_image

    preprocess_image(args.image, args.out, cfg, caption=args.caption, depth_path=args.depth, elevation=args.elevation)
    return 0
