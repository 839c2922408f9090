"""Occupancy grid for empty-space skipping (instant-ngp / stable-dreamfusion ``cuda_ray``).

A ``res^3`` grid over ``[-bound, bound]^3`` keeps an exponential moving maximum of the density
seen at jittered points in each cell: ``grid = max(decay * grid, sigma(jittered centre))``. A
cell is occupied when its value (or a neighbour's) exceeds ``min(mean(grid),
density_threshold)``. Samples that
fall in unoccupied cells are never sent through the field. Until the first update every cell
counts as occupied, so a fresh field renders exactly as without the grid.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from consistent123.config import NeRFConfig

UPDATE_CHUNK = 1 << 16


class OccupancyGrid(nn.Module):
    def __init__(self, resolution: int, bound: float, decay: float = 0.95, density_threshold: float = 10.0):
        super().__init__()
        self.resolution = int(resolution)
        self.bound = float(bound)
        self.decay = float(decay)
        self.density_threshold = float(density_threshold)
        r = self.resolution
        # Buffers, so the grid is saved and restored with the field's state_dict.
        self.register_buffer("density", torch.zeros(r, r, r))
        self.register_buffer("occupied", torch.ones(r, r, r, dtype=torch.bool))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @classmethod
    def from_config(cls, nerf_cfg: NeRFConfig) -> "OccupancyGrid":
        return cls(
            nerf_cfg.occupancy_grid_resolution, nerf_cfg.bound, nerf_cfg.occupancy_decay, nerf_cfg.density_threshold
        )

    def cell_of(self, x: torch.Tensor) -> torch.Tensor:
        """Integer cell coordinates [N, 3] of world points [N, 3] (clamped into the grid)."""
        u = (x + self.bound) / (2 * self.bound) * self.resolution
        return u.floor().long().clamp_(0, self.resolution - 1)

    def occupied_at(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean [...] for points [..., 3]."""
        c = self.cell_of(x.reshape(-1, 3))
        return self.occupied[c[:, 0], c[:, 1], c[:, 2]].reshape(x.shape[:-1])

    @torch.no_grad()
    def update(self, field_or_density, generator: Optional[torch.Generator] = None) -> None:
        """Re-estimate the grid from ``field.density`` (or any callable x [N, 3] -> sigma [N])."""
        density_fn: Callable = getattr(field_or_density, "density", field_or_density)
        r = self.resolution
        device = self.density.device
        axis = torch.arange(r, dtype=torch.float32, device=device)
        cells = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
        jitter = torch.rand(cells.shape, generator=generator).to(device)
        x = (cells + jitter) / r * (2 * self.bound) - self.bound
        sigma = torch.cat([density_fn(x[s : s + UPDATE_CHUNK]).reshape(-1) for s in range(0, x.shape[0], UPDATE_CHUNK)])
        sigma = sigma.reshape(r, r, r).float()
        if bool(self.initialised):
            self.density.copy_(torch.maximum(self.density * self.decay, sigma))
        else:
            self.density.copy_(sigma)
            self.initialised.fill_(True)
        threshold = min(self.mean_density(), self.density_threshold)
        occupied = (self.density > threshold).float()[None, None]
        # One cell of dilation: a cell the surface only grazes can miss every jittered probe;
        # its neighbours catch it, so skipping stays invisible in the image.
        occupied = torch.nn.functional.max_pool3d(occupied, 3, stride=1, padding=1)
        self.occupied.copy_(occupied[0, 0] > 0)

    def maybe_update(self, field, step: int, every: int, generator: Optional[torch.Generator] = None) -> bool:
        """Update on every ``every``-th step (step 0 included); returns whether it did."""
        if every > 0 and step % every == 0:
            self.update(field, generator)
            return True
        return False

    def mean_density(self) -> float:
        """R's ``mean_density``: the grid's densities, negatives as 0, averaged over every cell."""
        return float(self.density.clamp(min=0).mean())

    def occupied_fraction(self) -> float:
        return float(self.occupied.float().mean())
