"""The backend seam on a CPU: one resolution rule, a broken CUDA build falls back (logged), the
device is respected, and what the run chose is logged."""

from __future__ import annotations

import logging
import sys
import textwrap
import types

import pytest
import torch

from consistent123 import backends
from consistent123.backends import BackendError, resolve, resolve_all
from consistent123.config import Config, ConfigError, load_config


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine that reports CUDA; what the libraries do on import is set per test."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    backends.load_failure.cache_clear()
    yield
    backends.load_failure.cache_clear()


def _package(tmp_path, monkeypatch, name: str, body: str):
    """An importable package ``name`` whose __init__ runs ``body``."""
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_broken_tcnn_build_falls_back_with_a_warning(tmp_path, monkeypatch, fake_cuda, caplog):
    # What tinycudann raises on an A100 when it was built for sm_90 only.
    _package(
        tmp_path,
        monkeypatch,
        "tinycudann",
        """
        raise EnvironmentError("Could not find compatible tinycudann extension for compute capability 80.")
    """,
    )
    with caplog.at_level(logging.WARNING, logger="consistent123.backends"):
        assert resolve("hashgrid", "auto", "cuda") == "torch"
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "hashgrid.backend=auto" in warning and "compute capability 80" in warning and "OSError" in warning
    with pytest.raises(BackendError, match="hashgrid.backend=tcnn: not usable here .*compute capability 80"):
        resolve("hashgrid", "tcnn", "cuda")
    # The run records the fallback and its reason next to the chosen backends (MLflow params).
    monkeypatch.setitem(sys.modules, "nvdiffrast", None)
    chosen = resolve_all(Config(), torch.device("cuda"))
    assert (chosen.hashgrid, chosen.rasteriser) == ("torch", "torch")
    assert "hashgrid: tinycudann is installed but fails to load (OSError" in chosen.params()["backend.fallbacks"]
    assert "rasteriser: nvdiffrast is not installed" in chosen.params()["backend.fallbacks"]
    assert issubclass(BackendError, ConfigError)  # the CLI prints it as one line


def test_missing_library_on_cuda_warns_and_on_cpu_is_silent(tmp_path, monkeypatch, fake_cuda, caplog):
    monkeypatch.setitem(sys.modules, "nvdiffrast", None)  # import fails with ModuleNotFoundError
    with caplog.at_level(logging.WARNING, logger="consistent123.backends"):
        assert resolve("rasteriser", "auto", "cpu") == "torch"
        assert not caplog.records
        assert resolve("rasteriser", "auto", "cuda:0") == "torch"
    assert "nvdiffrast" in caplog.records[0].getMessage()


def test_device_is_respected_when_the_library_loads(tmp_path, monkeypatch, fake_cuda):
    _package(tmp_path, monkeypatch, "tinycudann", "LOADED = True\n")
    assert resolve("hashgrid", "auto", "cuda") == "tcnn"
    assert resolve("hashgrid", "auto", "cpu") == "torch"  # train.device=cpu on a GPU node
    assert resolve("hashgrid", "torch", "cuda") == "torch"
    with pytest.raises(BackendError, match="the run's device is cpu"):
        resolve("hashgrid", "tcnn", "cpu")
    cfg = load_config(None, ["train.device=cpu"])
    chosen = resolve_all(cfg, torch.device("cpu"))
    assert (chosen.hashgrid, chosen.rasteriser, chosen.marching_tets) == ("torch", "torch", "torch")


def test_unknown_names_are_one_error_type():
    with pytest.raises(BackendError, match="expected one of auto, torch, tcnn"):
        resolve("hashgrid", "cuda", "cpu")
    with pytest.raises(BackendError, match="dmtet.marching_backend='kaolin'"):
        resolve("marching_tets", "kaolin", "cpu")
    with pytest.raises(ConfigError, match="marching_backend"):
        load_config(None, ["dmtet.marching_backend=kaolin"])


def test_chosen_backends_become_params_and_replace_auto():
    cfg = Config()
    chosen = resolve_all(cfg, torch.device("cpu"))
    params = chosen.params()
    assert params["backend.device"] == "cpu" and params["backend.hashgrid"] == "torch"
    assert params["backend.priors_dtype"] == "float32" and params["backend.field_dtype"] == "float32"
    run_cfg = chosen.apply(cfg)
    assert (run_cfg.hashgrid.backend, run_cfg.dmtet.rasteriser_backend, run_cfg.dmtet.marching_backend) == (
        "torch",
        "torch",
        "torch",
    )
    assert cfg.hashgrid.backend == "auto"  # the saved config keeps "auto"
    from consistent123.training.trainer import config_hash

    assert config_hash(run_cfg) == config_hash(cfg)  # a checkpoint resumes whatever a node resolves


def test_reconstruct_logs_backends_to_mlflow_and_the_run_log(tmp_path, caplog):
    from consistent123.pipeline.reconstruct import log_backends
    from consistent123.tracking.run import RunTracker

    tracker = RunTracker.open(tmp_path / "out", f"sqlite:///{tmp_path}/mlflow.db", "backends", "case")
    with caplog.at_level(logging.INFO, logger="consistent123.pipeline.reconstruct"):
        log_backends(Config(), torch.device("cpu"), tracker)
    assert any("device and backends: device=cpu, hashgrid=torch" in r.getMessage() for r in caplog.records)
    params = tracker.client.get_run(tracker.run_id).data.params
    assert params["backend.hashgrid"] == "torch" and params["backend.rasteriser"] == "torch"
    assert params["backend.marching_tets"] == "torch" and params["backend.device"] == "cpu"


def test_trainer_builds_the_backends_resolved_for_its_device():
    from consistent123.priors.base import Priors
    from consistent123.training.trainer import Trainer

    cfg = load_config(
        None, ["hashgrid.num_levels=2", "hashgrid.log2_hashmap_size=8", "nerf.hidden_dim=8", "train.use_priors=false"]
    )
    case = types.SimpleNamespace(name="case", caption="", rgba=torch.zeros(4, 8, 8))
    trainer = Trainer(cfg, case, Priors(), torch.device("cpu"))
    assert (trainer.cfg.hashgrid.backend, trainer.cfg.dmtet.rasteriser_backend) == ("torch", "torch")
    assert trainer.nerf.encoder.backend == "torch"
