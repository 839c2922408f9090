"""Fault injection, continued: states a rerun must be able to leave, costs refused before they
are paid, reading commands that fail loudly, and errors attributed right. Each test counts
what it tried and what was handled (printed with ``-s``), as tests/faults/test_faults.py does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from consistent123.cli import main as cli_main
from consistent123.testing import TINY_OVERRIDES, synthetic_case
from tests.faults.test_faults import (
    FAST,
    ONE_THREAD,
    REPO,
    TOTAL,
    in_process,
    one_error_line,
    output_files,
    reconstruct_args,
    report,
    run_child,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from consistent123.priors.standins.tiny import ensure_tiny_models

    root = tmp_path_factory.mktemp("recovery")
    ensure_tiny_models(root / "models")
    case = synthetic_case(root / "cases")
    overrides = (
        TINY_OVERRIDES + FAST + [f"models.tiny_dir={root / 'models'}", f"tracking.uri=sqlite:///{root}/mlflow.db"]
    )
    return root, case, overrides


@pytest.fixture(scope="module")
def baseline(setup):
    root, case, overrides = setup
    out = root / "baseline"
    assert in_process(reconstruct_args(case, out, overrides)) == 0
    return out


@pytest.fixture(scope="module")
def trained(setup):
    """A folder trained to its last checkpoint (32 of 36 iterations), no run.json: each copy
    resumes in a run of its own, with only 4 iterations and the export left to do."""
    root, case, overrides = setup
    out = root / "trained"
    with pytest.raises(SystemExit):
        in_process(reconstruct_args(case, out, overrides, "--stop-after", str(TOTAL - 3)))
    (out / "run.json").unlink()
    return out


def kept_outputs(out: Path) -> dict[str, bytes]:
    """``output_files`` less the files moved aside (kept for a post mortem, not outputs)."""
    return {k: v for k, v in output_files(out).items() if ".corrupt-" not in k}


def copy_of(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


def run_record(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def client(out_or_uri):
    from mlflow.tracking import MlflowClient

    uri = out_or_uri if isinstance(out_or_uri, str) else run_record(out_or_uri)["tracking_uri"]
    return MlflowClient(uri)


def status(out: Path) -> str:
    rec = run_record(out)
    return client(rec["tracking_uri"]).get_run(rec["run_id"]).info.status


def folder_runs(out: Path, uri: str) -> dict[str, str]:
    """run id -> status of every run tagged with ``out`` as its folder."""
    c = client(uri)
    exp = c.get_experiment_by_name("consistent123")
    runs = c.search_runs([exp.experiment_id], filter_string=f"tags.output_folder = '{out.resolve()}'")
    return {r.info.run_id: r.info.status for r in runs}


def uri_of(overrides: list[str]) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.startswith("tracking.uri="))


# ---------------------------------------------------------------- 1. memory bounded by the work
def test_a_config_that_cannot_fit_is_refused_in_one_line_naming_the_value_and_its_limit(setup, tmp_path, capsys):
    root, case, overrides = setup
    costly = {
        "dmtet.tet_grid_size=100000": "limits.max_tet_grid_size=512",
        "nerf.render_size=4000": "limits.max_image_side=2048",
        "nerf.num_steps=50000": "limits.max_nerf_samples=",
        "dmtet.render_size=100000": "limits.max_image_side=2048",
        "export.marching_cubes_resolution=4096": "limits.max_grid_resolution=512",
        "eval.iou_resolution=5000": "limits.max_grid_resolution=512",
        "nerf.occupancy_grid_resolution=2048": "limits.max_grid_resolution=512",
        "hashgrid.log2_hashmap_size=40": "limits.max_log2_hashmap_size=24",
        "preprocess.size=60000": "limits.max_image_side=2048",
        "export.turntable_size=9000": "limits.max_image_side=2048",
    }
    tried = handled = 0
    for setting, limit in costly.items():
        tried += 1
        out = tmp_path / f"costly-{tried}"
        assert in_process(reconstruct_args(case, out, overrides + [setting])) == 2, setting
        line = one_error_line(capsys.readouterr().err)
        assert "error: --set: " in line and setting in line and limit in line, line
        assert not out.exists(), f"{setting}: {out} was made"
        handled += 1
    # The limit is itself a setting: raised, the same value passes.
    assert cli_main(["config", "--set", "dmtet.tet_grid_size=600", "--set", "limits.max_tet_grid_size=600"]) == 0
    capsys.readouterr()
    with capsys.disabled():
        report("settings past their limits refused before a model loads", handled, tried)


def _strip(path: Path, width: int, height: int) -> Path:
    """A transparent image with an opaque bar down its middle: a canvas far above its pixel count."""
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[height // 10 : height - height // 10, width // 4 : width - width // 4] = (200, 80, 40, 255)
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def _ramp_depth(image, **kwargs):
    """A stand-in depth estimator: disparity rising down the image (the models are not the subject)."""
    return np.broadcast_to(np.arange(image.height, dtype=np.float32)[:, None], image.size[::-1]).copy()


def test_preprocess_canvas_stays_within_its_limit_for_any_image(tmp_path, monkeypatch, caplog, capsys):
    """The 16 x 60000 strip of the probe (a 75000^2 canvas) and a moderate image reduced to fit:
    no canvas past limits.max_canvas_side is ever allocated; a failure leaves no folder."""
    from consistent123.config import load_config
    from consistent123.errors import InputError
    from consistent123.preprocess import recentre
    from consistent123.preprocess.pipeline import preprocess_image

    sides = []
    crop = recentre._crop_padded
    monkeypatch.setattr(recentre, "_crop_padded", lambda a, w: (sides.append(w.side), crop(a, w))[1])
    models = {"depth": _ramp_depth}

    cfg = load_config()
    out = tmp_path / "probe"
    with pytest.raises(InputError, match="vanishes"), caplog.at_level(logging.WARNING):
        preprocess_image(_strip(tmp_path / "strip.png", 16, 60000), out, cfg, caption="a bar", models=models)
    assert "limits.max_canvas_side=8192" in caplog.text and "reduced 8x" in caplog.text
    assert not out.exists() and max(sides) <= 8192

    sides.clear()
    image = _strip(tmp_path / "bar.png", 300, 420)
    small = load_config(None, ["limits.max_canvas_side=200"])
    reduced = preprocess_image(image, tmp_path / "reduced", small, caption="a bar", models=models)
    full = preprocess_image(image, tmp_path / "full", cfg, caption="a bar", models=models)
    assert reduced["canvas_reduction"] == 3 and full["canvas_reduction"] == 1
    assert max(sides[:2]) <= 200  # the reduced run's image and depth canvases
    a = np.asarray(Image.open(tmp_path / "reduced" / "rgba.png"), np.float64)[..., 3] / 255
    b = np.asarray(Image.open(tmp_path / "full" / "rgba.png"), np.float64)[..., 3] / 255
    assert np.abs(a - b).mean() < 0.02  # the same object, framed the same way
    with capsys.disabled():
        report("preprocess canvases bounded (16x60000 strip refused in one line; 300x420 reduced to fit)", 2, 2)


# ---------------------------------------------------------------- 2. no state a rerun cannot leave
def test_a_torn_or_garbage_checkpoint_is_moved_aside_and_the_run_starts_over_exactly(
    setup, baseline, trained, tmp_path, caplog, capsys
):
    """Torn (half the bytes: a node lost mid-write on a file system that does not honour the
    rename) and garbage checkpoints: one warning naming the file, the file kept aside, the old
    MLflow run FAILED, the rerun exits 0 in a new run with the outputs of an uninterrupted run."""
    root, case, overrides = setup
    uri = uri_of(overrides)
    tried = []
    for kind in ("torn", "garbage"):
        out = copy_of(trained, tmp_path / kind)
        with pytest.raises(SystemExit):  # a run of its own, KILLED at 34, its checkpoint at 32
            in_process(reconstruct_args(case, out, overrides, "--stop-after", str(TOTAL - 2)))
        ckpt = out / "checkpoints" / "last.pt"
        old_run = run_record(out)["run_id"]
        data = ckpt.read_bytes()
        ckpt.write_bytes(data[: len(data) // 2] if kind == "torn" else os.urandom(4096))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert in_process(reconstruct_args(case, out, overrides)) == 0
        warned = [m for m in caplog.messages if "cannot be read" in m and str(ckpt) in m]
        assert len(warned) == 1 and "moved aside to last.pt.corrupt-" in warned[0], caplog.text[-3000:]
        assert len(list(ckpt.parent.glob("last.pt.corrupt-*"))) == 1
        runs = folder_runs(out, uri)
        assert runs[old_run] == "FAILED" and status(out) == "FINISHED" and run_record(out)["run_id"] != old_run
        assert kept_outputs(out) == output_files(baseline), kind
        tried.append(kind)
    with capsys.disabled():
        report(f"unreadable checkpoints ({', '.join(tried)}) moved aside, rerun exact, old run FAILED", 2, 2)


def test_an_unreadable_run_json_or_stamp_is_moved_aside_and_the_run_resumes(
    setup, baseline, trained, tmp_path, caplog, capsys
):
    """run.json torn or garbage: the folder's run is found by its folder tag and resumed from the
    checkpoint (history kept); a garbage config stamp: the checkpoint's own fingerprint decides."""
    root, case, overrides = setup
    uri = uri_of(overrides)
    tried = handled = 0
    for kind, damage in (
        ("run.json torn", lambda out: (out / "run.json").write_text(run_record_text(out)[:20])),
        ("run.json garbage", lambda out: (out / "run.json").write_bytes(os.urandom(300))),
        ("stamp garbage", lambda out: (out / "checkpoints" / "config_hash").write_bytes(b"\xff\xfe\x00" * 50)),
    ):
        tried += 1
        out = copy_of(trained, tmp_path / kind.replace(" ", "-"))
        with pytest.raises(SystemExit):
            in_process(reconstruct_args(case, out, overrides, "--stop-after", str(TOTAL - 2)))
        old_run = run_record(out)["run_id"]
        damage(out)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert in_process(reconstruct_args(case, out, overrides)) == 0, kind
        assert any("cannot be read" in m and "moved aside to" in m for m in caplog.messages), caplog.text[-3000:]
        assert list(out.rglob("*.corrupt-*")), kind
        assert run_record(out)["run_id"] == old_run and status(out) == "FINISHED"
        assert set(folder_runs(out, uri).values()) == {"FINISHED"}, kind
        assert kept_outputs(out) == output_files(baseline), kind
        handled += 1
    with capsys.disabled():
        report("unreadable run.json / config stamp moved aside, run resumed exactly", handled, tried)


