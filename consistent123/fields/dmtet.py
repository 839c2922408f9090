"""DMTet: the fine (mesh) representation of stage 2's mesh phase (spec §2).

An SDF value and a bounded deformation per vertex of the generated tet grid; marching
tetrahedra turn them into a mesh each step, the rasteriser renders it, and a hash-grid colour
field gives the albedo at the visible surface points. The grid is initialised from the NeRF's
density as stable-dreamfusion's ``init_tet`` does: shrink the grid to the occupied box (plus a
margin), then SDF = clamp(sigma - threshold, -c, c), positive inside.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from consistent123.config import CamerasConfig, DMTetConfig, HashGridConfig, LossConfig
from consistent123.errors import Consistent123Error
from consistent123.fields.common import MLP, mask_finer_levels
from consistent123.fields.hashgrid import HashGridEncoding
from consistent123.fields.marching_tets import marching_tetrahedra
from consistent123.fields.tets import cells_for_grid_size, make_tet_grid
from consistent123.losses import laplacian_smooth, normal_consistency
from consistent123.render.cameras import Camera, orbit_position
from consistent123.render.rasterize import render_mesh

DensityFn = Callable[[torch.Tensor], torch.Tensor]
log = logging.getLogger(__name__)


# Used when the colour MLP is built without a NeRF to follow (the trainer passes the NeRF's sizes).
DEFAULT_COLOR_HIDDEN, DEFAULT_COLOR_LAYERS = 64, 3


@torch.no_grad()
def _evaluate(fn: DensityFn, points: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
    return torch.cat([fn(p).reshape(-1) for p in points.split(chunk)])


# ---------------------------------------------------------------- the field
class DMTetField(nn.Module):
    phase = "mesh"

    def __init__(
        self,
        dmtet_cfg: DMTetConfig,
        hashgrid_cfg: HashGridConfig,
        bound: float,
        tet_scale: Optional[torch.Tensor] = None,
    ):
        super().__init__()
        self.cfg = dmtet_cfg
        self.bound = float(bound)
        verts, tets = make_tet_grid(cells_for_grid_size(dmtet_cfg.tet_grid_size), bound=1.0)
        # Rebuilt identically from tet_grid_size, so checkpoints leave them out (~400 MB at 256).
        self.register_buffer("base_verts", verts, persistent=False)  # unit cube; scaled by bound * tet_scale
        self.register_buffer("tets", tets, persistent=False)
        scale = torch.ones(3) if tet_scale is None else torch.as_tensor(tet_scale, dtype=torch.float32)
        self.register_buffer("tet_scale", scale.reshape(3).clone())
        self.sdf = nn.Parameter(torch.zeros(verts.shape[0]))
        self.deform = nn.Parameter(torch.zeros(verts.shape[0], 3))
        self.encoder = HashGridEncoding(hashgrid_cfg, self.bound)
        self.num_levels = hashgrid_cfg.num_levels
        self.max_level = 1.0  # progressive level: set by the iteration plan (R keeps it in the mesh run)
        self.color_net = MLP(
            self.encoder.output_dim,
            3,
            dmtet_cfg.color_hidden_dim or DEFAULT_COLOR_HIDDEN,
            dmtet_cfg.color_num_layers or DEFAULT_COLOR_LAYERS,
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("base_verts", "tets"):  # older checkpoints saved the grid; it is rebuilt instead
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- construction from the coarse stage
    @classmethod
    def from_density(
        cls,
        density_fn: DensityFn,
        dmtet_cfg: DMTetConfig,
        hashgrid_cfg: HashGridConfig,
        bound: float,
        device=None,
        threshold: Optional[float] = None,
    ) -> "DMTetField":
        """Initialise from a NeRF density ``density_fn(points[N,3]) -> sigma[N]`` (no grad),
        queried on ``device`` (where the NeRF lives; default: CPU), its surface at ``threshold``
        (default ``dmtet.init_density_threshold``)."""
        field = cls(dmtet_cfg, hashgrid_cfg, bound).to(device or "cpu")
        dev = field.base_verts.device
        thresh = dmtet_cfg.init_density_threshold if threshold is None else threshold
        pts = field.base_verts * field.bound
        sigma = _evaluate(density_fn, pts)
        occupied = sigma > thresh
        if not bool(occupied.any()):
            raise Consistent123Error(
                f"DMTet init: no grid point has density above {thresh:.4g} (dmtet.init_density_threshold="
                f"{dmtet_cfg.init_density_threshold}, rule {dmtet_cfg.init_density_rule}) "
                f"(max density {float(sigma.max()):.4g}); the coarse NeRF is empty"
            )
        scale = pts[occupied].abs().amax(0) / field.bound + dmtet_cfg.init_scale_margin
        field.tet_scale.copy_(scale.to(dev))
        sigma = _evaluate(density_fn, field.grid_vertices())
        c = dmtet_cfg.init_sdf_clamp
        with torch.no_grad():
            field.sdf.copy_((sigma - thresh).clamp(-c, c))
        return field

    @classmethod
    def from_nerf(
        cls, nerf, dmtet_cfg: DMTetConfig, hashgrid_cfg: HashGridConfig, cams_cfg: CamerasConfig
    ) -> "DMTetField":
        """The one place the mesh is built from the coarse stage (threestudio's ``create_from``):
        SDF from the NeRF's density (``unseen_fill.surface_density``: the unseen fill needs the
        training cameras, ``cams_cfg``), colour MLP of the NeRF's size and its albedo weights."""
        from consistent123.fields.unseen_fill import surface_density

        device = next(nerf.parameters()).device
        cfg = dmtet_cfg.model_copy(
            update={
                "color_hidden_dim": dmtet_cfg.color_hidden_dim or nerf.cfg.hidden_dim,
                "color_num_layers": dmtet_cfg.color_num_layers or nerf.cfg.num_layers,
            }
        )
        max_level, nerf.max_level = nerf.max_level, 1.0  # the SDF follows the NeRF's full density
        try:
            density_fn, threshold = surface_density(nerf, cfg, cams_cfg)
            field = cls.from_density(density_fn, cfg, hashgrid_cfg, nerf.bound, device=device, threshold=threshold)
        finally:
            nerf.max_level = max_level
        if not field.inherit_color(nerf):
            log.warning("mesh phase: colour field layout differs from the NeRF's; the texture starts afresh")
        return field

    @torch.no_grad()
    def inherit_color(self, nerf) -> bool:
        """Start the texture from the NeRF's albedo (same hash grid, MLP rows 1..3 of its output).

        The NeRF's MLP predicts (density, albedo); the colour MLP predicts albedo alone, so the
        hidden layers copy over and the output layer keeps the albedo rows. Returns False (and
        keeps the fresh colour field) when the two layouts differ.
        """
        linears = list(self.color_net.layers)
        source = list(nerf.mlp.layers)
        same = (
            len(linears) == len(source)
            and all(a.weight.shape == b.weight.shape for a, b in zip(linears[:-1], source[:-1]))
            and linears[-1].weight.shape == source[-1].weight[1:4].shape
            and sum(p.numel() for p in self.encoder.parameters()) == sum(p.numel() for p in nerf.encoder.parameters())
        )
        if not same:
            return False
        self.encoder.load_state_dict(nerf.encoder.state_dict())
        for dst, src in zip(linears[:-1], source[:-1]):
            dst.load_state_dict(src.state_dict())
        linears[-1].weight.copy_(source[-1].weight[1:4])
        linears[-1].bias.copy_(source[-1].bias[1:4])
        return True

    # -- geometry
    def grid_vertices(self) -> torch.Tensor:
        """Deformed grid vertices in world space; the deformation stays within a quarter cell."""
        offset = torch.tanh(self.deform) / self.cfg.tet_grid_size
        return (self.base_verts + offset) * self.tet_scale * self.bound

    def get_mesh(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Current surface: (verts [V,3] differentiable in sdf and deform, faces [F,3] long)."""
        return marching_tetrahedra(self.grid_vertices(), self.tets, self.sdf, backend=self.cfg.marching_backend)

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        enc = mask_finer_levels(self.encoder(points), self.max_level, self.num_levels)
        return torch.sigmoid(self.color_net(enc).float())

    # -- regularisers (mesh phase, spec loss.lambda_mesh_normal / lambda_mesh_laplacian)
    def normal_consistency_loss(
        self, verts: Optional[torch.Tensor] = None, faces: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        if verts is None or faces is None:
            verts, faces = self.get_mesh()
        return normal_consistency(verts, faces)

    def laplacian_loss(
        self, verts: Optional[torch.Tensor] = None, faces: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        if verts is None or faces is None:
            verts, faces = self.get_mesh()
        return laplacian_smooth(verts, faces)

    # -- the representation protocol
    def set_max_level(self, fraction: float) -> None:
        self.max_level = float(fraction)

    def render_size(self, reference: bool) -> int:
        return self.cfg.render_size  # R's mesh run sets known_view_scale = 1

    def render(
        self,
        cam: Camera,
        size: int,
        shading: Sequence,
        background: Optional[torch.Tensor],
        *,
        generator=None,
        perturb: bool = True,
        ray_noise=None,
        normal_perturb: float = 0.0,
    ) -> dict:
        """Rasterised view; the NeRF-only arguments (sampling, ray noise) do not apply to a mesh."""
        return self.render_view(cam, size, size, shading, background)

    def regularisers(self, out: dict, plan, loss_cfg: LossConfig) -> dict[str, torch.Tensor]:
        """On the surface this view was rendered from: no second marching-tetrahedra pass."""
        verts, faces = out["verts"], out["faces"]
        return {
            "normal_consistency": loss_cfg.lambda_mesh_normal * normal_consistency(verts, faces),
            "laplacian": loss_cfg.lambda_mesh_laplacian * laplacian_smooth(verts, faces),
        }

    def param_groups(self, lr: float, encoder_lr_scale: float = 10.0) -> list[dict]:
        """R network_grid get_params in the mesh run: encoder at 10x, colour net, SDF and deformation at 1x."""
        return [
            {"params": list(self.encoder.parameters()), "lr": lr * encoder_lr_scale},
            {"params": list(self.color_net.parameters()) + [self.sdf, self.deform], "lr": lr},
        ]

    # -- rendering
    def render_view(
        self, cam: Camera, height: int, width: int, shading: Sequence = ("albedo", 1.0, None), bg_color=None
    ) -> dict:
        """rgb [H,W,3], opacity [H,W,1], depth [H,W,1], normals [H,W,3] (+ mask, verts, faces).

        ``shading`` = (mode, ambient, light_dir) as in ``consistent123.render.shading.shade``.
        """
        from consistent123.render.shading import shade

        mode, ambient, light_dir = shading
        if light_dir is None:  # a headlight, as the volume renderer
            light_dir = orbit_position(cam.polar, cam.azimuth, cam.radius)
        verts, faces = self.get_mesh()

        def color_fn(points, normals):
            albedo = self.albedo(points) if mode != "textureless" else None
            if albedo is None:
                albedo = torch.ones_like(points)
            return shade(albedo, normals, mode, ambient, light_dir)

        out = render_mesh(
            verts, faces, cam, height, width, color_fn=color_fn, bg_color=bg_color, backend=self.cfg.rasteriser_backend
        )
        return dict(
            rgb=out["rgb"],
            opacity=out["alpha"],
            depth=out["depth"],
            normals=out["normals"],
            mask=out["mask"],
            verts=verts,
            faces=faces,
        )
