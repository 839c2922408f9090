"""The paper's Tables 1-6 from the tidy run table, with the paper's numbers beside ours.

``compare`` gives one long frame (one row per paper cell: paper value, our mean, difference,
number of runs, the priors of those runs); ``to_markdown`` / ``to_latex`` lay it out like the
paper, each cell reading ``ours / paper (ours - paper)``. A cell we have no runs for says
``missing``; a cell we cannot reproduce (another group's method) says ``n/a``; nothing missing
is ever shown as 0.

Every number is named with its protocol (eval/protocols.py): the paper's cells compare only our
runs scored under ``paper`` (appendix A.2; runs from before protocols existed count as such).
Table 2 gains one extra column per (method, protocol) of GSO runs that are not those: meshes a
user supplied (``consistent123 evaluate-meshes``, marked "supplied by the user") and our runs
under another protocol; their cells have no paper value and show ours alone.

Only runs with pretrained priors are compared with the paper: a cell with any other run
(random-weight, no priors, not recorded) shows ``ours / paper`` with no difference, and a table
holding such a cell opens with a one-line banner saying the numbers are not comparable.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.csv")

TITLES = {
    1: "Table 1: RealFusion15 and C10 (reference view PSNR/LPIPS, CLIP-similarity of novel views)",
    2: "Table 2: GSO (Chamfer distance, volumetric IoU, 18-view PSNR/LPIPS)",
    3: "Table 3: dynamic-prior schedule form per category (RealFusion15 + C10)",
    4: "Table 4: reference-loss weights (a) {1000,500,0} (b) {10,1000,500} (c) {500,10,1000} (d) {800,600,400} (default) {1000,500,10} for (lambda_rgb, lambda_mask, lambda_depth)",
    5: "Table 5: boundary window and threshold (a) L=1, d=2.5e-5 (b) L=20, d=2.5e-5 (c) L=5, d=1e-4 (d) L=5, d=1e-3 (default) L=5, d=2.5e-4",
    6: "Table 6: strategies (a) fixed switch at 3000 (b) w2D = 1 in stage 2 (c) single stage, sigma = 1.5",
    7: "Table 7 (not in the paper): the 3D prior (Zero-1-to-3 XL, Zero-1-to-3, Stable Zero123), input elevation auto",
}

METRIC_LABELS = {
    "clip_similarity": "CLIP-Similarity ↑",
    "psnr": "PSNR ↑",
    "lpips": "LPIPS ↓",
    "chamfer_distance": "CD ↓",
    "volumetric_iou": "IoU ↑",
    "mv_psnr": "PSNR ↑",
    "mv_lpips": "LPIPS ↓",
    "mv_ssim": "SSIM ↑",
    "normal_consistency": "NC ↑",
    "fscore_0.1": "FS@0.1 ↑",
    "fscore_0.2": "FS@0.2 ↑",
    "fscore_0.5": "FS@0.5 ↑",
}
# Table 2's metrics in the extra columns, and their printed precision.
EXTRA_DECIMALS = {
    "chamfer_distance": 4,
    "volumetric_iou": 3,
    "fscore_0.1": 3,
    "fscore_0.2": 3,
    "fscore_0.5": 3,
    "normal_consistency": 3,
    "mv_psnr": 2,
    "mv_ssim": 3,
    "mv_lpips": 3,
}
PAPER_PROTOCOL = "paper"
SUPPLIED = "user"  # the `supplied` tag of a user's mesh rows (eval/mesh_folder.py)
PROTOCOL_NOTE = (
    "Protocol: every number is scored under `paper` (appendix A.2; eval/protocols.py) unless its column names another."
)
BENCHMARK_LABELS = {
    "realfusion15": "RealFusion15",
    "c10": "C10",
    "gso": "GSO",
    "realfusion15+c10": "RealFusion15 + C10",
}

# Paper column (method or setting) -> the run variant that reproduces it (see eval/aggregate.py).
# Columns absent here are other groups' methods: shown with the paper's number and "n/a".
SETTING_VARIANTS: dict[int, dict[str, str]] = {
    1: {"consistent123": "default", "zero-1-to-3": "strategy=3d_only", "magic123": "strategy=magic123"},
    2: {"consistent123": "default", "zero-1-to-3": "strategy=3d_only", "magic123": "strategy=magic123"},
    3: {"log": "schedule=log", "linear": "schedule=linear", "exp": "default"},
    4: {"a": "lambda=a", "b": "lambda=b", "c": "lambda=c", "d": "lambda=d", "default": "default"},
    5: {"a": "Ldelta=a", "b": "Ldelta=b", "c": "Ldelta=c", "d": "Ldelta=d", "default": "default"},
    6: {"a": "strategy=a", "b": "strategy=b", "c": "strategy=c", "default": "default"},
    7: {p: f"prior={p}" for p in ("zero123_xl", "zero123", "stable_zero123")},
}
# The ablation each table varies: a run's `variant` tag is "<ablation>=<setting>" (aggregate.py).
ABLATION_OF_TABLE = {1: "strategy", 2: "strategy", 3: "schedule", 4: "lambda", 5: "Ldelta", 6: "strategy", 7: "prior"}
# Tables of our own ablations (config/grids/priors_3d.tsv): no paper number, our cells only.
OWN_TABLE_METRICS = {
    7: {
        "realfusion15": ("clip_similarity", "psnr", "lpips"),
        "c10": ("clip_similarity", "psnr", "lpips"),
        "gso": ("chamfer_distance", "volumetric_iou", "mv_psnr", "mv_lpips"),
    }
}
ALL_TABLES = (1, 2, 3, 4, 5, 6, 7)


def variant_tag(table: int, setting: str) -> str:
    """The `variant` tag of the run made for ``setting`` of paper table ``table``."""
    return "default" if setting == "default" else f"{ABLATION_OF_TABLE[table]}={setting}"


# Other spellings of the default run's variant.
VARIANT_ALIASES = {
    "schedule=exp": "default",
    "schedule=exponential": "default",
    "lambda=default": "default",
    "Ldelta=default": "default",
    "strategy=default": "default",
    "strategy=consistent123": "default",
}

MISSING = "missing"
NOT_REPRODUCED = "n/a"
REAL = "real"  # the `priors` tag of a run whose models were all pretrained (eval/aggregate.py)
RANDOM_BACKBONE = "RANDOM-BACKBONE"  # eval.image_metrics.LpipsMetric.name's suffix for the random trunk
RANDOM_BANNER = "random-weight priors: these numbers exercise the pipeline and are not comparable to the paper"
OTHER_BANNER = (
    "priors not pretrained or not recorded for some runs (see the priors column): "
    "those cells are not compared with the paper"
)


def _priors_of(runs: pd.DataFrame, metric: str) -> str:
    """The priors kinds of the runs that gave a value, e.g. "real", "random", "random+real"."""
    kinds = runs.loc[runs[metric].notna() & np.isfinite(runs[metric]), "priors"].fillna("unknown")
    return "+".join(sorted(set(kinds)))


def _random_lpips(runs: pd.DataFrame, metric: str) -> bool:
    """Whether any run behind an LPIPS value scored it on the random trunk (``-RANDOM-BACKBONE``)."""
    if "lpips" not in metric or "lpips_model" not in runs:
        return False
    models = runs.loc[runs[metric].notna(), "lpips_model"].dropna().astype(str)
    return bool(models.str.endswith(RANDOM_BACKBONE).any())


def load_paper_numbers(path: str | Path = PAPER_NUMBERS) -> pd.DataFrame:
    """The paper's numbers; ``decimals`` is taken from the printed value. Our own tables' cells
    follow, with no paper value (NaN) at 3 decimals."""
    df = pd.read_csv(path, comment="#", dtype={"value": str, "group": str, "note": str}, keep_default_na=False)
    df["decimals"] = df["value"].map(lambda v: len(v.split(".")[1]) if "." in v else 0)
    df["value"] = df["value"].astype(float)
    own = [
        {
            "table": t,
            "benchmark": b,
            "group": "",
            "setting": s,
            "metric": m,
            "value": math.nan,
            "note": "",
            "decimals": 3,
        }
        for t, benches in OWN_TABLE_METRICS.items()
        for b, metrics in benches.items()
        for m in metrics
        for s in SETTING_VARIANTS[t]
    ]
    return pd.concat([df, pd.DataFrame(own, columns=df.columns)], ignore_index=True)


def _prior_3d_of(runs: pd.DataFrame, metric: str) -> str:
    """The 3D prior variants of the runs that gave a value, e.g. "zero123_xl"."""
    kinds = runs.loc[runs[metric].notna() & np.isfinite(runs[metric]), "prior_3d"].fillna("unrecorded")
    return "+".join(sorted(set(kinds)))


def _mean_or_nan(values: pd.Series) -> tuple[float, int]:
    values = values.dropna()
    values = values[np.isfinite(values)]
    return (float(values.mean()), int(len(values))) if len(values) else (math.nan, 0)


def _cell_value(sel: pd.DataFrame, cell) -> tuple[float, int]:
    """(value, runs behind it) of one cell over one seed's runs ``sel`` (already filtered)."""
    if cell.group == "average" and sel["category"].notna().any():
        # Table 3's last column: mean of the category means
        means = [_mean_or_nan(g[cell.metric])[0] for _, g in sel.groupby("category")]
        means = [m for m in means if not math.isnan(m)]
        return (float(np.mean(means)), int(sel[cell.metric].notna().sum())) if means else (math.nan, 0)
    # "average" without categories: the paper's 50-image category split is unpublished, so all runs.
    return _mean_or_nan(sel[cell.metric]) if len(sel) else (math.nan, 0)


