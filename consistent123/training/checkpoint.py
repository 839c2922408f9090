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

from consistent123.config import Config
from consistent123.errors import ConfigError
from consistent123.io import atomic_path

# Settings that do not change what is trained (where it is logged, how it is exported or
# scored, how often it is saved): a checkpoint stays valid across changes to these.
NON_TRAINING = {
    "tracking": None,
    "export": None,
    "eval": None,
    "train": ("device", "checkpoint_every", "log_every", "log_images_every"),
    # Backends compute the same model and share one checkpoint layout: a run may
    # resume on a node that resolves another one.
    "hashgrid": ("backend",),
    "dmtet": ("marching_backend", "rasteriser_backend"),
}


def config_hash(cfg: Config) -> str:
    """Fingerprint of everything that shapes training, to refuse resuming across a config change."""
    data = cfg.model_dump(mode="json")
    for section, keys in NON_TRAINING.items():
        if keys is None:
            data.pop(section, None)
        else:
            for k in keys:
                data[section].pop(k, None)
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