def run_record_text(out: Path) -> str:
    return (out / "run.json").read_text()


@pytest.mark.parametrize("fault", ["sigterm_at_load:1", "sigterm_in_export:1", "sigterm_in_upload:1"])
def test_sigterm_in_any_phase_ends_interrupted_with_the_run_killed(setup, baseline, trained, tmp_path, fault, capsys):
    root, case, overrides = setup
    out = copy_of(trained, tmp_path / "run")
    args = reconstruct_args(case, out, overrides)
    result = run_child(fault, args)
    assert result.returncode == 130, f"{fault}: {result.returncode}\n{result.stderr[-3000:]}"
    assert one_error_line(result.stderr) == "consistent123 reconstruct: error: interrupted"
    assert status(out) == "KILLED", fault
    assert not (out / "DONE").exists()
    assert in_process(args) == 0 and status(out) == "FINISHED"
    assert output_files(out) == output_files(baseline), fault
    with capsys.disabled():
        report(f"{fault}: exit 130, one line, run KILLED, rerun FINISHED with exact outputs", 1, 1)


def test_sigterm_once_the_command_has_returned_still_ends_interrupted(capsys):
    result = run_child("sigterm_after_return:1", ["config"])
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == "consistent123 config: error: interrupted"
    with capsys.disabled():
        report("SIGTERM after the command returned: exit 130 and the interrupted line", 1, 1)