def compare(runs: pd.DataFrame, paper: pd.DataFrame | None = None, tables=(1, 2, 3, 4, 5, 6)) -> pd.DataFrame:
    """One row per paper cell: table, benchmark, group, setting, metric, paper, ours (mean over seeds),
    std (across seeds; NaN with one seed), n_seeds, diff, n_runs, status."""
    paper = load_paper_numbers() if paper is None else paper
    runs = runs.copy()
    runs["variant"] = runs["variant"].fillna("default").replace(VARIANT_ALIASES)
    if "priors" not in runs:  # a run table saved before runs recorded their priors
        runs["priors"] = "unknown"
    if "prior_3d" not in runs:  # ... or their 3D prior
        runs["prior_3d"] = "unrecorded"
    for column in ("protocol", "supplied", "method"):  # run tables saved before these tags
        if column not in runs:
            runs[column] = None
    # object first: a CSV column with no value at all reads back as float NaN
    runs["protocol"] = runs["protocol"].astype(object).fillna(PAPER_PROTOCOL)
    runs["method"] = runs["method"].astype(object).fillna("consistent123")
    if "seed" not in runs:  # runs recorded before seeds: one repetition
        runs["seed"] = None
    runs["seed"] = runs["seed"].astype(object).fillna("0").astype(str)
    elsewhere = (runs["supplied"] == SUPPLIED) | (runs["protocol"] != PAPER_PROTOCOL)
    extra_runs, runs = runs[elsewhere], runs[~elsewhere]
    out = []
    for cell in paper[paper["table"].isin(list(tables))].itertuples(index=False):
        variant = SETTING_VARIANTS.get(cell.table, {}).get(cell.setting)
        ours, std, n, n_seeds, priors, random_lpips, prior_3d = math.nan, math.nan, 0, 0, "", False, ""
        if variant is None:
            status = NOT_REPRODUCED
        else:
            benches = cell.benchmark.split("+")
            sel = runs[(runs["variant"] == variant) & runs["benchmark"].isin(benches)]
            if cell.metric not in sel:
                sel = sel.iloc[0:0]
            if cell.group and cell.group != "average":
                sel = sel[sel["category"] == cell.group]
            # The cell's value per seed (the paper's one-seed statistic), then mean and standard
            # deviation across seeds: the spread says how much the number moves from seed to seed.
            per_seed = [_cell_value(g, cell) for _, g in sel.groupby("seed")] if len(sel) else []
            per_seed = [(v, k) for v, k in per_seed if k]
            n = sum(k for _, k in per_seed)
            n_seeds = len(per_seed)
            if n_seeds:
                values = np.array([v for v, _ in per_seed])
                ours = float(values.mean())
                std = float(values.std(ddof=1)) if n_seeds > 1 else math.nan
            status = "ok" if n else MISSING
            priors = _priors_of(sel, cell.metric) if n else ""
            random_lpips = bool(n) and _random_lpips(sel, cell.metric)
            prior_3d = _prior_3d_of(sel, cell.metric) if n else ""
        out.append(
            {
                "table": cell.table,
                "benchmark": cell.benchmark,
                "group": cell.group,
                "setting": cell.setting,
                "metric": cell.metric,
                "paper": cell.value,
                "ours": ours,
                "std": std,
                "n_seeds": n_seeds,
                "diff": ours - cell.value if n and priors == REAL else math.nan,
                "n_runs": n,
                "status": status,
                "priors": priors,
                "prior_3d": prior_3d,
                "decimals": cell.decimals,
                "note": cell.note,
                "random_lpips": random_lpips,
                "protocol": PAPER_PROTOCOL,
            }
        )
    if 2 in tables:
        out += extra_rows(extra_runs)
    return pd.DataFrame(out)


