"""Checkpoints: the fingerprint of what shapes training, and the state saved and read back.

A checkpoint is only resumed under the configuration it was trained with: the fingerprint
leaves out every setting that does not change what is trained (where it is logged, how it is
exported or scored, how often it is saved, which backend computes it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from consistent123.config import Config, training_settings
from consistent123.errors import ConfigError
from consistent123.io import atomic_path


def config_hash(cfg: Config) -> str:
    """Fingerprint of everything that shapes training, to refuse resuming across a config change
    (the settings marked ``NOT_TRAINING`` in ``consistent123.config`` are left out)."""
    data = training_settings(cfg)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def save_state(state: dict, path: str | Path) -> None:
    """Write atomically: a kill mid-write leaves the previous checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path, device, fingerprint: str) -> dict:
    """The state saved at ``path``, refused when it was trained under another fingerprint."""
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("config_hash") != fingerprint:
        raise ConfigError(f"{path}: checkpoint was trained with another configuration")
    return state
