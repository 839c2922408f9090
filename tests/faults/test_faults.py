"""Fault injection on CPU: kills at any moment, concurrent writers, read-only and full disks,
bad inputs. Each test counts what it tried and what was handled (printed with ``-s``).

Kills run the CLI in a child process with a fault installed (tests/faults/fault_runner.py); every
run uses one thread, the setting under which a run is bit-identical (docs/determinism.md).
Read-only folders and full disks are real where the test runs as root (a read-only bind
mount, a tiny tmpfs); otherwise a chmod'ed folder and a write that raises ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from consistent123.cli import main as cli_main
from consistent123.testing import TINY_OVERRIDES, synthetic_case

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
TOTAL = 36  # train.nerf_iters + train.mesh_iters of TINY_OVERRIDES
CHECKPOINT_EVERY = 8
FAST = ["export.turntable_views=2", "export.texture_size=32"]
SEED = int(os.environ.get("FAULT_SEED", time.time_ns() % 100_000))


# ---------------------------------------------------------------- fixtures and helpers
@contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("faults")
    case = synthetic_case(root / "cases")
    overrides = TINY_OVERRIDES + FAST + [f"models.tiny_dir={tiny_models}", f"tracking.uri=sqlite:///{root}/mlflow.db"]
    return root, case, overrides


def reconstruct_args(case: Path, out: Path, overrides: list[str], *extra: str) -> list[str]:
    args = ["reconstruct", str(case), "--out", str(out), "--no-progress", *extra]
    for o in overrides:
        args += ["--set", o]
    return args


def run_child(fault: str, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tests.faults.fault_runner", fault, *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def in_process(args: list[str]) -> int:
    with one_thread():
        return cli_main(args)


@pytest.fixture(scope="module")
def baseline(setup):
    root, case, overrides = setup
    out = root / "baseline"
    assert in_process(reconstruct_args(case, out, overrides)) == 0
    return out


def is_timing(key: str) -> bool:
    """Measurements of the machine (speeds, what the run cost), not of the method."""
    return "per_s" in key or "seconds" in key or key.startswith("cost.")


def history(out: Path) -> dict[str, list]:
    """Every point of every metric of the folder's run, duplicates kept (timings: steps only)."""
    from mlflow.tracking import MlflowClient

    rec = json.loads((out / "run.json").read_text())
    client = MlflowClient(rec["tracking_uri"])
    # MLflow's system metrics are sampled by the clock: how many points a run has varies.
    keys = [k for k in client.get_run(rec["run_id"]).data.metrics if not k.startswith("system/")]
    return {
        k: sorted((m.step, None if is_timing(k) else m.value) for m in client.get_metric_history(rec["run_id"], k))
        for k in keys
    }


def output_files(out: Path) -> dict[str, bytes]:
    skip = {"run.json", ".lock", "checkpoints/last.pt", "cost.json"}  # cost.json: wall time, memory
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and str(p.relative_to(out)) not in skip and not p.name.startswith("turntable.")
    }


def final_parameters(out: Path) -> dict[str, torch.Tensor]:
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    return {
        **{f"nerf.{k}": v for k, v in state["nerf"].items()},
        **{f"mesh.{k}": v for k, v in (state["mesh"] or {}).items()},
    }


def checkpoint_iteration(out: Path) -> int:
    ckpt = out / "checkpoints" / "last.pt"
    return int(torch.load(ckpt, weights_only=True)["iteration"]) if ckpt.exists() else 0


def one_error_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert lines, "no error line"
    assert "Traceback" not in err, err[-2000:]
    assert lines[-1].startswith("consistent123 ") and ": error: " in lines[-1], lines[-1]
    return lines[-1]


