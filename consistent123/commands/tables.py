"""``consistent123 tables --out DIR``: the paper's Tables 1-6 (and Table 7, the 3D-prior
comparison of config/grids/priors_3d.tsv, which the paper does not have) from tracked runs.

Runs come from MLflow (``--tracking-uri``/``--experiment``, default: the config's tracking
section), else from the ``metrics.json`` files under ``--results``, or from a tidy table
saved earlier (``--runs runs.csv|runs.parquet``); ``--supplied DIR`` adds the rows of another
method's meshes scored by ``evaluate-meshes`` (Table 2, marked "supplied by the user"). Writes ``runs.csv``/``runs.parquet`` and
``table<N>.md``, ``table<N>.tex``, ``table<N>.csv`` and ``table<N>.html`` (for the report) for
each table, atomically.

It only reads: a tracking URI that points at no store is an error (never a new empty one), so
is a store that does not answer within ``tracking.connect_timeout_s`` or cannot be read, and so
are no runs at all; every input is validated and every table computed before the first file is
written.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pandas as pd

from consistent123.config import Config
from consistent123.errors import InputError
from consistent123.io import atomic_path, atomic_write_text, check_writable
from eval import aggregate, tables

REQUIRED_COLUMNS = ("benchmark", "case", "variant")

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder for the tables")
    parser.add_argument("--runs", default=None, help="a tidy run table (CSV or Parquet) instead of MLflow")
    parser.add_argument("--results", default=None, help="folder searched for per-run metrics.json (fallback)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: config tracking.uri)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: config tracking.experiment)")
    parser.add_argument("--sweep", default=None, help="keep only the runs tagged with this sweep")
    parser.add_argument(
        "--supplied",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder written by `evaluate-meshes` (another method's meshes): its rows join Table 2 "
        "as a column marked 'supplied by the user'; repeatable",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="read only metrics.json files / --runs")
    parser.add_argument(
        "--tables",
        nargs="*",
        type=int,
        default=list(tables.ALL_TABLES),
        choices=tables.ALL_TABLES,
        metavar="N",
        help="which tables (default: the paper's six and 7, the 3D-prior comparison)",
    )


def read_run_table(path: Path) -> pd.DataFrame:
    """A tidy run table saved earlier; anything else is one InputError line."""
    if not path.is_file():
        raise InputError(f"{path}: run table not found")
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"case": str})
    except (OSError, ValueError, ImportError) as exc:  # pyarrow's and pandas' parse errors are ValueErrors
        kind = "Parquet" if path.suffix == ".parquet" else "CSV"
        raise InputError(f"{path}: not a readable {kind} run table ({exc.__class__.__name__})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: not a run table (no column {', '.join(missing)}; written by `tables` as runs.csv)")
    for metric in aggregate.METRICS:
        if metric in df.columns:
            values = pd.to_numeric(df[metric], errors="coerce")
            if (values.isna() & df[metric].notna()).any():
                raise InputError(f"{path}: column {metric!r} has non-numeric values")
            df[metric] = values
    return df


def load_runs(args: argparse.Namespace, cfg: Config) -> pd.DataFrame:
    if args.runs:
        return pd.concat([read_run_table(Path(args.runs)), *supplied_runs(args.supplied)], ignore_index=True)
    uri = experiment = None
    if not args.no_mlflow:
        from consistent123.tracking import store as tracking

        uri = tracking.resolve_uri(args.tracking_uri or cfg.tracking.uri, create=False)
        experiment = args.experiment or cfg.tracking.experiment
        # A store named on purpose must exist; the config's default may be absent when the
        # metrics.json files are what the user asked for.
        named = args.tracking_uri or os.environ.get(tracking.TRACKING_URI_ENV) or args.results is None
        path = tracking.local_store_path(uri)
        if named or path is None or path.exists():
            tracking.check_store(uri, cfg.tracking.connect_timeout_s, write=False)
        else:
            uri = None
    if args.results is not None and not Path(args.results).is_dir():
        raise InputError(f"{args.results}: results folder not found")
    runs = aggregate.collect_runs(uri, experiment, args.results)
    if args.sweep is not None and not runs.empty:
        runs = runs[runs.get("sweep", pd.Series(index=runs.index, dtype=object)) == args.sweep].reset_index(drop=True)
    return aggregate.latest_per_key(pd.concat([runs, *supplied_runs(args.supplied)], ignore_index=True))


def supplied_runs(folders: list[str]) -> list[pd.DataFrame]:
    """The rows `evaluate-meshes` wrote under each folder (its metrics.json files)."""
    frames = []
    for folder in folders:
        files = aggregate.find_metrics_files(folder) if Path(folder).is_dir() else []
        if not files:
            raise InputError(f"{folder}: no metrics.json of `evaluate-meshes` found")
        frames.append(aggregate.runs_from_files(files))
    return frames


def write_tables(runs: pd.DataFrame, out: Path, which) -> list[Path]:
    cmp = tables.compare(runs, tables=which)
    texts = {
        f"table{n}.{ext}": render(cmp, n)
        for n in which
        for ext, render in (("md", tables.to_markdown), ("tex", tables.to_latex))
    }
    texts.update({f"table{n}.html": tables.to_html(cmp, n) for n in which})
    frames = {f"table{n}.csv": tables.to_csv_frame(cmp, n) for n in which}
    check_writable(out)  # everything computed: now write
    written = list(aggregate.save_table(runs, out / "runs"))
    for n in which:
        written.append(atomic_write_text(out / f"table{n}.md", texts[f"table{n}.md"]))
        written.append(atomic_write_text(out / f"table{n}.tex", texts[f"table{n}.tex"]))
        with atomic_path(out / f"table{n}.csv") as tmp:
            frames[f"table{n}.csv"].to_csv(tmp, index=False)
        written.append(out / f"table{n}.csv")
        written.append(atomic_write_text(out / f"table{n}.html", texts[f"table{n}.html"]))
    return written


def refuse_no_runs(args: argparse.Namespace, out: Path) -> None:
    """No runs: one line, and no folder (a read-only --out is still named first)."""
    created = not out.exists()
    check_writable(out)
    if created:
        out.rmdir()
    where = args.runs or (
        f"metrics.json files under {args.results}" if args.no_mlflow else "the tracking store and --results"
    )
    sweep = f" of sweep {args.sweep!r}" if args.sweep is not None else ""
    raise InputError(f"no runs{sweep} found in {where}: no table written")


def run(args: argparse.Namespace, cfg: Config) -> int:
    runs = load_runs(args, cfg)
    if runs.empty:
        refuse_no_runs(args, Path(args.out))
    written = write_tables(runs, Path(args.out), args.tables)
    log.info("%d runs -> %d files in %s", len(runs), len(written), args.out)
    for p in written:
        print(p)
    return 0
