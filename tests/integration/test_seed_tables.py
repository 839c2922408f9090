"""Several seeds: a cell is the mean over seeds of the one-seed value, with the standard
deviation across seeds and their number, in every layout."""

from __future__ import annotations

import statistics

import pandas as pd

from eval import aggregate, tables


def seeded_runs() -> pd.DataFrame:
    """Two RealFusion15 cases x two seeds, built with the aggregate's own row form."""
    psnr = {("banana", "0"): 20.0, ("cactus", "0"): 22.0, ("banana", "1"): 23.0, ("cactus", "1"): 27.0}
    rows = [
        aggregate._row(
            f"{case}-{seed}",
            {"benchmark": "realfusion15", "case": case, "variant": "default", "sweep": "s", "seed": seed},
            {"psnr": value},
            "test",
        )
        for (case, seed), value in psnr.items()
    ]
    return aggregate._frame(rows), psnr


def test_a_cell_is_the_mean_over_seeds_with_its_spread_and_n(tmp_path):
    runs, psnr = seeded_runs()
    assert len(aggregate.latest_per_key(runs)) == 4  # seeds are not re-runs of one another
    cmp = tables.compare(runs, tables=(1,))
    cell = cmp[(cmp["benchmark"] == "realfusion15") & (cmp["setting"] == "consistent123") & (cmp["metric"] == "psnr")]
    cell = cell.iloc[0]
    per_seed = [statistics.mean([psnr[("banana", s)], psnr[("cactus", s)]]) for s in ("0", "1")]  # 21, 25
    assert cell["ours"] == statistics.mean(per_seed)
    assert cell["std"] == statistics.stdev(per_seed)
    assert (cell["n_seeds"], cell["n_runs"]) == (2, 4)
    text = tables.format_cell(cell)
    assert text.startswith(f"{per_seed[0] / 2 + per_seed[1] / 2:.3f} ± {statistics.stdev(per_seed):.3f} (n=2) / ")
    assert "± 2.828 (n=2)" in tables.to_markdown(cmp, 1) and "± 2.828 (n=2)" in tables.to_latex(cmp, 1)
    csv = tables.to_csv_frame(cmp, 1)
    assert {"ours", "std", "n_seeds"} <= set(csv.columns)


def test_one_seed_has_no_spread_and_reads_as_before():
    runs, psnr = seeded_runs()
    cmp = tables.compare(runs[runs["seed"] == "0"], tables=(1,))
    cell = cmp[(cmp["benchmark"] == "realfusion15") & (cmp["metric"] == "psnr") & (cmp["status"] == "ok")].iloc[0]
    assert cell["n_seeds"] == 1 and pd.isna(cell["std"])
    assert "±" not in tables.format_cell(cell)
