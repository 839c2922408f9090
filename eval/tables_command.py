"""``consistent123 tables --out DIR``: the paper's Tables 1-6 from tracked runs.

Runs come from MLflow (``--tracking-uri``/``--experiment``, default: the config's tracking
section), else from the ``metrics.json`` files under ``--results``, or from a tidy table
saved earlier (``--runs runs.csv|runs.parquet``). Writes ``runs.csv``/``runs.parquet`` and
``table<N>.md``, ``table<N>.tex``, ``table<N>.csv`` and ``table<N>.html`` (for the report) for
each table, atomically.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from consistent123.errors import InputError
from consistent123.io import atomic_path, atomic_write_text
from eval import aggregate, tables

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder for the tables")
    parser.add_argument("--runs", default=None, help="a tidy run table (CSV or Parquet) instead of MLflow")
    parser.add_argument("--results", default=None, help="folder searched for per-run metrics.json (fallback)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: config tracking.uri)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: config tracking.experiment)")
    parser.add_argument("--sweep", default=None, help="keep only the runs tagged with this sweep")
    parser.add_argument("--no-mlflow", action="store_true", help="read only metrics.json files / --runs")
    parser.add_argument("--tables", nargs="*", type=int, default=[1, 2, 3, 4, 5, 6], choices=range(1, 7),
                        metavar="N", help="which tables (default: all six)")


def load_runs(args, cfg) -> pd.DataFrame:
    if args.runs:
        path = Path(args.runs)
        if not path.is_file():
            raise InputError(f"{path}: run table not found")
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"case": str})
    uri = experiment = None
    if not args.no_mlflow:
        from consistent123.tracking import resolve_uri

        uri = resolve_uri(args.tracking_uri or cfg.tracking.uri)
        experiment = args.experiment or cfg.tracking.experiment
    if args.results is not None and not Path(args.results).is_dir():
        raise InputError(f"{args.results}: results folder not found")
    runs = aggregate.collect_runs(uri, experiment, args.results)
    if args.sweep is not None and not runs.empty:
        runs = runs[runs.get("sweep", pd.Series(index=runs.index, dtype=object)) == args.sweep].reset_index(drop=True)
    return aggregate.latest_per_key(runs)


def write_tables(runs: pd.DataFrame, out: Path, which) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = list(aggregate.save_table(runs, out / "runs"))
    cmp = tables.compare(runs, tables=which)
    for n in which:
        written.append(atomic_write_text(out / f"table{n}.md", tables.to_markdown(cmp, n)))
        written.append(atomic_write_text(out / f"table{n}.tex", tables.to_latex(cmp, n)))
        with atomic_path(out / f"table{n}.csv") as tmp:
            tables.to_csv_frame(cmp, n).to_csv(tmp, index=False)
        written.append(out / f"table{n}.csv")
        written.append(atomic_write_text(out / f"table{n}.html", tables.to_html(cmp, n)))
    return written


def run(args, cfg) -> int:
    runs = load_runs(args, cfg)
    if runs.empty:
        log.warning("no runs found: every cell of our side will read 'missing'")
    written = write_tables(runs, Path(args.out), args.tables)
    log.info("%d runs -> %d files in %s", len(runs), len(written), args.out)
    for p in written:
        print(p)
    return 0