# ---------------------------------------------------------------- 3-4. the store: checked first, read loudly
class _SilentServer:
    """A TCP server that accepts connections and never answers (a hung tracking server)."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held: list = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                pass

    def __exit__(self, *exc):
        self.stop.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


def child(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "consistent123.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _refused_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: connections are refused


def test_a_store_that_cannot_take_the_run_is_refused_before_any_folder_is_made(setup, baseline, tmp_path, capsys):
    root, case, overrides = setup
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    truncated = tmp_path / "truncated.db"
    src = Path(uri_of(overrides).removeprefix("sqlite:///"))
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    tried = handled = 0
    with _SilentServer() as silent:
        stores = {
            "unreachable server": _refused_port(),
            "server that never answers": silent,
            "garbage database": f"sqlite:///{garbage}",
            "truncated database": f"sqlite:///{truncated}",
        }
        for what, uri in stores.items():
            tried += 1
            out = tmp_path / f"out-{tried}"
            args = reconstruct_args(case, out, overrides + [f"tracking.uri={uri}", "tracking.connect_timeout_s=3"])
            result = child(args, timeout=90)  # MLflow's own retries would take ~4 min: a failure here
            assert result.returncode == 2, f"{what}: {result.stderr[-3000:]}"
            line = one_error_line(result.stderr)
            assert "tracking store" in line and uri.split("///")[-1] in line, line
            assert not out.exists(), f"{what}: {out} was made"
            handled += 1
    with capsys.disabled():
        report("stores that cannot take a run refused before the output folder exists", handled, tried)


def test_a_start_that_fails_after_the_run_opened_leaves_no_folder_and_a_failed_run(
    setup, tmp_path, monkeypatch, capsys
):
    """Models that cannot load (after the store check, the folder and the MLflow run exist): the
    one line, no folder left, the run FAILED; a SIGTERM there, the run KILLED (sigterm_at_load)."""
    from consistent123.errors import ModelUnavailableError
    from consistent123.pipeline import reconstruct

    root, case, overrides = setup

    def unavailable(*args, **kwargs):
        raise ModelUnavailableError("zero123: weights not in the cache and downloads are off")

    monkeypatch.setattr(reconstruct, "load_priors", unavailable)
    out = tmp_path / "no-models"
    assert in_process(reconstruct_args(case, out, overrides)) == 2
    assert "weights not in the cache" in one_error_line(capsys.readouterr().err)
    assert not out.exists()
    assert list(folder_runs(out, uri_of(overrides)).values()) == ["FAILED"]
    with capsys.disabled():
        report("a start that failed after its run opened: no folder left, run FAILED", 1, 1)


def test_reading_commands_fail_loudly_and_write_nothing(setup, baseline, tmp_path, capsys):
    """tables on a corrupt, unreachable or empty store, evaluate of a run the store lacks."""
    root, case, overrides = setup
    src = Path(uri_of(overrides).removeprefix("sqlite:///"))
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    empty_store = tmp_path / "empty.db"
    from consistent123.tracking.store import ensure_experiment

    ensure_experiment(f"sqlite:///{empty_store}", "consistent123")
    tried = handled = 0

    def refused(args: list[str], must_not_exist: list[Path], expect: str) -> None:
        nonlocal tried, handled
        tried += 1
        assert cli_main(args) == 2, args
        line = one_error_line(capsys.readouterr().err)
        assert expect in line, line
        for p in must_not_exist:
            assert not p.exists(), f"{args}: {p} was written"
        handled += 1

    out = tmp_path / "tables"
    fast = ["--set", "tracking.connect_timeout_s=3"]
    refused(["tables", "--out", str(out), "--tracking-uri", f"sqlite:///{truncated}"], [out], "cannot be read")
    refused(["tables", "--out", str(out), "--tracking-uri", _refused_port(), *fast], [out], "does not answer")
    refused(["tables", "--out", str(out), "--tracking-uri", f"sqlite:///{empty_store}"], [out], "no runs")
    refused(["tables", "--out", str(out), "--no-mlflow", "--results", str(tmp_path)], [out], "no runs")

    lost = copy_of(baseline, tmp_path / "lost-run")
    record = run_record(lost)
    (lost / "run.json").write_text(json.dumps({**record, "run_id": "0" * 32}))
    args = ["evaluate", str(lost), "--case", str(case)] + sum((["--set", o] for o in overrides), [])
    refused(args, [lost / "metrics.json"], "cannot be read from")
    with capsys.disabled():
        report("reading commands on a corrupt, unreachable or empty store refused, nothing written", handled, tried)


# ---------------------------------------------------------------- 5. one line, attributed right
def test_errors_are_one_line_attributed_to_their_source(setup, tmp_path, caplog, capsys):
    root, case, overrides = setup
    tried = handled = 0

    def line_of(args: list[str]) -> str:
        nonlocal tried
        tried += 1
        assert cli_main(args) == 2, args
        return one_error_line(capsys.readouterr().err)

    binary = tmp_path / "weights.yaml"
    binary.write_bytes(torch.randn(64).numpy().tobytes() + b"\xff\xfe")
    line = line_of(["config", "--config", str(binary)])
    assert str(binary) in line and "not a text file" in line, line
    handled += 1

    config = tmp_path / "tiny.yaml"
    config.write_text("train:\n  nerf_iters: 10\n")
    for extra in (["--config", str(config)], []):
        line = line_of(["config", *extra, "--set", "train.nerf_itres=3"])
        assert "error: --set: train.nerf_itres" in line and "tiny.yaml" not in line and "defaults" not in line, line
        handled += 1
    line = line_of(["config", "--config", str(config), "--set", "boundary.most_3d_only=10"])
    assert "error: --set: boundary.least_3d_only must be <= boundary.most_3d_only" in line, line
    handled += 1
    config.write_text("train:\n  nerf_itres: 10\n")
    line = line_of(["config", "--config", str(config), "--set", "train.nerf_iters=3"])
    assert f"error: {config}: train.nerf_itres" in line, line  # the file's own mistake stays the file's
    handled += 1

    loop = tmp_path / "loop.png"
    loop.symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(loop)
    line = line_of(["preprocess", str(loop), "--out", str(tmp_path / "p"), "--caption", "x"])
    assert "symbolic link loop" in line and str(loop) in line and not (tmp_path / "p").exists(), line
    handled += 1

    from consistent123.preprocess.image_io import load_image

    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50)
    tried += 1
    with caplog.at_level(logging.WARNING):
        assert load_image(gif, 16).getpixel((0, 0))[0] > 200  # the first frame: red
    assert "animated (3 frames): only the first frame is used" in caplog.text
    handled += 1

    triangle = tmp_path / "triangle.obj"
    trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], process=False).export(triangle)
    box = tmp_path / "box.obj"
    trimesh.creation.box().export(box)
    tried += 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cli_main(["eval-mesh", str(box), str(triangle)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["watertight"] == {"gt": True, "pred": False}
    assert f"{triangle} is not watertight" in caplog.text and "IoU" in caplog.text
    handled += 1

    tried += 1
    assert _fetch_failure_line(tmp_path).startswith("consistent123 fetch: error: sha256 mismatch")
    handled += 1
    with capsys.disabled():
        report(
            "errors in one line, attributed to their source (config, --set, symlink, GIF, mesh, fetch)", handled, tried
        )


def _fetch_failure_line(tmp_path: Path) -> str:
    """workflow/scripts/fetch.py with a wrong checksum, then the line the failure summary quotes."""
    import runpy

    sys.path.insert(0, str(REPO / "workflow" / "scripts"))
    try:
        from _cli import FAILED, job_error_line
    finally:
        sys.path.pop(0)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.png").write_bytes(b"not the file")
    log = tmp_path / "fetch.log"
    fake = SimpleNamespace(
        params=SimpleNamespace(
            entry={"file": "a.png", "url": "https://x/a.png", "sha256": "0" * 64}, mirror=str(mirror)
        ),
        output=[str(tmp_path / "data" / "a.png")],
        log=[str(log)],
        wildcards=SimpleNamespace(benchmark="b"),
    )
    with pytest.raises(SystemExit):
        runpy.run_path(str(REPO / "workflow" / "scripts" / "fetch.py"), init_globals={"snakemake": fake})
    text = log.read_text()
    failed = [x for x in text.splitlines() if x.startswith(FAILED)]
    assert failed and failed[-1][len(FAILED) :] == job_error_line(text, 1)
    assert not (tmp_path / "data" / "a.png").exists()
    return failed[-1][len(FAILED) :]
