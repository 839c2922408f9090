"""The moving average of the NeRF's weights that the mesh phase starts from (``train.ema_decay``).

R (main.py) trains with ``ema_decay=0.95`` through torch_ema, one update per 100-iteration epoch,
and its mesh run loads the averaged weights; torch_ema warms the decay up as
``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so a short run averages its last few
epochs rather than reaching back to the initial weights.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch_ema import ExponentialMovingAverage

from consistent123.config import TrainConfig


def weight_average(module: torch.nn.Module, train_cfg: TrainConfig) -> Optional[ExponentialMovingAverage]:
    """The average of ``module``'s parameters (starting from them), or None with ``ema_decay`` None."""
    if train_cfg.ema_decay is None:
        return None
    return ExponentialMovingAverage(module.parameters(), decay=train_cfg.ema_decay, use_num_updates=True)
