"""What the random-weight stand-ins share: their seed, the real models' normalisation constants
and the tiny-models manifest name (read by ``consistent123.priors.provenance``)."""

from __future__ import annotations

import contextlib

import torch

SEED = 0
MANIFEST = "tiny_models.json"
# Stable Diffusion's scheduler and CLIP's image normalisation, as the real checkpoints ship them.
SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@contextlib.contextmanager
def seeded(seed: int = SEED):
    """Build under a fixed seed without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
