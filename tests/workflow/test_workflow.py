"""The Snakemake workflow: dry runs of the demo and the paper DAG, config and case-sheet
validation, and the benchmark manifests' checksums against the real data shipped in datasets/."""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO / "datasets"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def dry_run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "-n", "--quiet", "all", *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )


def dag_jobs(*args: str, cwd: Path = REPO) -> list[str]:
    """Output paths of every job in the dry-run DAG (one `output:` line per job).

    --forceall: the whole DAG, whatever a previous run left under results/."""
    start = time.perf_counter()
    proc = subprocess.run([*SNAKEMAKE, "-n", "--forceall", *args], cwd=cwd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # A dry run must stay quick (seconds; generous bound for a loaded 2-core CI machine).
    assert time.perf_counter() - start < 90
    return re.findall(r"^\s+output: (.+)$", proc.stdout, flags=re.M)


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A copy of the workflow files only, so tests can edit configs and sheets freely."""
    for name in ("Snakefile", "workflow", "config", "datasets"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


# ---------------------------------------------------------------- dry runs
def test_demo_dry_run_lists_every_step_for_both_demo_cases():
    jobs = dag_jobs()
    meshes = sorted(j.split(",")[0] for j in jobs if "/runs/" in j and "mesh.glb" in j)
    assert meshes == [f"results/demo/runs/realfusion15/default/{c}/mesh.glb" for c in ("banana", "cactus")]
    for step in (
        "parent_run.json",
        "method.yaml",
        "preprocess/realfusion15/banana/rgba.png",
        "metrics.json",
        "tables.done",
        "report/front_page.rst",
        "known_answer/Android_Figure_Panda/metrics.json",
        "known_answer/known_answer.md",
    ):
        assert any(step in j for j in jobs), step


def test_snakemake_lint_finds_nothing():
    """`snakemake --lint`: every job rule names its conda environment, helpers live in
    common.smk, no hard-coded path prefixes. Any lint fails the test with the linter's text."""
    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, timeout=180)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in text, text[-4000:]


def test_paper_dag_lists_every_case_and_variant_exactly_once():
    jobs = dag_jobs("--configfile", "config/paper.yaml")
    found = [re.search(r"runs/([^/]+)/([^/]+)/([^/]+)/mesh\.glb", j).groups() for j in jobs if "mesh.glb" in j]
    runs = [(b, c, v) for b, v, c in found]  # paths are runs/<benchmark>/<variant>/<case>/
    counts = Counter(runs)
    assert counts and max(counts.values()) == 1
    rf15 = [r["case"] for r in read_tsv(REPO / "datasets/realfusion15.tsv")]
    c10 = [r["case"] for r in read_tsv(REPO / "datasets/c10.tsv")]
    gso = [r["case"] for r in read_tsv(REPO / "datasets/gso.tsv")]
    # tables 3-6 and the baselines of tables 1-2 (Table 7, the 3D priors, is config/priors_3d.yaml's)
    grids = sorted(g for g in (REPO / "config/grids").glob("*.tsv") if g.name != "priors_3d.tsv")
    # Every grid row is a variant; rows equal to the paper's settings all collapse into "default".
    n_rows = sum(len(read_tsv(g)) for g in grids)
    n_default_rows = len(grids)  # each grid has exactly one row with the paper's settings
    n_variants = n_rows - n_default_rows + 1
    variants_of = lambda bench: {v for b, _, v in runs if b == bench}  # noqa: E731
    assert len(variants_of("realfusion15")) == n_variants == len(variants_of("c10"))
    baselines = {"default", "dynamic_strategy~3d_only", "dynamic_strategy~magic123"}
    assert variants_of("gso") == baselines
    expected = {(b, c, v) for b, cases in (("realfusion15", rf15), ("c10", c10)) for c in cases for v in variants_of(b)}
    expected |= {("gso", c, v) for c in gso for v in baselines}
    assert set(runs) == expected
    assert {"dynamic_schedule~log", "dynamic_strategy~fixed_switch", "loss_lambda_depth~0"} <= variants_of("c10")