@contextmanager
def read_only(folder: Path):
    """``folder`` read-only: a read-only bind mount as root (root ignores permissions), else chmod."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
            yield "read-only file system"
        finally:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield "permission denied"
        finally:
            for p, mode in modes.items():
                p.chmod(mode)


def _mount(*args: str) -> bool:
    return os.geteuid() == 0 and subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def full_disk(folder: Path, size_kb: int, fill: bool = False):
    """A tiny tmpfs at ``folder`` where one can be mounted (filled up if ``fill``); elsewhere
    every file write raises ENOSPC."""
    folder.mkdir(parents=True, exist_ok=True)
    if _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)):
        try:
            if fill:
                fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
                try:
                    while os.write(fd, b"\0" * 4096):
                        pass
                except OSError:
                    pass
                finally:
                    os.close(fd)
            yield
        finally:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)
    else:

        def no_space(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(torch, "save", no_space)
            patch.setattr(Image.Image, "save", no_space)
            patch.setattr(Path, "write_text", no_space)
            yield


def report(what: str, handled: int, tried: int) -> None:
    print(f"\n{what}: {handled}/{tried}")


# ---------------------------------------------------------------- kills
def test_kills_at_random_moments_leave_exact_outputs_and_history(setup, baseline, capsys):
    """Seven kills of one run (hard kills anywhere, in a checkpoint write, in the export,
    between a flush and its checkpoint, after the final flush, SIGTERM, the stop hook), then a
    final resume: outputs, parameters and metric history equal the uninterrupted run's."""
    root, case, overrides = setup
    rng = random.Random(SEED)
    out = root / "killed"
    args = reconstruct_args(case, out, overrides)
    tried = []

    def kill(fault: str, expect: int = 137) -> None:
        result = run_child(fault, args)
        assert result.returncode == expect, f"seed {SEED}, {fault}: exit {result.returncode}\n{result.stderr[-3000:]}"
        tried.append(fault)

    kill(f"die_at_iteration:{rng.randint(1, CHECKPOINT_EVERY - 1)}")  # before any checkpoint
    kill(f"die_in_checkpoint:{rng.randint(1, 2)}")
    kill(f"die_after_flush:{rng.randint(1, 2)}")
    kill(f"sigterm_at_iteration:{rng.randint(checkpoint_iteration(out) + 1, TOTAL - 1)}", expect=130)
    stop = rng.randint(checkpoint_iteration(out) + 1, TOTAL - 1)
    with pytest.raises(SystemExit):
        in_process(args + ["--stop-after", str(stop)])
    tried.append(f"stop_after:{stop}")
    kill("die_in_export:1")
    kill("die_in_finish:1")  # t_switch already logged: the re-export must not log it again
    assert not (out / "DONE").exists()
    assert in_process(args) == 0

    from mlflow.tracking import MlflowClient

    rec = json.loads((out / "run.json").read_text())
    run = MlflowClient(rec["tracking_uri"]).get_run(rec["run_id"])
    assert run.info.status == "FINISHED"
    assert not list(out.rglob(".*.partial-*")), "temporary files of the killed writers were left"
    got, want = history(out), history(baseline)
    assert got == want, f"seed {SEED}, kills {tried}: metric history differs"
    assert output_files(out) == output_files(baseline), f"seed {SEED}, kills {tried}"
    a, b = final_parameters(out), final_parameters(baseline)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with capsys.disabled():
        report(
            f"kills survived with exact outputs and exact history (seed {SEED}: {', '.join(tried)})",
            len(tried),
            len(tried),
        )


# ---------------------------------------------------------------- concurrent writers
def test_second_writer_of_a_folder_stops_and_a_dead_writers_lock_does_not_block(setup, capsys):
    root, case, overrides = setup
    out = root / "shared-folder"
    args = reconstruct_args(case, out, overrides)
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.fault_runner", "hold_at_iteration:1", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready = threading.Event()
        threading.Thread(target=lambda: (first.stdout.readline(), ready.set()), daemon=True).start()
        assert ready.wait(240), "the first writer never reached its training loop"
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name != ".lock"}
        assert in_process(args) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"process {first.pid}" in line and str(out) in line
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name != ".lock"} == before
    finally:
        first.kill()
        first.wait()
    assert (out / ".lock").exists()  # the dead writer's lock file is still there ...
    with pytest.raises(SystemExit, match="stopped after iteration 2"):  # ... and does not block
        in_process(args + ["--stop-after", "2"])
    with capsys.disabled():
        report("second writer of a busy folder refused, dead writer's lock ignored", 2, 2)


