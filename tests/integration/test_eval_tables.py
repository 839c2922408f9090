"""Tables from the committed fixture runs, checked cell by cell against the raw files."""

from __future__ import annotations

import csv
import json
import math
import statistics

import pandas as pd
import pytest

from eval import aggregate, tables
from tests.support.eval_inputs import FIXTURE_RUNS

PAPER_CSV = tables.PAPER_NUMBERS


def raw_runs():
    """The fixture runs read with json only (independent of eval.aggregate)."""
    return [json.loads(p.read_text()) for p in sorted(FIXTURE_RUNS.rglob("metrics.json"))]


def raw_paper():
    with open(PAPER_CSV) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    return {(int(r["table"]), r["benchmark"], r["group"], r["setting"], r["metric"]): r["value"] for r in rows}


@pytest.fixture(scope="module")
def runs():
    return aggregate.runs_from_files(aggregate.find_metrics_files(FIXTURE_RUNS))


def test_paper_numbers_complete():
    paper = raw_paper()
    counts = {}
    for key in paper:
        counts[key[0]] = counts.get(key[0], 0) + 1
    # Table 1: 7 methods x 3 metrics x 2 sets; 2: 4 x 4; 3: 3 forms x 3 metrics x 11 columns;
    # 4, 5: 5 settings x 3 x 2; 6: 4 x 3 x 2.
    assert counts == {1: 42, 2: 16, 3: 99, 4: 30, 5: 30, 6: 24}
    # Spot checks against the paper's text (spec §9).
    assert paper[(1, "realfusion15", "", "consistent123", "clip_similarity")] == "0.844"
    assert paper[(1, "c10", "", "consistent123", "psnr")] == "25.327"
    assert paper[(2, "gso", "", "consistent123", "chamfer_distance")] == "0.0416"
    assert paper[(2, "gso", "", "consistent123", "volumetric_iou")] == "0.5020"
    assert paper[(3, "realfusion15+c10", "average", "exp", "psnr")] == "25.30"
    # Every ablation's default column is the method's Table 1 number.
    for t in (4, 5, 6):
        for bench in ("realfusion15", "c10"):
            for metric in ("clip_similarity", "psnr", "lpips"):
                assert paper[(t, bench, "", "default", metric)] == paper[(1, bench, "", "consistent123", metric)]


def test_tidy_table_has_every_run_with_tags(runs, tmp_path):
    raw = raw_runs()
    assert len(runs) == len(raw) >= 5
    assert set(runs.columns) >= {"run_id", "benchmark", "case", "category", "variant", "method", "psnr", "lpips"}
    assert runs["method"].eq("consistent123").all()
    csv_path, pq_path = aggregate.save_table(runs, tmp_path / "runs")
    back = pd.read_parquet(pq_path)
    assert list(back.columns) == list(runs.columns) and len(back) == len(runs)
    assert pd.read_csv(csv_path, dtype={"case": str})["case"].tolist() == runs["case"].tolist()


def test_every_cell_matches_the_raw_runs(runs):
    cmp = tables.compare(runs)
    paper = raw_paper()
    raw = raw_runs()
    assert len(cmp) == len(paper)
    for row in cmp.itertuples(index=False):
        assert row.paper == float(paper[(row.table, row.benchmark, row.group, row.setting, row.metric)])
        variant = tables.SETTING_VARIANTS.get(row.table, {}).get(row.setting)
        if variant is None:
            assert row.status == "n/a" and math.isnan(row.ours) and math.isnan(row.diff)
            continue
        benches = row.benchmark.split("+")
        chosen = [
            r
            for r in raw
            if r["tags"]["variant"] == variant and r["tags"]["benchmark"] in benches and row.metric in r["metrics"]
        ]
        if row.group == "average":
            by_cat = {}
            for r in chosen:
                by_cat.setdefault(r["tags"].get("category"), []).append(r["metrics"][row.metric])
            values = [statistics.mean(v) for v in by_cat.values()]
        else:
            if row.group:
                chosen = [r for r in chosen if r["tags"].get("category") == row.group]
            values = [r["metrics"][row.metric] for r in chosen]
        values = [v for v in values if math.isfinite(v)]
        if not values:
            assert row.status == "missing" and math.isnan(row.ours), row
            continue
        expected = statistics.mean(values)
        assert row.status == "ok" and row.ours == pytest.approx(expected, rel=1e-12)
        kinds = {r["tags"]["priors"] for r in chosen if math.isfinite(r["metrics"][row.metric])}
        assert row.priors == "+".join(sorted(kinds))
        if kinds == {"real"}:
            assert row.diff == pytest.approx(expected - row.paper, rel=1e-12, abs=1e-15)
        else:  # random-weight runs are never compared with the paper
            assert math.isnan(row.diff)
    # The fixture fills some cells of every kind, and leaves others missing.
    assert set(cmp["status"]) == {"ok", "missing", "n/a"}
    assert (cmp["table"][cmp["status"] == "ok"]).nunique() >= 4


