"""The coarse representation (spec §2): hash grid + small MLP -> density and albedo.

As in the authors' code (stable-dreamfusion's grid network): a 3-layer ReLU MLP (hidden 64)
maps the hash encoding to 4 numbers; density = exp(h0 + blob(x)) with a truncated-gradient
exp, albedo = sigmoid(h1:4). The density blob ``blob_density * (1 - |x| / blob_radius)`` puts
a soft ball at the origin at initialisation so the first views are not empty. Normals are the
negated, normalised central-difference gradient of the density.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from consistent123.fields.hashgrid import HashGridEncoding
from consistent123.fields.occupancy import OccupancyGrid


class _TruncExp(torch.autograd.Function):
    """exp with its gradient clamped at exp(15): keeps early large densities from exploding."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(-15, 15))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


class MLP(nn.Module):
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


class NeRFField(nn.Module):
    def __init__(self, nerf_cfg, hashgrid_cfg):
        super().__init__()
        self.cfg = nerf_cfg
        self.bound = float(nerf_cfg.bound)
        self.encoder = HashGridEncoding(hashgrid_cfg, self.bound)
        self.mlp = MLP(self.encoder.output_dim, 4, nerf_cfg.hidden_dim, nerf_cfg.num_layers)
        self.occupancy = OccupancyGrid.from_config(nerf_cfg)

    def density_blob(self, x: torch.Tensor) -> torch.Tensor:
        d2 = (x**2).sum(-1)
        if self.cfg.density_activation == "exp":
            return self.cfg.blob_density * (1 - torch.sqrt(d2) / self.cfg.blob_radius)
        return self.cfg.blob_density * torch.exp(-d2 / (2 * self.cfg.blob_radius**2))

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        if self.cfg.density_activation == "exp":
            return trunc_exp(h)
        return F.softplus(h - 1.0)  # R's biased softplus

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, 3] in [-bound, bound] -> (sigma [N], albedo [N, 3])."""
        h = self.mlp(self.encoder(x))
        sigma = self._activate(h[:, 0] + self.density_blob(x))
        return sigma, torch.sigmoid(h[:, 1:])

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[0]

    def normals(self, x: torch.Tensor) -> torch.Tensor:
        """Unit normals [N, 3]: -grad(sigma) by central differences (one batched field call)."""
        eps = self.cfg.normal_eps
        offsets = torch.eye(3, device=x.device, dtype=x.dtype) * eps
        probes = torch.cat([x.unsqueeze(1) + offsets, x.unsqueeze(1) - offsets], 1)  # [N, 6, 3]
        sigma = self.density(probes.reshape(-1, 3).clamp(-self.bound, self.bound)).reshape(-1, 2, 3)
        grad = (sigma[:, 0] - sigma[:, 1]) / (2 * eps)
        return torch.nan_to_num(F.normalize(-grad, dim=-1, eps=1e-20))

    def param_groups(self, lr: float) -> list[dict]:
        """R trains the hash table with 10x the MLP's learning rate."""
        return [
            {"params": list(self.encoder.parameters()), "lr": lr * 10},
            {"params": list(self.mlp.parameters()), "lr": lr},
        ]