def _writers(uri: str, root: Path, roles: list[str]) -> list[subprocess.CompletedProcess]:
    """Start one child per role; all wait at a barrier, then open the store at the same moment."""
    barrier = root / "barrier"
    barrier.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faults.fault_runner",
                "store",
                uri,
                str(root / f"{root.name}-w{i}"),
                str(barrier),
                role,
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, role in enumerate(roles)
    ]
    deadline = time.time() + 120
    while len(list(barrier.glob("ready-*"))) < len(roles) and time.time() < deadline:
        time.sleep(0.05)
    (barrier / "go").touch()
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return results


def test_concurrent_first_writers_of_a_new_and_an_existing_store(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    counts = {}
    for store, roles in (("new", ["run"] * 3 + ["parent"]), ("existing", ["run"] * 4)):
        root = tmp_path / store
        results = _writers(uri, root, roles)
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("faults")
        runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id], max_results=100)}
        held = 0
        for i, (role, result) in enumerate(zip(roles, results)):
            assert result.returncode == 0, f"{store} store, writer {i}: {result.stderr[-3000:]}"
            if role == "run":
                run = runs[f"{store}-w{i}"]
                assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "value")) == list(range(20))
                assert run.info.status == "FINISHED"
            held += 1
        counts[store] = (held, len(roles))
    parents = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("role") == "parent"]
    assert len(parents) == 1
    with capsys.disabled():
        for store, (held, tried) in counts.items():
            report(
                f"concurrent first writers held on {'a new' if store == 'new' else 'an existing'} store", held, tried
            )


# ---------------------------------------------------------------- bad inputs
def test_bad_inputs_fail_with_one_line_and_write_nothing(setup, tmp_path, capsys):
    root, case, overrides = setup
    tried = handled = 0

    def refused(args: list[str], must_not_exist: list[Path]) -> None:
        nonlocal tried, handled
        tried += 1
        assert cli_main(args) == 2, args
        one_error_line(capsys.readouterr().err)
        for p in must_not_exist:
            assert not p.exists(), f"{args}: {p} was written"
        handled += 1

    bad_settings = [
        ["train.nerf_iters=-5", "train.mesh_iters=-5"],
        ["train.nerf_iters=0", "train.mesh_iters=0"],
        ["sds.t_range_nerf=[0.6,0.2]"],
        ["nerf.render_size=0"],
        ["boundary.least_3d_only=20", "boundary.most_3d_only=10"],
    ]
    for extra in bad_settings:
        out = tmp_path / f"bad-{tried}"
        refused(reconstruct_args(case, out, overrides + extra), [out])

    tables_out = tmp_path / "tables"
    no_variant = tmp_path / "bad.csv"
    no_variant.write_text("case,psnr\nbanana,20\n")
    not_parquet = tmp_path / "runs.parquet"
    not_parquet.write_text("variant,case\n")
    not_numeric = tmp_path / "text.csv"
    not_numeric.write_text("benchmark,case,variant,psnr\nrealfusion15,banana,default,high\n")
    for bad in (no_variant, not_parquet, not_numeric):
        refused(["tables", "--out", str(tables_out), "--runs", str(bad)], [tables_out])
    missing_db = tmp_path / "typo" / "mlfow.db"
    refused(
        ["tables", "--out", str(tables_out), "--tracking-uri", f"sqlite:///{missing_db}"],
        [tables_out, missing_db, missing_db.parent],
    )
    with capsys.disabled():
        report("bad inputs handled", handled, tried)