def extra_label(method: str, variant: str, protocol: str, supplied) -> str:
    """The column of a (method, protocol) outside the paper's cells, naming both."""
    who = method if variant == "default" else f"{method} {variant}"
    return (
        f"{who} (supplied by the user; protocol {protocol})" if supplied == SUPPLIED else f"{who} (protocol {protocol})"
    )


def extra_rows(runs: pd.DataFrame) -> list[dict]:
    """Table 2 cells of GSO runs outside the paper's columns: one column per (method, variant,
    protocol, supplied), one cell per metric any of its runs has; no paper value, no difference."""
    runs = runs[runs["benchmark"] == "gso"]
    out = []
    keys = ["method", "variant", "protocol", "supplied"]
    for (method, variant, protocol, supplied), group in runs.groupby(keys, dropna=False, sort=True):
        for metric, decimals in EXTRA_DECIMALS.items():
            if metric not in group:
                continue
            ours, n = _mean_or_nan(group[metric])
            if not n:
                continue
            out.append(
                {
                    "table": 2,
                    "benchmark": "gso",
                    "group": "",
                    "setting": extra_label(method, variant, protocol, supplied),
                    "metric": metric,
                    "paper": math.nan,
                    "ours": ours,
                    "std": math.nan,  # a supplied or other-protocol column: one value per case, no seeds
                    "n_seeds": 1,
                    "diff": math.nan,
                    "n_runs": n,
                    "status": "ok",
                    "priors": _priors_of(group, metric),
                    "prior_3d": "" if supplied == SUPPLIED else _prior_3d_of(group, metric),
                    "decimals": decimals,
                    "note": "",
                    "protocol": protocol,
                }
            )
    return out


