"""``consistent123`` command line.

Each sub-command lives in the module that owns its job and exposes two functions:
``add_arguments(parser)`` and ``run(args, cfg) -> int``. This file only wires them, loads
the config (``--config FILE`` and repeated ``--set section.key=value``) and turns the
project's errors into one line on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from consistent123.errors import Consistent123Error

# name -> (module, one-line help). Modules are imported only when their command runs, so
# `consistent123 preprocess` never pays for importing the renderer, and so on.
COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("consistent123.preprocess.command", "mask, recentre, depth and caption one image"),
    "tiny-models": ("consistent123.priors.tiny", "build every pretrained part at tiny size with random weights"),
    "fetch-models": ("consistent123.priors.fetch", "download the real weights into the Hugging Face cache"),
    "reconstruct": ("consistent123.reconstruct", "run the two-stage optimisation on a preprocessed case"),
    "evaluate": ("eval.command", "metrics of one reconstruction (writes OUT/metrics.json)"),
    "eval-mesh": ("eval.mesh_command", "Chamfer distance and volumetric IoU of two meshes"),
    "tables": ("eval.tables_command", "the paper's tables from tracked runs"),
    "known-answer": ("consistent123.known_answer", "reconstruct a mesh through the oracle prior and score it against the mesh"),
    "config": ("consistent123.config_command", "print the resolved configuration"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consistent123", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=None, help="YAML config (defaults: the paper's settings)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override one config value; repeatable")
        p.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as exc:  # a command whose module is not built in this install
            if exc.name != module:
                raise
            p.set_defaults(_missing=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "_missing", False):
        print(f"consistent123: error: command {args.command!r} is not available in this install", file=sys.stderr)
        return 2
    from consistent123.config import load_config

    try:
        cfg = load_config(args.config, args.overrides)
        return int(importlib.import_module(args._module).run(args, cfg) or 0)
    except Consistent123Error as exc:
        print(f"consistent123 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"consistent123 {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