def test_one_failed_case_lets_the_others_finish_and_is_listed_with_its_error_line(tmp_path, capsys):
    """The default profile keeps going; the summary lists the failed job with its own error line."""
    import yaml

    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert profile.get("keep-going") is True
    assert "failure_summary" in (REPO / "Snakefile").read_text().split("onerror:", 1)[1]
    (tmp_path / "job.py").write_text(f'''
import sys
sys.path.insert(0, "{REPO}/workflow/scripts")
from _cli import run_cli

bad = ["--set", "train.nerf_iters=-1"] if snakemake.wildcards.c == "bad" else []
run_cli(["config", *bad], snakemake.log[0])
open(snakemake.output[0], "w").write("ok")
''')
    (tmp_path / "Snakefile").write_text(f'''
import sys
sys.path.insert(0, "{REPO}/workflow/scripts")
from _cli import failure_summary

rule all:
    input: expand("out/{{c}}.txt", c=["good", "bad"])

rule job:
    output: "out/{{c}}.txt"
    log: "logs/{{c}}.log"
    script: "job.py"

onerror:
    for row in failure_summary(log[0] if isinstance(log, (list, tuple)) else log):
        print("FAILED-JOB " + row)
''')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(REPO / "profiles" / "default"), "--cores", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert (tmp_path / "out" / "good.txt").exists()
    rows = [x for x in text.splitlines() if x.startswith("FAILED-JOB ")]
    assert len(rows) == 1 and "logs/bad.log" in rows[0], text[-3000:]
    assert rows[0].endswith("consistent123 config: error: --set: train.nerf_iters must be >= 0 (got -1)")
    with capsys.disabled():
        report("bad case in a workflow: good cases finished, failure listed", 1, 1)


def test_a_jobs_failure_line_is_its_own_error_not_the_logs_last_line():
    from workflow.scripts._cli import job_error_line

    log = (
        "consistent123 reconstruct: error: /x/last.pt: no space left on device\n"
        "INFO consistent123.training.trainer: stage 2 forced at iteration 100\n"
    )
    assert job_error_line(log, 2) == "consistent123 reconstruct: error: /x/last.pt: no space left on device"
    assert job_error_line("INFO consistent123.training.trainer: stage 2 forced at iteration 100\n", -9).startswith(
        "killed by SIGKILL"
    )


# ---------------------------------------------------------------- read-only folders, full disks, modes
def test_read_only_folders_and_store_fail_with_one_line_before_models_load(
    setup, baseline, tmp_path, monkeypatch, capsys
):
    root, case, overrides = setup
    tried = handled = 0

    def boom(*args, **kwargs):
        raise AssertionError("a model was loaded for a folder that cannot be written")

    from consistent123.priors import registry

    for name in ("load_captioner", "load_depth_estimator", "load_segmenter", "load_clip_metric"):
        monkeypatch.setattr(registry, name, boom)
    monkeypatch.setattr("eval.image_metrics.load_lpips", boom)
    monkeypatch.setattr("consistent123.priors.registry.load_priors", boom)
    monkeypatch.setattr("consistent123.pipeline.reconstruct.load_priors", boom)

    def refused(args: list[str], folder: Path, cause: str) -> None:
        nonlocal tried, handled
        tried += 1
        assert cli_main(args) == 2, args
        line = one_error_line(capsys.readouterr().err)
        assert str(folder) in line and (cause in line or "read-only" in line), line
        handled += 1

    ro = tmp_path / "ro"
    with read_only(ro) as cause:
        refused(reconstruct_args(case, ro, overrides), ro, cause)
        refused(["preprocess", str(case / "rgba.png"), "--out", str(ro)], ro, cause)
        refused(["tables", "--out", str(ro), "--no-mlflow", "--results", str(tmp_path)], ro, cause)
    with read_only(baseline) as cause:
        refused(
            ["evaluate", str(baseline), "--case", str(case), "--no-log"] + sum((["--set", o] for o in overrides), []),
            baseline,
            cause,
        )
    store = tmp_path / "store"
    from consistent123.tracking.store import ensure_experiment

    ensure_experiment(f"sqlite:///{store}/mlflow.db", "consistent123")
    with read_only(store) as cause:
        refused(
            reconstruct_args(case, tmp_path / "out", [*overrides, f"tracking.uri=sqlite:///{store}/mlflow.db"]),
            store,
            cause,
        )
    with capsys.disabled():
        report(
            "read-only output folders and store (reconstruct, preprocess, tables, evaluate, mlflow.db)", handled, tried
        )