# ---------------------------------------------------------------- layout
def format_cell(row) -> str:
    """``ours / paper (diff)``; a missing or not-reproduced side says so in words."""
    d = int(row["decimals"])
    if math.isnan(row["paper"]):  # a column outside the paper's: ours alone
        return _number(row["ours"], d) if row["status"] == "ok" else row["status"]
    paper = f"{row['paper']:.{d}f}" + ("†" if row.get("note") else "")
    if row["status"] != "ok":
        return f"{row['status']} / {paper}"
    ours = _number(row["ours"], d)
    n_seeds = int(row.get("n_seeds", 1) or 1)
    if n_seeds > 1:  # mean ± standard deviation across seeds, and how many seeds
        ours = f"{ours} ± {_number(row['std'], d)} (n={n_seeds})"
    if row["priors"] != REAL:  # not comparable: the paper's number beside ours, no difference
        return f"{ours} / {paper}"
    return f"{ours} / {paper} ({_number(row['diff'], d, sign=True)})"


def banner(cmp: pd.DataFrame, table: int) -> str:
    """The one-line warning a table opens with when any of its numbers is not comparable ("" if none)."""
    compared = (cmp["table"] == table) & (cmp["status"] == "ok") & cmp["paper"].notna()
    kinds = set("+".join(cmp.loc[compared, "priors"]).split("+")) - {""}
    if "random" in kinds:
        return RANDOM_BANNER
    return OTHER_BANNER if kinds - {REAL} else ""


def _number(value: float, decimals: int, sign: bool = False) -> str:
    """The paper's precision; a small non-zero value keeps two significant digits instead of 0.000."""
    plus = "+" if sign else ""
    if value != 0 and round(value, decimals) == 0:
        return f"{value:{plus}.1e}"
    return f"{value:{plus}.{decimals}f}"