def test_priors_3d_table_is_an_add_on_to_the_paper_sweep():
    """config/priors_3d.yaml adds Table 7 (not in the paper): its three 3D-prior variants on every
    benchmark, beside the paper's runs, which stay as they are."""
    paper = dag_jobs("--configfile", "config/paper.yaml")
    both = dag_jobs("--configfile", "config/paper.yaml", "config/priors_3d.yaml")
    meshes = lambda jobs: {m for j in jobs for m in re.findall(r"\S*runs/\S+/mesh\.glb", j)}  # noqa: E731
    added = meshes(both) - meshes(paper)
    assert meshes(paper) <= meshes(both)
    variants = {re.search(r"runs/[^/]+/([^/]+)/", j).group(1) for j in added}
    assert len(variants) == 3 and all("prior_3d" in v or "ref_elevation" in v for v in variants)
    n_cases = sum(len(read_tsv(REPO / f"datasets/{b}.tsv")) for b in ("realfusion15", "c10", "gso"))
    assert len(added) == 3 * n_cases


def test_supplied_meshes_are_scored_and_reach_the_tables(tmp_path: Path):
    """config supplied_meshes: one evaluate-meshes job per method, its rows handed to `tables`."""
    meshes = tmp_path / "sf3d meshes"
    meshes.mkdir()
    proc = subprocess.run(
        [*SNAKEMAKE, "-n", "-p", "--forceall", "--config", f'supplied_meshes={{"sf3d": "{meshes}"}}'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs_csv = "results/supplied/demo/sf3d/runs.csv"
    assert re.search(
        rf"evaluate-meshes '{re.escape(str(meshes))}' --benchmark gso --method sf3d .*--out results/supplied/demo/sf3d",
        proc.stdout,
    )
    tables = next(line for line in proc.stdout.splitlines() if " -- tables " in line)
    assert "--supplied results/supplied/demo/sf3d" in tables and runs_csv in proc.stdout


def test_paper_config_is_not_merged_with_the_demo_config(workdir: Path):
    """--configfile replaces config/config.yaml: no demo-only value leaks into the paper sweep."""
    jobs = dag_jobs("--configfile", "config/paper.yaml", cwd=workdir)
    # The demo's tiny models would add a tiny_models job; the paper uses the real weights.
    assert not any("tiny_models.json" in j for j in jobs)
    # The demo sets boundary.window 3; with it merged, Table 5's "c" row would carry window~5.
    assert any("/boundary_delta~0.0001/" in j for j in jobs)


def test_dry_run_reads_no_run_files(workdir: Path):
    """Parsing the workflow never opens a run's records: a run folder whose priors.json is a
    FIFO (opening it for reading blocks until a writer comes) must not stall a dry run. The
    report's front page comes from the report_facts job instead."""
    import os

    run = workdir / "results/demo/runs/realfusion15/default/banana"
    run.mkdir(parents=True)
    os.mkfifo(run / "priors.json")
    proc = subprocess.run(
        [*SNAKEMAKE, "-n", "--quiet", "rules"], cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"^report_facts\s+1$", proc.stdout, flags=re.M), proc.stdout[-2000:]


# ---------------------------------------------------------------- config and case sheets
def test_schema_rejects_a_bad_config(workdir: Path):
    cfg = yaml.safe_load((workdir / "config/config.yaml").read_text())
    cfg["resources"]["reconstruct"]["gpu"] = "one"
    (workdir / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = dry_run("--configfile", "bad.yaml", cwd=workdir)
    assert proc.returncode != 0
    assert "gpu" in proc.stdout + proc.stderr and "one" in proc.stdout + proc.stderr


def test_unknown_method_key_is_named(workdir: Path):
    cfg = yaml.safe_load((workdir / "config/config.yaml").read_text())
    cfg["method"]["train"]["nerf_iterz"] = 3
    (workdir / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = dry_run("--configfile", "bad.yaml", cwd=workdir)
    assert proc.returncode != 0 and "nerf_iterz" in proc.stdout + proc.stderr


def test_grid_column_that_is_not_a_config_field_is_named(workdir: Path):
    (workdir / "config/grids/table6_strategy.tsv").write_text("setting\tdynamic.strategee\na\tfixed_switch\n")
    proc = dry_run("--configfile", "config/paper.yaml", cwd=workdir)
    assert proc.returncode != 0
    assert "table6_strategy.tsv" in proc.stderr + proc.stdout and "dynamic.strategee" in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: rows[1].update(case=rows[0]["case"]), "duplicate case"),
        (lambda rows: rows[0].update(rgba_sha256="not-a-checksum"), "rgba_sha256"),
        (lambda rows: rows[0].update(case="../escape"), "case"),
        (lambda rows: rows[0].update(rgba=""), "rgba"),
    ],
    ids=["duplicate", "bad-sha256", "path-in-case-name", "missing-rgba"],
)
def test_bad_case_sheet_entries_give_a_clear_error(workdir: Path, edit, message):
    sheet = workdir / "datasets/realfusion15.tsv"
    rows = read_tsv(sheet)
    edit(rows)
    with open(sheet, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    proc = dry_run(cwd=workdir)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "realfusion15.tsv" in out and message in out


def test_case_not_in_the_manifest_is_named(workdir: Path):
    cfg = yaml.safe_load((workdir / "config/config.yaml").read_text())
    cfg["benchmarks"]["realfusion15"]["cases"] = ["banana", "no_such_case"]
    (workdir / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = dry_run("--configfile", "bad.yaml", cwd=workdir)
    assert proc.returncode != 0 and "no_such_case" in proc.stdout + proc.stderr


# ---------------------------------------------------------------- manifests vs real data
@pytest.mark.parametrize("bench, folder", [("realfusion15", "realfusion15"), ("c10", "c10")])
def test_manifest_checksums_match_the_shipped_data(bench: str, folder: str):
    rows = read_tsv(DATASETS / f"{bench}.tsv")
    on_disk = {p.name for p in (DATASETS / folder).iterdir() if p.suffix in (".png", ".jpg")}
    listed = set()
    for row in rows:
        for role in ("rgba", "depth", "normal", "image"):
            if row[role]:
                listed.add(row[role])
                assert sha256(DATASETS / folder / row[role]) == row[f"{role}_sha256"], row[role]
    assert listed == on_disk  # every shipped file is in the manifest, and nothing else
    # SHA256SUMS (for `sha256sum -c`) lists every other file of the folder with its real checksum.
    sums = dict(reversed(line.split("  ", 1)) for line in (DATASETS / folder / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {p.name for p in (DATASETS / folder).iterdir()} - {"SHA256SUMS"}
    assert all(sha256(DATASETS / folder / name) == digest for name, digest in sums.items())


def test_gso_manifest_matches_the_published_case_list():
    published = DATASETS / "gso_published.tsv"
    ours = {r["case"]: r for r in read_tsv(REPO / "datasets/gso.tsv")}
    theirs = read_tsv(published)
    assert set(ours) == {r["case"] for r in theirs}
    for row in theirs:
        mine = ours[row["case"]]
        assert mine["prompt"] == row["prompt"]
        assert (mine["image_sha256"], mine["rgba_sha256"], mine["depth_sha256"], mine["normal_sha256"]) == (
            row["jpg_sha256"],
            row["rgba_sha256"],
            row["depth_sha256"],
            row["normal_sha256"],
        )
        # Ground truth: a model name, or an explicit note that the mapping is unknown.
        assert mine["gt_mesh"] or mine["gt_mesh_note"].startswith("unknown mapping")


def test_realfusion_prompts_match_the_authors():
    rows = {r["case"]: r["prompt"] for r in read_tsv(REPO / "datasets/realfusion15.tsv")}
    assert rows == {r["case"]: r["prompt"] for r in read_tsv(DATASETS / "realfusion15/prompts.tsv")}


def test_demo_reads_the_shipped_realfusion_files():
    bench = yaml.safe_load((REPO / "config/config.yaml").read_text())["benchmarks"]["realfusion15"]
    assert (REPO / bench["mirror"]).resolve() == DATASETS / "realfusion15"
    assert bench["cases"] and set(bench["cases"]) <= {r["case"] for r in read_tsv(DATASETS / "realfusion15.tsv")}


def test_fetch_refuses_a_corrupt_mirror_file_and_writes_nothing(workdir: Path):
    """The real fetch rule on a mirror whose banana_rgba.png is damaged: clear error in the log."""
    damaged = workdir / "datasets/realfusion15/banana_rgba.png"
    damaged.write_bytes(damaged.read_bytes()[:-10])
    # The sweep's MLflow parent run first, to see the workflow end it FAILED, then FINISHED.
    made = subprocess.run(
        [*SNAKEMAKE, "--cores", "1", "results/demo/parent_run.json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert made.returncode == 0, made.stderr[-1500:]
    target = "results/data/realfusion15/banana_rgba.png"
    proc = subprocess.run(
        [*SNAKEMAKE, "--cores", "1", target], cwd=workdir, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode != 0
    assert not (workdir / target).exists()
    log = (workdir / "results/logs/fetch/realfusion15/banana_rgba.png.log").read_text()
    assert "sha256 mismatch" in log
    assert parent_run_status(workdir) == "FAILED"
    ok = subprocess.run(
        [*SNAKEMAKE, "--cores", "1", "results/data/realfusion15/cactus_rgba.png"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ok.returncode == 0, ok.stderr[-1500:]
    fetched = workdir / "results/data/realfusion15/cactus_rgba.png"
    assert sha256(fetched) == sha256(DATASETS / "realfusion15/cactus_rgba.png")
    assert parent_run_status(workdir) == "FINISHED"


def parent_run_status(workdir: Path) -> str:
    import json

    from mlflow.tracking import MlflowClient

    recorded = json.loads((workdir / "results/demo/parent_run.json").read_text())
    return MlflowClient(recorded["tracking_uri"]).get_run(recorded["run_id"]).info.status


def test_parent_run_ends_with_the_tables_and_the_report(tmp_path: Path):
    """What the workflow's onsuccess/onerror call: status, and every artifact that exists."""
    import json

    from mlflow.tracking import MlflowClient

    from consistent123.tracking.store import resolve_uri
    from consistent123.tracking.sweep import finish_parent_run, start_parent_run

    uri = resolve_uri(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = start_parent_run(uri, "sweeps", "demo")
    parent = tmp_path / "parent_run.json"
    assert not finish_parent_run(parent, "FINISHED", {})  # a sweep that never started has nothing to end
    parent.write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}))
    for name in ("table1.md", "table1.tex", "table1.csv", "runs.csv"):
        (tmp_path / name).write_text(name)
    (tmp_path / "report.html").write_text("<html></html>")
    tables = [tmp_path / n for n in ("table1.md", "table1.tex", "table1.csv", "runs.csv", "table2.md")]
    assert finish_parent_run(parent, "FINISHED", {"tables": tables, "report": [tmp_path / "report.html"]})
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(run_id, "tables")) == [
        "tables/runs.csv",
        "tables/table1.csv",
        "tables/table1.md",
        "tables/table1.tex",
    ]  # table2.md: not written
    assert [a.path for a in client.list_artifacts(run_id, "report")] == ["report/report.html"]
    finish_parent_run(parent, "FAILED", {"tables": []})
    assert client.get_run(run_id).info.status == "FAILED"
