"""Test-session fixtures and the policy for the ``gpu`` marker.

Session fixtures: what costs seconds to build and is only read afterwards, built once for all
test folders (``tiny_models``).

A ``gpu`` test skips where CUDA is missing: the only allowed skip. With ``REQUIRE_GPU=1`` (a GPU
node's check, perf/gpu_check.sh) every skipped ``gpu`` test is a failure instead, and so is
a run that selected no ``gpu`` test at all, so a broken CUDA install can never look green.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.support.tiny_models import tiny_models_dir


@pytest.fixture(scope="session")
def tiny_models() -> Path:
    """Every tiny model (random weights, the real classes), built once per session; read-only use."""
    return tiny_models_dir()


def require_gpu() -> bool:
    return os.environ.get("REQUIRE_GPU", "") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and require_gpu() and item.get_closest_marker("gpu"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"REQUIRE_GPU=1 but this gpu test was skipped: {reason}"


def pytest_sessionfinish(session, exitstatus):
    if require_gpu() and exitstatus == 0:
        ran = [i for i in session.items if i.get_closest_marker("gpu")]
        if not ran:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            print("\nREQUIRE_GPU=1 but no gpu test was selected")
