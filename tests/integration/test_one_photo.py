"""``consistent123 run PHOTO --out DIR``: a new user's photo (drawn here, in no dataset), run from a
folder outside the clone as an installed command would be, and its page opened in headless
Chromium: the viewer loads the mesh, draws it, and a drag turns it."""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from consistent123.testing import TINY_OVERRIDES
from tests.support.headless_chromium import CAMERA_ORBIT, VIEWER_BOX, WAIT_FOR_MODEL, Chromium

REPO = Path(__file__).resolve().parents[2]


def draw_photo(path: Path, alpha: bool = True) -> Path:
    """A shaded red ball on a blue box (RGBA: the alpha is the mask; else on a grey backdrop)."""
    size = 160
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rgba = np.zeros((size, size, 4), np.uint8)
    box = (xx > 45) & (xx < 115) & (yy > 85) & (yy < 140)
    rgba[box] = (40, 90, 200, 255)
    d2 = (xx - 80) ** 2 + (yy - 60) ** 2
    ball = d2 < 35**2
    light = np.clip(0.3 + 0.7 * np.sqrt(np.clip(1 - d2 / 35**2, 0, 1)), 0, 1)
    rgba[ball, 0] = (250 * light[ball]).astype(np.uint8)
    rgba[ball, 1:3] = 30
    rgba[ball, 3] = 255
    image = Image.fromarray(rgba, "RGBA")
    if not alpha:
        backdrop = Image.new("RGB", image.size, (200, 200, 195))
        backdrop.paste(image, (0, 0), image)
        image = backdrop
    image.save(path)
    return path


def cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed command as a user runs it, from ``cwd`` (this checkout's code on the path)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "consistent123.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_models):
    """``run --demo`` at test size; the tiny models come from $CONSISTENT123_TINY_MODELS (no
    tiny_dir in the packaged demo config), here the session's."""
    where = tmp_path_factory.mktemp("elsewhere")
    photo = draw_photo(where / "toy.png")
    overrides = [a for o in TINY_OVERRIDES for a in ("--set", o)]
    env = {"CONSISTENT123_TINY_MODELS": str(tiny_models)}
    result = cli(["run", photo.name, "--out", "out", "--demo", "--no-progress", *overrides], where, env)
    assert result.returncode == 0, result.stderr[-3000:]
    return where, where / "out", result


@pytest.mark.slow
def test_run_demo_writes_the_page_metrics_and_mesh_where_asked(demo_run):
    where, out, result = demo_run
    assert sorted(p.name for p in where.iterdir()) == ["out", "toy.png"]  # nothing else where it ran
    for name in ("index.html", "case/rgba.png", "run/mesh.glb", "run/metrics.json", "run/run.json", "mlflow.db"):
        assert (out / name).is_file(), name
    # The closing message names files that exist.
    written = re.findall(r"^wrote (.+)$", result.stdout, re.M)
    assert written and all((where / p).is_file() for p in written), result.stdout
    record = json.loads((out / "run/metrics.json").read_text())
    assert set(record["metrics"]) == {"psnr", "lpips", "clip_similarity"}
    assert record["priors"]["priors"] == "random" and "not the method's" in record["notice"]
    run = json.loads((out / "run/run.json").read_text())
    assert run["priors"] == "random" and run["stand_ins"]["random-weight"]
    assert run["tracking_uri"] == f"sqlite:///{(out / 'mlflow.db').resolve()}"
    page = (out / "index.html").read_text()
    assert "random-weight priors" in page and "<model-viewer" in page and "RANDOM-BACKBONE" in page
    assert "input: toy.png, preprocessed" in page


@pytest.mark.slow
def test_run_demo_says_random_weights_and_the_mlflow_run_at_start_and_end(demo_run):
    _, out, result = demo_run
    lines = result.stderr.splitlines()
    stand_in = [i for i, line in enumerate(lines) if "RANDOM-WEIGHT" in line]
    work = [i for i, line in enumerate(lines) if "1/4 preprocess" in line]
    assert stand_in and work and stand_in[0] < work[0], "\n".join(lines[:20])  # before any work
    assert lines[-1].startswith("consistent123: NOTE: this command used stand-in models (RANDOM-WEIGHT")
    run_id = json.loads((out / "run/run.json").read_text())["run_id"]
    mlflow = [line for line in lines if f"MLflow run {run_id} (experiment 'consistent123-demo'" in line]
    assert any("logging to" in line for line in mlflow) and any("logged to" in line for line in mlflow)


def test_run_without_weights_stops_at_once_in_one_line(tmp_path):
    photo = draw_photo(tmp_path / "toy.jpg", alpha=False)
    empty = tmp_path / "empty-cache"
    env = {"HF_HOME": str(empty), "TORCH_HOME": str(empty), "XDG_CACHE_HOME": str(empty)}
    result = cli(["run", photo.name, "--out", "out"], tmp_path, env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr  # one line
    line = result.stderr.strip()
    assert line.startswith("consistent123 run: error: no weights on this machine")
    assert "consistent123 fetch-models" in line and "--demo" in line and "zero123" in line
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the page in a browser
def check_viewer(page: Path, shots: Path, name: str) -> None:
    """The viewer loads the mesh, its canvas is not blank, a drag turns the camera and the picture."""
    with Chromium() as browser:
        browser.open(page)
        assert browser.evaluate(WAIT_FOR_MODEL % 90000, timeout=120) == "loaded"
        time.sleep(1.0)  # the loading bar fades out
        box = browser.evaluate(VIEWER_BOX)
        before, orbit_before = browser.screenshot(box), browser.evaluate(CAMERA_ORBIT)
        Image.fromarray(browser.screenshot()).save(shots / f"{name}_before.png")
        drawn = (before.min(axis=-1) < 235).mean()  # the white background is all a blank viewer shows
        assert drawn > 0.05, f"viewer looks blank ({drawn:.3f} of its pixels drawn)"
        browser.drag(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, 120, 30)
        time.sleep(2.0)  # the camera's damping settles
        after, orbit_after = browser.screenshot(box), browser.evaluate(CAMERA_ORBIT)
        Image.fromarray(browser.screenshot()).save(shots / f"{name}_after.png")
    assert orbit_after != orbit_before
    changed = (np.abs(after.astype(int) - before.astype(int)).max(axis=-1) > 20).mean()
    assert changed > 0.02, f"the drag changed {changed:.3f} of the viewer's pixels"


@pytest.mark.slow
def test_index_html_viewer_in_headless_chromium(demo_run, tmp_path):
    _, out, _ = demo_run
    check_viewer(out / "index.html", tmp_path, "index")


@pytest.mark.slow
def test_report_run_page_viewer_in_headless_chromium(demo_run, tmp_path):
    """The page the report shows for a run, written by the workflow's own script (handed what
    Snakemake hands it)."""
    _, out, _ = demo_run
    page = tmp_path / "photo_default_toy.html"
    sm = SimpleNamespace(
        input=SimpleNamespace(glb=str(out / "run" / "mesh.glb"), metrics=str(out / "run" / "metrics.json")),
        output=[str(page)],
        wildcards=SimpleNamespace(benchmark="photo", variant="default", case="toy"),
    )
    runpy.run_path(str(REPO / "workflow" / "scripts" / "turntable_page.py"), init_globals={"snakemake": sm})
    text = page.read_text()
    assert "random-weight priors" in text and "lpips (lpips-v0.1-alex-RANDOM-BACKBONE)" in text
    value = json.loads((out / "run" / "metrics.json").read_text())["metrics"]["psnr"]
    assert f"<td>{value:.3f}</td>" in text and repr(value) not in text  # the paper's precision only
    check_viewer(page, tmp_path, "report")


def test_tiny_models_command_defaults_to_where_models_tiny_looks(tiny_models, monkeypatch, capsys):
    from consistent123.cli import main

    monkeypatch.setenv("CONSISTENT123_TINY_MODELS", str(tiny_models))
    assert main(["tiny-models"]) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert listed and all(Path(path).parent == tiny_models for _, path in listed)