def test_full_disk_fails_with_one_line_naming_the_file_and_leaves_no_partial_set(setup, tmp_path, capsys):
    root, case, overrides = setup
    tried = handled = 0
    out = tmp_path / "full-pre"
    with full_disk(out, 64, fill=True):
        tried += 1
        assert (
            cli_main(
                [
                    "preprocess",
                    str(case / "rgba.png"),
                    "--out",
                    str(out),
                    "--caption",
                    "an egg",
                    "--depth",
                    str(case / "depth.png"),
                ]
            )
            == 2
        )
        line = one_error_line(capsys.readouterr().err)
        assert "no space left on device writing" in line and str(out) in line, line
        assert not [p.name for p in out.iterdir() if p.name != "filler"], "part of the case was written"
        handled += 1
    out = tmp_path / "full-rec"
    with full_disk(out, 160):
        tried += 1
        assert in_process(reconstruct_args(case, out, overrides)) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "no space left on device writing" in line and str(out) in line, line
        assert not list(out.rglob(".*.partial-*"))
        handled += 1
    with capsys.disabled():
        report("full disk (preprocess set, reconstruct checkpoint)", handled, tried)


def test_outputs_follow_the_umask_and_run_json_records_threads_and_device(baseline):
    mask = os.umask(0o022)
    os.umask(mask)
    files = [p for p in baseline.rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask, f"{p}: {oct(p.stat().st_mode & 0o777)}"
    rec = json.loads((baseline / "run.json").read_text())
    assert rec["threads"] == 1 and rec["device"] == "cpu"


def test_tables_validates_before_writing_and_reads_a_good_table(tmp_path):
    from eval.aggregate import COLUMNS

    runs = tmp_path / "runs.csv"
    pd.DataFrame(
        [
            {c: None for c in COLUMNS}
            | {"benchmark": "realfusion15", "case": "banana", "variant": "default", "psnr": 20.0}
        ]
    ).to_csv(runs, index=False)
    out = tmp_path / "tables"
    assert cli_main(["tables", "--out", str(out), "--runs", str(runs), "--tables", "1"]) == 0
    assert {p.name for p in out.iterdir()} == {
        "runs.csv",
        "runs.parquet",
        "table1.md",
        "table1.tex",
        "table1.csv",
        "table1.html",
    }


def test_a_run_orphaned_before_run_json_is_marked_killed_by_the_next_job(tmp_path):
    """A job killed between creating its MLflow run and writing run.json leaves a RUNNING run;
    the next job of that folder ends it as KILLED and starts its own. Other folders' runs stay."""
    from consistent123.tracking import run as tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out, other = tmp_path / "out", tmp_path / "other"
    orphan = tracking.RunTracker.open(out, uri, "orphans", "case")
    neighbour = tracking.RunTracker.open(other, uri, "orphans", "case")
    (out / "run.json").unlink()  # as if killed before run.json was written

    fresh = tracking.RunTracker.open(out, uri, "orphans", "case")

    status = {r: fresh.client.get_run(r).info.status for r in (orphan.run_id, neighbour.run_id, fresh.run_id)}
    assert status == {orphan.run_id: "KILLED", neighbour.run_id: "RUNNING", fresh.run_id: "RUNNING"}
    assert fresh.client.get_run(fresh.run_id).data.tags[tracking.FOLDER_TAG] == str(out.resolve())
