"""``consistent123`` command line.

Each sub-command is one module of ``consistent123.commands`` with two functions:
``add_arguments(parser)`` and ``run(args, cfg) -> int``; the work itself is in the library. This file only wires them, loads
the config (``--config FILE`` and repeated ``--set section.key=value``) and turns the
project's errors, and the operating system's (read-only folder, full disk) and the tracking
store's, into one line on stderr and a non-zero exit. That line is the last one a failed
command prints and starts with ``consistent123 COMMAND: error:`` (the workflow quotes it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import traceback

from consistent123.errors import Consistent123Error
from consistent123.io import describe_os_error

# name -> (module, one-line help). Modules are imported only when their command runs, so
# `consistent123 preprocess` never pays for importing the renderer, and so on.
COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("consistent123.commands.preprocess", "mask, recentre, depth and caption one image"),
    "tiny-models": (
        "consistent123.commands.tiny_models",
        "build every pretrained part at tiny size with random weights",
    ),
    "fetch-models": ("consistent123.commands.fetch_models", "download the real weights into the Hugging Face cache"),
    "reconstruct": ("consistent123.commands.reconstruct", "run the two-stage optimisation on a preprocessed case"),
    "evaluate": ("consistent123.commands.evaluate", "metrics of one reconstruction (writes OUT/metrics.json)"),
    "eval-mesh": ("consistent123.commands.eval_mesh", "the configured protocol's geometry metrics of two meshes"),
    "evaluate-meshes": (
        "consistent123.commands.evaluate_meshes",
        "score a folder of any method's meshes (one per case) under the configured protocol",
    ),
    "tables": ("consistent123.commands.tables", "the paper's tables from tracked runs"),
    "known-answer": (
        "consistent123.commands.known_answer",
        "reconstruct a mesh through the oracle prior and score it against the mesh",
    ),
    "config": ("consistent123.commands.config", "print the resolved configuration"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consistent123", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", default=None, help="YAML config (defaults: the paper's settings)")
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override one config value; repeatable",
        )
        p.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as exc:  # a command whose module is not built in this install
            if exc.name != module:
                raise
            p.set_defaults(_missing=True)
    return parser


def error_line(command: str, message: str) -> str:
    """The marked final line of a failed command (workflow/scripts/_cli.py looks for it)."""
    return f"consistent123 {command}: error: {' '.join(str(message).split())}"


def _tracking_failure(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("mlflow", "sqlalchemy")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (Snakemake, SLURM) ends a job like Ctrl-C: logs flushed, run marked


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if getattr(args, "_missing", False):
        print(f"consistent123: error: command {args.command!r} is not available in this install", file=sys.stderr)
        return 2
    from consistent123.config import load_config

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    cfg = None
    try:
        cfg = load_config(args.config, args.overrides)
        return int(importlib.import_module(args._module).run(args, cfg) or 0)
    except Consistent123Error as exc:
        print(error_line(args.command, exc), file=sys.stderr)
        return 2
    except OSError as exc:  # read-only folder, full disk, no permission: the path and the cause
        print(error_line(args.command, describe_os_error(exc, action="at")), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(error_line(args.command, "interrupted"), file=sys.stderr)
        return 130
    except Exception as exc:
        if not _tracking_failure(exc):
            traceback.print_exc()  # a bug: the traceback for the report, then the marked line
            print(error_line(args.command, f"internal error: {exc.__class__.__name__}: {exc}"), file=sys.stderr)
            return 1
        # An MLflow store that refuses (read-only database, locked, unreachable): its first line.
        from consistent123.tracking.store import resolve_uri

        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
        uri = resolve_uri(cfg.tracking.uri if cfg else None, create=False)
        print(error_line(args.command, f"MLflow tracking store {uri}: {first}"), file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