def layout(cmp: pd.DataFrame, table: int) -> pd.DataFrame:
    """The paper's grid for ``table``: rows (benchmark, [setting,] metric), columns settings or categories."""
    sub = cmp[cmp["table"] == table].copy()
    sub["cell"] = sub.apply(format_cell, axis=1)
    sub["Dataset"] = sub["benchmark"].map(BENCHMARK_LABELS)
    sub["Metric"] = sub["metric"].map(METRIC_LABELS)
    # LPIPS on a random trunk is not LPIPS: its rows say so in the metric's own name.
    flagged = sub["random_lpips"].fillna(False).astype(bool) if "random_lpips" in sub else sub["metric"].isna()
    random_rows = sub["metric"].isin(sub.loc[flagged, "metric"]) & sub["metric"].str.contains("lpips")
    sub.loc[random_rows, "Metric"] = sub.loc[random_rows, "Metric"] + f" ({RANDOM_BACKBONE})"
    if table == 3:
        index, columns = ["setting", "Metric"], "group"
    else:
        index, columns = ["Dataset", "Metric"], "setting"
    order = {c: sub[c].drop_duplicates().tolist() for c in (*index, columns)}  # keep the paper's order
    grid = sub.pivot(index=index, columns=columns, values="cell")
    grid = grid.reindex(columns=order[columns])
    grid = grid.reindex(
        pd.MultiIndex.from_tuples(sub[index].drop_duplicates().itertuples(index=False, name=None), names=index)
    )
    grid = grid.fillna(NOT_REPRODUCED)

    # Which priors the row's numbers come from (empty: no run behind any of its cells).
    def joined(column: str) -> pd.Series:
        return (
            sub.groupby(index, sort=False)[column]
            .agg(lambda kinds: "+".join(sorted(set("+".join(kinds).split("+")) - {""})))
            .reindex(grid.index)
        )

    grid["Priors"] = joined("priors")
    # The 3D prior variant(s) behind the row (models.prior_3d): an ablation of the prior reads at a glance.
    grid["3D prior"] = joined("prior_3d")
    return grid.reset_index().rename(columns={"setting": "Method"})


def _rows(grid: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [str(c) for c in grid.columns]
    body = [[str(v) for v in row] for row in grid.itertuples(index=False, name=None)]
    return header, body


SEEDS_LEGEND = "With several seeds, ours reads mean ± standard deviation across seeds (n = seeds)."


def _legend(cmp: pd.DataFrame, table: int) -> str:
    if banner(cmp, table):
        text = "Each cell: ours / paper; (ours − paper) only where every run had pretrained priors."
    else:
        text = "Each cell: ours / paper (ours − paper)."
    if (cmp.loc[cmp["table"] == table, "paper"].isna()).any():
        text += " Columns naming a protocol have no paper value: the cell is their number alone."
    return text + " " + SEEDS_LEGEND + " " + PROTOCOL_NOTE


def to_markdown(cmp: pd.DataFrame, table: int) -> str:
    header, body = _rows(layout(cmp, table))
    warning = banner(cmp, table)
    lines = [f"**{warning}**", ""] if warning else []
    lines += [
        f"**{TITLES[table]}**",
        "",
        _legend(cmp, table) + " "
        "`missing`: no run yet; `n/a`: not reproduced here. †: the paper does not compare this value. "
        "Priors: the priors of the runs behind the row (real = pretrained, random = random-weight).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "†": r"$^\dagger$",
    "−": "-",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(cmp: pd.DataFrame, table: int) -> str:
    header, body = _rows(layout(cmp, table))
    warning = banner(cmp, table)
    lines = [f"% {warning}"] if warning else []
    lines += [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\caption{"
        + (latex_escape(warning) + ". " if warning else "")
        + latex_escape(TITLES[table])
        + ". "
        + latex_escape(_legend(cmp, table)).replace("(ours - paper)", r"(ours $-$ paper)")
        + "}",
        r"\begin{tabular}{" + "l" * 2 + "c" * (len(header) - 2) + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_html(cmp: pd.DataFrame, table: int) -> str:
    """A self-contained page of one table (for the Snakemake report, which shows HTML inline)."""
    import html

    header, body = _rows(layout(cmp, table))
    warning = banner(cmp, table)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(TITLES[table]) + "</title>"
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:14px}"
        "th,td{border:1px solid #bbb;padding:4px 8px;text-align:center;white-space:nowrap}"
        ".banner{background:#fff3cd;border:1px solid #e0b000;padding:8px;font-weight:bold}</style></head><body>"
        + (f"<p class='banner'>{html.escape(warning)}</p>" if warning else "")
        + f"<h3>{html.escape(TITLES[table])}</h3><p>{html.escape(_legend(cmp, table))} missing: no run yet; "
        "n/a: not reproduced here; †: the paper does not compare this value. Priors: the priors of the runs "
        "behind the row (real = pretrained, random = random-weight).</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></body></html>\n"
    )


def to_csv_frame(cmp: pd.DataFrame, table: int) -> pd.DataFrame:
    """The long, machine-readable form of one table (empty cells are empty, never 0)."""
    cols = [
        "table",
        "benchmark",
        "group",
        "setting",
        "metric",
        "protocol",
        "paper",
        "ours",
        "std",
        "n_seeds",
        "diff",
        "n_runs",
        "status",
        "priors",
        "prior_3d",
    ]
    return cmp.loc[cmp["table"] == table, cols].reset_index(drop=True)
