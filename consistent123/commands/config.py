"""``consistent123 config``: print the resolved configuration (defaults <- file <- --set)."""

import argparse

from consistent123.config import Config, dump_config


def add_arguments(parser) -> None:
    pass


def run(args: argparse.Namespace, cfg: Config) -> int:
    print(dump_config(cfg), end="")
    return 0
