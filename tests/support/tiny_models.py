"""The tiny models for the prior tests, built once per test session, and a config pointing at them
(tests/conftest.py hands the same folder out as the session fixture ``tiny_models``)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from consistent123.config import Config


@functools.lru_cache(maxsize=None)
def tiny_models_dir() -> Path:
    """Build every tiny model once (through the real builder) into a session temp folder."""
    from consistent123.priors.standins.tiny import ensure_tiny_models

    root = Path(tempfile.mkdtemp(prefix="c123-tiny-models-"))
    atexit.register(shutil.rmtree, root, True)
    ensure_tiny_models(root)
    return root


def tiny_config(resolution: int = 32, **sds) -> Config:
    """The default config pointed at the tiny models, priors run at ``resolution`` pixels."""
    cfg = Config()
    cfg.models.tiny_dir = str(tiny_models_dir())
    cfg.sds.zero123_resolution = resolution
    cfg.sds.sd_resolution = resolution
    for key, value in sds.items():
        setattr(cfg.sds, key, value)
    return cfg