def test_rendered_cells(runs):
    cmp = tables.compare(runs)
    md = tables.to_markdown(cmp, 1)
    ours = cmp[
        (cmp.table == 1) & (cmp.benchmark == "realfusion15") & (cmp.setting == "consistent123") & (cmp.metric == "psnr")
    ].iloc[0]
    assert ours.status == "ok" and ours.priors == "random"  # the fixture runs used the tiny models
    assert md.splitlines()[0] == f"**{tables.RANDOM_BANNER}**"
    assert f"| {ours.ours:.3f} / 25.682 |" in md and "(+" not in md and "(-" not in md
    assert "n/a / 6.749" in md  # Shap-E: the paper's number, not reproduced here
    assert "missing / 0.759" in md  # Zero-1-to-3 column: reproducible, no run yet
    assert "0.839†" in md
    # Nothing missing reads as a number.
    for t in range(1, 7):
        text = tables.to_markdown(cmp, t)
        assert " 0.000 " not in text and "nan" not in text.lower()
        tex = tables.to_latex(cmp, t)
        assert tex.count(r"\\") == text.count("\n|") - 1 and "\\begin{tabular}" in tex
    frame = tables.to_csv_frame(cmp, 4)
    assert frame["ours"].isna().sum() == (frame["status"] != "ok").sum()


def test_empty_run_table_is_all_missing():
    cmp = tables.compare(aggregate.runs_from_files([]))
    assert set(cmp["status"]) == {"missing", "n/a"} and cmp["ours"].isna().all()


# ---------------------------------------------------------------- real vs random-weight priors
def _write_run(root, i, benchmark, case, priors, metrics):
    path = root / f"run{i}" / "metrics.json"
    path.parent.mkdir()
    tags = {"benchmark": benchmark, "case": case, "variant": "default", "priors": priors}
    path.write_text(json.dumps({"metrics": metrics, "run": {"run_id": f"r{i}"}, "tags": tags}))


def _markdown_rows(md: str) -> list[dict]:
    """The body of a Markdown table as {header: cell} rows."""
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split(" | ")))) for line in lines[1:]]


@pytest.fixture()
def mixed_runs(tmp_path):
    """RealFusion15 runs with pretrained priors, C10 runs with one random-weight run among them."""
    runs = [
        ("realfusion15", "banana", "real", {"psnr": 24.0, "lpips": 0.10, "clip_similarity": 0.80}),
        ("realfusion15", "cactus", "real", {"psnr": 26.5, "lpips": 0.14, "clip_similarity": 0.86}),
        ("c10", "07", "real", {"psnr": 20.0, "lpips": 0.20, "clip_similarity": 0.70}),
        ("c10", "12", "random", {"psnr": 12.0, "lpips": 0.05, "clip_similarity": 0.99}),
    ]
    for i, run in enumerate(runs):
        _write_run(tmp_path, i, *run)
    return aggregate.runs_from_files(aggregate.find_metrics_files(tmp_path))


