"""``consistent123 config``: print the resolved configuration (defaults <- file <- --set), then
the table of 3D prior variants (priors/variants.py) and the GSO evaluation protocols side by
side (eval/protocols.py), each with the selected one marked, as YAML comments (the output stays
one YAML document)."""

import argparse

from consistent123.config import Config, dump_config
from consistent123.priors.variants import describe
from eval.protocols import protocol_table


def add_arguments(parser) -> None:
    pass


def run(args: argparse.Namespace, cfg: Config) -> int:
    print(dump_config(cfg), end="")
    print(describe(cfg), end="")
    print()
    print(f"# GSO evaluation protocols (eval.protocol = {cfg.eval.protocol}; eval/protocols.py)")
    print("".join(f"# {line}\n" for line in protocol_table(cfg.eval).splitlines()), end="")
    return 0
