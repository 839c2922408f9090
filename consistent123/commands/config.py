"""``consistent123 config``: print the resolved configuration (defaults <- file <- --set)."""

from consistent123.config import dump_config


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    print(dump_config(cfg), end="")
    return 0
