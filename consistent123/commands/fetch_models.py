"""``consistent123 fetch-models [--only NAME]``: download the configured real weights into the
Hugging Face cache (``consistent123.priors.fetch``), on a connected machine. The 3D prior
fetched is the chosen variant (``models.prior_3d``, consistent123/priors/variants.py)."""

from __future__ import annotations

import argparse

from consistent123.config import Config
from consistent123.priors.fetch import CONFIG_KEYS, configured_sources, fetch
from consistent123.priors.hub import is_local


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(CONFIG_KEYS),
        metavar="NAME",
        help=f"fetch only this part (repeatable): {', '.join(CONFIG_KEYS)}",
    )


def run(args: argparse.Namespace, cfg: Config) -> int:
    sources = configured_sources(cfg)
    names = args.only or list(sources)
    for part in names:
        if part not in sources:
            print(f"{part}: models.prior_3d={cfg.models.prior_3d} has no weights to fetch")
            continue
        source = sources[part]
        if is_local(source):
            print(f"{part}: {source} is a local path, nothing to fetch")
            continue
        variant = cfg.models.zero123_variant if part == "zero123" else None
        where = fetch(part, source, cfg.models.cache_dir, variant)
        print(f"{part}: {source} -> {where}")
    return 0
