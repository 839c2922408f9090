"""``consistent123 config``: print the resolved configuration (defaults <- file <- --set), then
the table of 3D prior variants as YAML comments (the chosen one marked)."""

import argparse

from consistent123.config import Config, dump_config
from consistent123.priors.variants import describe


def add_arguments(parser) -> None:
    pass


def run(args: argparse.Namespace, cfg: Config) -> int:
    print(dump_config(cfg), end="")
    print(describe(cfg), end="")
    return 0
