"""The coarse representation (spec §2): hash grid + small MLP -> density and albedo.

As in the authors' code (stable-dreamfusion's grid network): a 3-layer ReLU MLP (hidden 64)
maps the hash encoding to 4 numbers; density = act(h0 + blob(x)), albedo = sigmoid(h1:4).
The density blob puts a soft ball at the origin at initialisation so the first views are not
empty; R pairs it with the activation (nerf/renderer.py ``density_blob``): a Gaussian
``blob_density * exp(-|x|^2 / (2 blob_radius^2))`` for ``exp``, a cone ``blob_density *
(1 - |x| / blob_radius)`` for ``softplus``. Normals are the negated, normalised
central-difference gradient of the density.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from consistent123.config import HashGridConfig, LossConfig, NeRFConfig
from consistent123.fields.common import MLP, mask_finer_levels
from consistent123.fields.hashgrid import HashGridEncoding
from consistent123.fields.occupancy import OccupancyGrid
from consistent123.losses import entropy, normal_smoothness_2d, normal_smoothness_3d, orientation

__all__ = ["MLP", "NeRFField", "trunc_exp"]


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


class NeRFField(nn.Module):
    phase = "nerf"

    def __init__(self, nerf_cfg: NeRFConfig, hashgrid_cfg: HashGridConfig):
        super().__init__()
        self.cfg = nerf_cfg
        self.bound = float(nerf_cfg.bound)
        self.num_levels = hashgrid_cfg.num_levels
        self.max_level = 1.0  # progressive level: set by the iteration plan
        self.blob_scale = 1.0  # < 1 while the blob fades (nerf.blob_fade): set by the iteration plan
        self.encoder = HashGridEncoding(hashgrid_cfg, self.bound)
        self.mlp = MLP(self.encoder.output_dim, 4, nerf_cfg.hidden_dim, nerf_cfg.num_layers)
        self.occupancy = OccupancyGrid.from_config(nerf_cfg)

    def density_blob(self, x: torch.Tensor) -> torch.Tensor:
        d2 = (x**2).sum(-1)
        strength = self.cfg.blob_density * self.blob_scale
        if self.cfg.density_activation == "exp":
            return strength * torch.exp(-d2 / (2 * self.cfg.blob_radius**2))
        return strength * (1 - torch.sqrt(d2) / self.cfg.blob_radius)

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        if self.cfg.density_activation == "exp":
            return trunc_exp(h)
        return F.softplus(h - 1.0)  # R's biased softplus

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return mask_finer_levels(self.encoder(x), self.max_level, self.num_levels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, 3] in [-bound, bound] -> (sigma [N], albedo [N, 3])."""
        h = self.mlp(self.encode(x)).float()
        sigma = self._activate(h[:, 0] + self.density_blob(x.float()))
        return sigma, torch.sigmoid(h[:, 1:])

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[0]

    def surface_threshold(self, threshold: float, rule: str) -> float:
        """The density the surface is read at (``dmtet.init_density_rule``): ``threshold``, or
        with "min_mean" the occupancy grid's mean density when that is lower (R's rule under -O)."""
        if rule == "fixed" or not bool(self.occupancy.initialised):
            return float(threshold)
        return min(self.occupancy.mean_density(), float(threshold))

    def normals(self, x: torch.Tensor) -> torch.Tensor:
        """Unit normals [N, 3]: -grad(sigma) by central differences (one batched field call)."""
        eps = self.cfg.normal_eps
        offsets = torch.eye(3, device=x.device, dtype=x.dtype) * eps
        probes = torch.cat([x.unsqueeze(1) + offsets, x.unsqueeze(1) - offsets], 1)  # [N, 6, 3]
        sigma = self.density(probes.reshape(-1, 3).clamp(-self.bound, self.bound)).reshape(-1, 2, 3)
        grad = (sigma[:, 0] - sigma[:, 1]) / (2 * eps)
        return torch.nan_to_num(F.normalize(-grad, dim=-1, eps=1e-20))

    # ------------------------------------------------------------ the representation protocol
    def set_max_level(self, fraction: float) -> None:
        self.max_level = float(fraction)

    def render_size(self, reference: bool) -> int:
        """R renders the known view at known_view_scale (1.5) times the training size."""
        return round(self.cfg.render_size * (self.cfg.ref_render_scale if reference else 1.0))

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
        from consistent123.render.volume import render_nerf

        return render_nerf(
            self,
            cam,
            size,
            size,
            shading=shading,
            bg_color=background,
            generator=generator,
            perturb=perturb,
            ray_noise=ray_noise,
            normal_perturb=normal_perturb,
        )

    def regularisers(self, out: dict, plan, loss_cfg: LossConfig) -> dict[str, torch.Tensor]:
        terms = {}
        if plan.lambda_entropy > 0:
            terms["entropy"] = plan.lambda_entropy * entropy(out["sample_weights"])
        if out.get("orient_samples") is not None:  # shaded views carry normals
            if loss_cfg.lambda_orient > 0:
                terms["orient"] = loss_cfg.lambda_orient * orientation(out)
            if loss_cfg.lambda_normal_smooth_3d > 0 and out.get("normals_perturbed") is not None:
                terms["normal_smooth_3d"] = loss_cfg.lambda_normal_smooth_3d * normal_smoothness_3d(out)
            if loss_cfg.lambda_normal_smooth_2d > 0:
                smoothness = normal_smoothness_2d(
                    out, loss_cfg.normal_smooth_2d_form, loss_cfg.normal_smooth_2d_blur_kernel
                )
                terms["normal_smooth"] = loss_cfg.lambda_normal_smooth_2d * smoothness
        return terms

    def param_groups(self, lr: float, encoder_lr_scale: float = 10.0) -> list[dict]:
        """R trains the hash table with 10x the MLP's learning rate (network_grid get_params)."""
        return [
            {"params": list(self.encoder.parameters()), "lr": lr * encoder_lr_scale},
            {"params": list(self.mlp.parameters()), "lr": lr},
        ]
