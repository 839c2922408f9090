"""``consistent123 run PHOTO --out DIR [--demo]``: one photo to a 3D result and a page to open
(``consistent123.experiments.one_photo``): preprocess, reconstruct, reference-view evaluation,
``DIR/index.html``."""

from __future__ import annotations

import argparse
from pathlib import Path

from consistent123.config import Config, load_config
from consistent123.errors import ConfigError
from consistent123.experiments.one_photo import demo_config_path, run_one_photo
from eval.run_page import format_metric


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photo", metavar="PHOTO", help="input photo (JPEG/PNG; an alpha channel is used as the mask)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (index.html, case/, run/)")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="the CPU demo's settings with random-weight tiny priors (no downloads; the result exercises "
        "the pipeline, it is not the method's)",
    )
    parser.add_argument("--caption", default=None, metavar="TEXT", help="use this caption instead of the captioner")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.demo:
        if args.config:
            raise ConfigError("--demo brings its own config; pass --config or --demo, not both")
        cfg = load_config(demo_config_path(), args.overrides)
    result = run_one_photo(args.photo, args.out, cfg, caption=args.caption, progress=not args.no_progress)
    written = [result.page, result.run_dir / "mesh.glb", result.run_dir / "metrics.json"]
    shown = ", ".join(f"{k} {format_metric(k, v)}" for k, v in result.metrics.items())
    print(f"metrics ({result.priors} priors): {shown}")
    for path in written:
        if Path(path).is_file():
            print(f"wrote {path}")
    print(f"open {result.page.resolve().as_uri()}")
    return 0
