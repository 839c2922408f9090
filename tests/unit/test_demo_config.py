"""The packaged demo config is the one source of the CPU demo's method settings: the workflow's
config/config.yaml holds the same plus where the workflow keeps its tiny models and MLflow store.
Where tiny models live: models.tiny_dir, else $CONSISTENT123_TINY_MODELS, else the user's cache."""

from __future__ import annotations

from pathlib import Path

import yaml

from consistent123.config import TINY_MODELS_ENV, ModelsConfig, load_config
from consistent123.experiments.one_photo import demo_config_path
from consistent123.tracking.run import flatten

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_PLACEMENTS = {"models.tiny_dir", "tracking.uri"}


def test_workflow_demo_method_is_the_packaged_demo_config_plus_its_placements():
    packaged = flatten(yaml.safe_load(demo_config_path().read_text()))
    workflow = flatten(yaml.safe_load((REPO / "config" / "config.yaml").read_text())["method"])
    assert set(workflow) - set(packaged) == WORKFLOW_PLACEMENTS
    assert {k: v for k, v in workflow.items() if k not in WORKFLOW_PLACEMENTS} == packaged
    # Loaded, the two differ in those settings at most.
    a, b = load_config(demo_config_path()), load_config(REPO / "config" / "config.yaml")
    da, db = flatten(a.model_dump(mode="json")), flatten(b.model_dump(mode="json"))
    assert {k for k in da if da[k] != db[k]} <= WORKFLOW_PLACEMENTS


def test_demo_config_ships_in_the_package_and_asks_for_tiny_models():
    assert demo_config_path().is_relative_to(REPO / "consistent123")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"configs/*.yaml"' in pyproject  # package data: a pip-installed user has it
    cfg = load_config(demo_config_path())
    assert cfg.models.tiny and cfg.models.tiny_dir is None and "uri" not in cfg.tracking.model_fields_set


def test_tiny_models_folder_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(TINY_MODELS_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ModelsConfig().tiny_models_dir() is None  # the real models unless asked
    assert ModelsConfig(tiny=True).tiny_models_dir() == tmp_path / "xdg" / "consistent123" / "tiny-models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ModelsConfig(tiny=True).tiny_models_dir() == tmp_path / "home" / ".cache" / "consistent123" / "tiny-models"
    monkeypatch.setenv(TINY_MODELS_ENV, str(tmp_path / "env"))
    assert ModelsConfig(tiny=True).tiny_models_dir() == tmp_path / "env"
    # An explicit tiny_dir wins, and alone still means tiny models (the existing configs).
    assert ModelsConfig(tiny=True, tiny_dir=str(tmp_path / "cfg")).tiny_models_dir() == tmp_path / "cfg"
    assert ModelsConfig(tiny_dir=str(tmp_path / "cfg")).tiny_models_dir() == tmp_path / "cfg"
