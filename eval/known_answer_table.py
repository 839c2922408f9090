"""The known-answer benchmark's table, laid out like the paper's Table 2 (GSO).

One row per object (its ``DIR/metrics.json`` from ``consistent123 known-answer``) and their
mean, beside the paper's Consistent123 row for scale. The runs use the ORACLE prior (the
truth itself): their numbers measure the pipeline, never a prior, and are not comparable to
the paper's, which the title and the label column say.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from eval.tables import load_paper_numbers

COLUMNS = {
    "chamfer_distance": "CD ↓",
    "volumetric_iou": "IoU ↑",
    "mv_psnr": "PSNR ↑",
    "mv_lpips": "LPIPS ↓",
    "psnr": "ref PSNR ↑",
    "time_s": "time (s)",
}
DECIMALS = {"chamfer_distance": 4, "volumetric_iou": 3, "mv_psnr": 2, "mv_lpips": 3, "psnr": 2, "time_s": 0}
TITLE = "Known-answer benchmark (ORACLE prior: measures the pipeline, not comparable to the paper)"


def read_runs(paths: list[str | Path]) -> pd.DataFrame:
    """Rows (object, label, metrics...) from known-answer metrics.json files."""
    from consistent123.io import read_json  # the one JSON reader with a clear error

    rows = []
    for path in paths:
        record = read_json(path, "known-answer metrics file")
        variant = record["tags"].get("variant", "oracle")
        rows.append(
            {
                "object": record["object"],
                "label": "oracle" if variant == "oracle" else f"oracle, {variant}",
                # runs scored before protocols existed used the paper's (eval/protocols.py)
                "protocol": record["tags"].get("protocol", "paper"),
                **{k: record["metrics"].get(k) for k in COLUMNS},
            }
        )
    return pd.DataFrame(rows, columns=["object", "label", "protocol", *COLUMNS])


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-object rows, their mean, and the paper's Table 2 Consistent123 row (real priors)."""
    mean = {
        "object": f"mean ({len(runs)} object{'s' if len(runs) != 1 else ''})",
        "label": "oracle",
        "protocol": "+".join(sorted(set(runs["protocol"]))),
        **{k: runs[k].astype(float).mean() for k in COLUMNS},
    }
    paper = load_paper_numbers()
    paper = paper[(paper["table"] == 2) & (paper["setting"] == "consistent123")].set_index("metric")["value"]
    paper_row = {
        "object": "paper Table 2, GSO mean",
        "label": "Consistent123, real priors",
        "protocol": "paper",
        **{k: paper.get(k, float("nan")) for k in COLUMNS},
    }
    return pd.concat([runs, pd.DataFrame([mean, paper_row])], ignore_index=True)


def to_markdown(frame: pd.DataFrame) -> str:
    header = ["object", "prior", *COLUMNS.values()]
    protocols = "; ".join(f"{row['object']}: {row['protocol']}" for _, row in frame.iterrows())
    lines = [f"### {TITLE}", "", f"Protocol of each row (eval/protocols.py): {protocols}.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in frame.iterrows():
        cells = [str(row["object"]), str(row["label"])]
        for key in COLUMNS:
            value = row[key]
            cells.append("–" if value is None or pd.isna(value) else f"{float(value):.{DECIMALS[key]}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(paths: list[str | Path], out_dir: str | Path) -> list[Path]:
    """known_answer.md and known_answer.csv in ``out_dir``."""
    from consistent123.io import atomic_write_text

    frame = table(read_runs(paths))
    out_dir = Path(out_dir)
    md = atomic_write_text(out_dir / "known_answer.md", to_markdown(frame))
    csv = atomic_write_text(out_dir / "known_answer.csv", frame.to_csv(index=False))
    return [md, csv]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="known-answer table from metrics.json files")
    parser.add_argument("metrics", nargs="+")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    for path in write_tables(args.metrics, args.out):
        print(path)
    print(json.dumps(read_runs(args.metrics).to_dict(orient="records"), indent=1))
    return 0


if __name__ == "__main__":  # python -m eval.known_answer_table DIR/*/metrics.json --out OUT
    raise SystemExit(main())
