"""The real inputs the tests read: the published RealFusion15 and C10 cases shipped in datasets/."""

from __future__ import annotations

import csv
from pathlib import Path

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
RF15 = DATASETS / "realfusion15"
C10 = DATASETS / "c10"


def rf15_prompts() -> dict[str, str]:
    """The authors' RealFusion15 prompts (case -> text)."""
    with open(RF15 / "prompts.tsv", newline="") as f:
        return {row["case"]: row["prompt"] for row in csv.DictReader(f, delimiter="\t")}
