"""The optimiser the authors use (Adan at 5x lr with a global gradient clip) or Adam, and one step."""

from __future__ import annotations

import torch

from consistent123.config import TrainConfig
from consistent123.errors import ConfigError


def base_lr(train_cfg: TrainConfig) -> float:
    """R main.py: Adan at 5x lr ("Adan usually requires a larger LR"), Adam at lr."""
    return train_cfg.lr * (train_cfg.adan_lr_scale if train_cfg.optimizer == "adan" else 1.0)


def make_optimizer(field, train_cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser over ``field.param_groups`` (encodings at ``encoder_lr_scale`` x the base rate)."""
    groups = field.param_groups(base_lr(train_cfg), train_cfg.encoder_lr_scale)
    if train_cfg.optimizer == "adam":
        return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
    if train_cfg.optimizer == "adan":
        from timm.optim import Adan  # R's optimiser; timm keeps a maintained implementation

        # timm's Adan has no max_grad_norm: ``optimizer_step`` clips the global norm first.
        return Adan(groups, eps=1e-8, weight_decay=train_cfg.adan_weight_decay)
    raise ConfigError(f"train.optimizer: unknown optimiser {train_cfg.optimizer!r}")


def optimizer_step(optimizer: torch.optim.Optimizer, scaler, train_cfg: TrainConfig) -> None:
    """One step as R's Adan takes it: unscale (mixed precision), clip the global gradient norm
    at ``adan_max_grad_norm`` (Adan only), step; the scaler skips steps with inf/NaN gradients."""
    if train_cfg.optimizer == "adan" and train_cfg.adan_max_grad_norm:
        scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, train_cfg.adan_max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
