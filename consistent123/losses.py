"""Reference-view reconstruction loss (paper Eq. 1-3) and the mesh/2D regularisers' weights.

L_rec = lambda_rgb * MSE(rgb) + lambda_mask * MSE(mask) + lambda_depth * (1 - Pearson(depth)).
Pearson makes the depth term blind to the monocular depth's unknown scale and shift.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    a = a.flatten().float() - a.float().mean()
    b = b.flatten().float() - b.float().mean()
    return (a * b).sum() / (a.norm() * b.norm() + eps)


def depth_weight(loss_cfg, t: int, phase_iters: int, in_mesh_phase: bool) -> float:
    """R ramps lambda_depth by min(1, t / iters) and drops it in the mesh phase."""
    if in_mesh_phase and not loss_cfg.depth_in_mesh_phase:
        return 0.0
    ramp = min(1.0, t / max(phase_iters, 1)) if loss_cfg.depth_ramp else 1.0
    return loss_cfg.lambda_depth * ramp


def reference_losses(render: dict, target: dict, loss_cfg, lambda_depth: float) -> dict[str, torch.Tensor]:
    """Weighted terms of L_rec; ``render`` and ``target`` hold HWC tensors of the same size."""
    mask = target["mask"]
    terms = {
        "rgb": loss_cfg.lambda_rgb * F.mse_loss(render["rgb"], target["rgb"]),
        "mask": loss_cfg.lambda_mask * F.mse_loss(render["opacity"], mask),
    }
    valid = target["valid_depth"][..., 0]
    if lambda_depth > 0 and int(valid.sum()) > 8 and "depth" in render:
        terms["depth"] = lambda_depth * (1.0 - pearson(render["depth"][..., 0][valid], target["depth"][..., 0][valid]))
    return terms


def normal_smoothness_2d(normals: torch.Tensor) -> torch.Tensor:
    """R's 2D normal smoothness: squared differences of neighbouring pixels of the normal image."""
    return (normals[1:] - normals[:-1]).square().mean() + (normals[:, 1:] - normals[:, :-1]).square().mean()