def test_random_weight_runs_get_a_banner_and_no_difference(mixed_runs, tmp_path):
    from consistent123.commands.tables import write_tables

    assert sorted(mixed_runs["priors"]) == ["random", "real", "real", "real"]
    cmp = tables.compare(mixed_runs, tables=[1])
    md = tables.to_markdown(cmp, 1)
    assert md.splitlines()[0] == f"**{tables.RANDOM_BANNER}**"
    grid = {(row["Dataset"], row["Metric"]): row for row in _markdown_rows(md)}
    paper = raw_paper()
    ours = {
        "realfusion15": {"psnr": 25.25, "lpips": 0.12, "clip_similarity": 0.83},
        "c10": {"psnr": 16.0, "lpips": 0.125, "clip_similarity": 0.845},
    }
    for bench, label in (("realfusion15", "RealFusion15"), ("c10", "C10")):
        for metric, metric_label in tables.METRIC_LABELS.items():
            if (1, bench, "", "consistent123", metric) not in paper:
                continue
            cell = grid[(label, metric_label)]["consistent123"]
            value = paper[(1, bench, "", "consistent123", metric)]
            if bench == "realfusion15":  # every run real: the difference stays
                diff = ours[bench][metric] - float(value)
                assert cell == f"{ours[bench][metric]:.3f} / {value} ({diff:+.3f})", cell
            else:  # one random-weight run: the paper's number beside ours, no difference
                assert cell == f"{ours[bench][metric]:.3f} / {value}", cell
            row = cmp[(cmp.benchmark == bench) & (cmp.setting == "consistent123") & (cmp.metric == metric)].iloc[0]
            assert row.priors == ("real" if bench == "realfusion15" else "random+real")
            assert math.isnan(row["diff"]) == (bench == "c10")
        assert grid[(label, "PSNR ↑")]["Priors"] == ("real" if bench == "realfusion15" else "random+real")
    # The LaTeX and CSV files carry the banner / the priors column too.
    write_tables(mixed_runs, tmp_path / "out", [1])
    tex = (tmp_path / "out" / "table1.tex").read_text()
    assert tex.splitlines()[0] == f"% {tables.RANDOM_BANNER}" and "Priors" in tex
    page = (tmp_path / "out" / "table1.html").read_text()
    assert f"<p class='banner'>{tables.RANDOM_BANNER}</p>" in page and "<td>random+real</td>" in page
    frame = pd.read_csv(tmp_path / "out" / "table1.csv", keep_default_na=False)
    ok = frame[frame["status"] == "ok"]
    assert set(ok["priors"]) == {"real", "random+real"}
    assert (ok["diff"] == "").tolist() == (ok["priors"] != "real").tolist()


def test_tables_of_real_runs_only_keep_the_difference_and_no_banner(mixed_runs):
    cmp = tables.compare(mixed_runs[mixed_runs["priors"] == "real"], tables=[1])
    md = tables.to_markdown(cmp, 1)
    assert tables.RANDOM_BANNER not in md and not md.startswith("**random")
    assert "24." not in md  # the mean of banana and cactus, not one run
    assert "25.250 / 25.682 (-0.432)" in md and "20.000 / 25.327 (-5.327)" in md
    assert tables.RANDOM_BANNER not in tables.to_latex(cmp, 1)


def test_lpips_scored_on_the_random_trunk_is_labelled_in_every_format(mixed_runs, tmp_path):
    from consistent123.commands.tables import write_tables

    runs = mixed_runs.copy()
    runs["lpips_model"] = ["lpips-v0.1-alex"] * 3 + ["lpips-v0.1-alex-RANDOM-BACKBONE"]
    write_tables(runs, tmp_path / "out", [1])
    label = f"LPIPS ↓ ({tables.RANDOM_BACKBONE})"
    for name in ("table1.md", "table1.html"):
        text = (tmp_path / "out" / name).read_text()
        assert label in text, name
        assert "PSNR ↑ (" not in text  # only LPIPS rows carry it
    assert "LPIPS $\\downarrow$ (RANDOM-BACKBONE)" in (tmp_path / "out" / "table1.tex").read_text()
    # Every run on the real backbone: the plain label.
    runs["lpips_model"] = "lpips-v0.1-alex"
    md = tables.to_markdown(tables.compare(runs, tables=[1]), 1)
    assert "LPIPS ↓ |" in md and tables.RANDOM_BACKBONE not in md


