"""What both representations share: the MLP builder, the progressive level mask, and the
small protocol the trainer drives them through (so it holds one field, never a phase switch).
"""

from __future__ import annotations

import math
from typing import Optional, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from consistent123.config import LossConfig


class MLP(nn.Module):
    """ReLU MLP without output activation (R's grid network and its DMTet colour net)."""

    def __init__(self, dim_in: int, dim_out: int, dim_hidden: int, num_layers: int):
        super().__init__()
        dims = [dim_in] + [dim_hidden] * (num_layers - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def active_levels(max_level: float, num_levels: int) -> int:
    """Levels R's grid encoder keeps for ``max_level`` in (0, 1]: ceil(max_level * L), at least 1."""
    return max(min(int(math.ceil(max_level * num_levels)), num_levels), 1)


def mask_finer_levels(encoding: torch.Tensor, max_level: float, num_levels: int) -> torch.Tensor:
    """Zero the features of every level past ``active_levels`` (R gridencoder's max_level)."""
    keep = active_levels(max_level, num_levels)
    if keep >= num_levels:
        return encoding
    per_level = encoding.shape[-1] // num_levels
    mask = torch.zeros(encoding.shape[-1], dtype=encoding.dtype, device=encoding.device)
    mask[: keep * per_level] = 1
    return encoding * mask


class Representation(Protocol):
    """The one interface of the NeRF and the DMTet mesh, as the trainer uses them."""

    phase: str  # "nerf" or "mesh"

    def render(
        self,
        cam,
        size: int,
        shading: Sequence,
        background: Optional[torch.Tensor],
        *,
        generator: Optional[torch.Generator] = None,
        perturb: bool = True,
        ray_noise: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
        normal_perturb: float = 0.0,
    ) -> dict:
        """rgb [H,W,3], opacity [H,W,1], depth [H,W,1], normals [H,W,3] (+ what regularisers need)."""

    def regularisers(self, out: dict, plan, loss_cfg: LossConfig) -> dict[str, torch.Tensor]:
        """Weighted regulariser terms of one render under the iteration's plan."""

    def param_groups(self, lr: float, encoder_lr_scale: float) -> list[dict]:
        """Optimiser groups: hash-grid encodings at ``lr * encoder_lr_scale``, the rest at ``lr``."""

    def render_size(self, reference: bool) -> int:
        """Training render side for the reference view or a novel view."""

    def set_max_level(self, fraction: float) -> None:
        """Use only the first ``fraction`` of the hash-grid levels (progressive level)."""
