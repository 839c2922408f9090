#!/usr/bin/env bash
# Snakemake runs this once in the new environment (`--sdm conda`), from the working directory:
# the repository root, where the README runs `snakemake`. It installs the project with its
# pinned dependencies (pyproject.toml), so the jobs import the same consistent123 and eval.
set -euo pipefail
pip install -e .