# ---------------------------------------------------------------- protocols
def test_runs_under_another_protocol_get_their_own_column_not_the_papers(tmp_path):
    """Only `paper`-protocol runs (or runs from before protocols) meet the paper's Table 2 cells;
    the same method under `syncdreamer` is a column of its own, named by its protocol."""
    rows = [("gso", "a", None, 0.04), ("gso", "b", "paper", 0.06), ("gso", "a", "syncdreamer", 0.5)]
    for i, (benchmark, case, protocol, cd) in enumerate(rows):
        path = tmp_path / f"run{i}" / "metrics.json"
        path.parent.mkdir()
        tags = {"benchmark": benchmark, "case": case, "variant": "default", "priors": "real"}
        if protocol:
            tags["protocol"] = protocol
        path.write_text(json.dumps({"metrics": {"chamfer_distance": cd}, "run": {"run_id": f"r{i}"}, "tags": tags}))
    runs = aggregate.latest_per_key(aggregate.runs_from_files(aggregate.find_metrics_files(tmp_path)))
    assert len(runs) == 3  # same case, two protocols: both kept
    cmp = tables.compare(runs, tables=(2,))
    ours = cmp[(cmp["setting"] == "consistent123") & (cmp["metric"] == "chamfer_distance")].iloc[0]
    assert ours["ours"] == pytest.approx(0.05) and ours["n_runs"] == 2 and ours["protocol"] == "paper"
    other = cmp[cmp["setting"] == "consistent123 (protocol syncdreamer)"]
    assert list(other["metric"]) == ["chamfer_distance"] and other["ours"].iloc[0] == 0.5
    assert math.isnan(other["paper"].iloc[0]) and math.isnan(other["diff"].iloc[0])
    md = tables.to_markdown(cmp, 2)
    assert "| consistent123 (protocol syncdreamer) | Priors |" in md and "| 0.5000 | real |" in md
    assert "Protocol: every number is scored under `paper`" in md


# ---------------------------------------------------------------- the 3D prior of every row
def test_tables_name_the_3d_prior_of_every_row_and_table_7_compares_the_priors():
    from eval.aggregate import _frame, _row

    rows = []
    for i, (variant, prior, psnr) in enumerate(
        [
            ("default", "zero123_xl", 20.0),
            ("prior=zero123", "zero123", 18.0),
            ("prior=stable_zero123", "stable_zero123", 22.0),
        ]
    ):
        tags = {"benchmark": "realfusion15", "case": f"c{i}", "variant": variant, "priors": "real", "prior_3d": prior}
        rows.append(_row(f"r{i}", tags, {"psnr": psnr, "lpips": 0.1, "clip_similarity": 0.8}, "test"))
    rows.append(
        _row("old", {"benchmark": "c10", "case": "x", "variant": "default", "priors": "real"}, {"psnr": 1}, "t")
    )
    runs = _frame(rows)
    assert runs.set_index("run_id").loc["old", "prior_3d"] == "unrecorded"
    cmp = tables.compare(runs, tables=[1, 7])
    grid1 = tables.layout(cmp, 1).set_index(["Dataset", "Metric"])
    assert grid1.loc[("RealFusion15", "PSNR ↑"), "3D prior"] == "zero123_xl"
    assert grid1.loc[("C10", "PSNR ↑"), "3D prior"] == "unrecorded"
    grid7 = tables.layout(cmp, 7).set_index(["Dataset", "Metric"])
    psnr = grid7.loc[("RealFusion15", "PSNR ↑")]
    assert (psnr["zero123"], psnr["stable_zero123"]) == ("18.000", "22.000")  # ours alone: no paper number
    assert psnr["zero123_xl"] == "missing"  # the grid's zero123_xl row runs with elevation auto: not the default run
    assert psnr["3D prior"] == "stable_zero123+zero123"
    assert "Table 7" in tables.to_markdown(cmp, 7)
