"""DMTet: the fine (mesh) representation of stage 2's mesh phase (spec §2).

An SDF value and a bounded deformation per vertex of the generated tet grid; marching
tetrahedra turn them into a mesh each step, the rasteriser renders it, and a hash-grid colour
field gives the albedo at the visible surface points. The grid is initialised from the NeRF's
density as stable-dreamfusion's ``init_tet`` does: shrink the grid to the occupied box (plus a
margin), then SDF = clamp(sigma - threshold, -c, c), positive inside.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import DMTetConfig, HashGridConfig
from ..errors import Consistent123Error
from ..render.cameras import Camera
from ..render.rasterize import render_mesh
from .hashgrid import HashGridEncoding
from .marching_tets import marching_tetrahedra
from .tets import cells_for_grid_size, make_tet_grid

DensityFn = Callable[[torch.Tensor], torch.Tensor]


# Used when the colour MLP is built without a NeRF to follow (the trainer passes the NeRF's sizes).
DEFAULT_COLOR_HIDDEN, DEFAULT_COLOR_LAYERS = 64, 3


def _mlp(in_dim: int, hidden: int, out_dim: int, layers: int) -> nn.Sequential:
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    mods: list[nn.Module] = []
    for i in range(len(dims) - 1):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            mods.append(nn.ReLU(inplace=True))
    return nn.Sequential(*mods)


@torch.no_grad()
def _evaluate(fn: DensityFn, points: torch.Tensor, chunk: int = 1 << 18) -> torch.Tensor:
    return torch.cat([fn(p).reshape(-1) for p in points.split(chunk)])


# ---------------------------------------------------------------- mesh regularisers
def _edge_faces(faces: torch.Tensor) -> torch.Tensor:
    """[E,2] the two faces on each manifold edge (edges on one or >2 faces are left out)."""
    f = faces.long()
    edges = torch.sort(torch.stack([f, f.roll(-1, dims=1)], -1).reshape(-1, 2), dim=1).values
    # 1-D keys: torch.unique(dim=0) is far slower than unique on a flat int64 tensor.
    _, inv, counts = torch.unique(edges[:, 0] * (int(f.max()) + 1) + edges[:, 1], return_inverse=True, return_counts=True)
    order = torch.argsort(inv, stable=True)
    face_of = torch.arange(f.shape[0], device=f.device).repeat_interleave(3)[order]
    starts = torch.cumsum(counts, 0) - counts
    two = torch.nonzero(counts == 2).squeeze(1)
    return torch.stack([face_of[starts[two]], face_of[starts[two] + 1]], -1)


def normal_consistency(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean (1 - cos) between the normals of faces sharing an edge (as nvdiffrec/R)."""
    if faces.shape[0] == 0:
        return verts.sum() * 0
    v = verts[faces.long()]
    n = F.normalize(torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1), dim=-1, eps=1e-12)
    with torch.no_grad():
        pairs = _edge_faces(faces)
    if pairs.shape[0] == 0:
        return verts.sum() * 0
    cos = (n[pairs[:, 0]] * n[pairs[:, 1]]).sum(-1).clamp(-1, 1)
    return (1 - cos).abs().mean()


def laplacian_smooth(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean norm of the uniform Laplacian (degree * v_i - sum of neighbours), as R."""
    if faces.shape[0] == 0:
        return verts.sum() * 0
    f = faces.long()
    with torch.no_grad():
        edges = torch.sort(torch.stack([f, f.roll(-1, dims=1)], -1).reshape(-1, 2), dim=1).values
        n = int(f.max()) + 1
        keys = torch.unique(edges[:, 0] * n + edges[:, 1])
    i, j = torch.div(keys, n, rounding_mode="floor"), keys % n
    d = verts[i] - verts[j]
    lap = torch.zeros_like(verts).index_add(0, i, d).index_add(0, j, -d)
    used = torch.zeros(verts.shape[0], dtype=torch.bool, device=verts.device)
    used[f.reshape(-1)] = True
    return lap[used].norm(dim=-1).mean()


# ---------------------------------------------------------------- the field
class DMTetField(nn.Module):
    def __init__(self, dmtet_cfg: DMTetConfig, hashgrid_cfg: HashGridConfig, bound: float,
                 tet_scale: Optional[torch.Tensor] = None):
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
        self.color_net = _mlp(self.encoder.output_dim, dmtet_cfg.color_hidden_dim or DEFAULT_COLOR_HIDDEN, 3,
                              dmtet_cfg.color_num_layers or DEFAULT_COLOR_LAYERS)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("base_verts", "tets"):  # older checkpoints saved the grid; it is rebuilt instead
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- construction from the coarse stage
    @classmethod
    def from_density(cls, density_fn: DensityFn, dmtet_cfg: DMTetConfig, hashgrid_cfg: HashGridConfig,
                     bound: float, device=None) -> "DMTetField":
        """Initialise from a NeRF density ``density_fn(points[N,3]) -> sigma[N]`` (no grad),
        queried on ``device`` (where the NeRF lives; default: CPU)."""
        field = cls(dmtet_cfg, hashgrid_cfg, bound).to(device or "cpu")
        dev = field.base_verts.device
        thresh = dmtet_cfg.init_density_threshold
        pts = field.base_verts * field.bound
        sigma = _evaluate(density_fn, pts)
        occupied = sigma > thresh
        if not bool(occupied.any()):
            raise Consistent123Error(
                f"DMTet init: no grid point has density above dmtet.init_density_threshold={thresh} "
                f"(max density {float(sigma.max()):.4g}); the coarse NeRF is empty")
        scale = pts[occupied].abs().amax(0) / field.bound + dmtet_cfg.init_scale_margin
        field.tet_scale.copy_(scale.to(dev))
        sigma = _evaluate(density_fn, field.grid_vertices())
        c = dmtet_cfg.init_sdf_clamp
        with torch.no_grad():
            field.sdf.copy_((sigma - thresh).clamp(-c, c))
        return field

    @torch.no_grad()
    def inherit_color(self, nerf) -> bool:
        """Start the texture from the NeRF's albedo (same hash grid, MLP rows 1..3 of its output).

        The NeRF's MLP predicts (density, albedo); the colour MLP predicts albedo alone, so the
        hidden layers copy over and the output layer keeps the albedo rows. Returns False (and
        keeps the fresh colour field) when the two layouts differ.
        """
        linears = [m for m in self.color_net if isinstance(m, nn.Linear)]
        source = list(nerf.mlp.layers)
        same = (len(linears) == len(source)
                and all(a.weight.shape == b.weight.shape for a, b in zip(linears[:-1], source[:-1]))
                and linears[-1].weight.shape == source[-1].weight[1:4].shape
                and sum(p.numel() for p in self.encoder.parameters()) == sum(p.numel() for p in nerf.encoder.parameters()))
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
        return torch.sigmoid(self.color_net(self.encoder(points)))

    # -- regularisers (mesh phase, spec loss.lambda_mesh_normal / lambda_mesh_laplacian)
    def normal_consistency_loss(self, verts: Optional[torch.Tensor] = None, faces: Optional[torch.Tensor] = None) -> torch.Tensor:
        if verts is None or faces is None:
            verts, faces = self.get_mesh()
        return normal_consistency(verts, faces)

    def laplacian_loss(self, verts: Optional[torch.Tensor] = None, faces: Optional[torch.Tensor] = None) -> torch.Tensor:
        if verts is None or faces is None:
            verts, faces = self.get_mesh()
        return laplacian_smooth(verts, faces)

    # -- rendering
    def render(self, cam: Camera, height: int, width: int,
               shading: Sequence = ("albedo", 1.0, None), bg_color=None) -> dict:
        """rgb [H,W,3], opacity [H,W,1], depth [H,W,1], normals [H,W,3] (+ mask, verts, faces).

        ``shading`` = (mode, ambient, light_dir) as in ``consistent123.render.shading.shade``.
        """
        from ..render.shading import shade

        mode, ambient, light_dir = shading
        verts, faces = self.get_mesh()

        def color_fn(points, normals):
            albedo = self.albedo(points) if mode != "textureless" else None
            if albedo is None:
                albedo = torch.ones_like(points)
            return shade(albedo, normals, mode, ambient, light_dir)

        out = render_mesh(verts, faces, cam, height, width, color_fn=color_fn, bg_color=bg_color,
                          backend=self.cfg.rasteriser_backend)
        return dict(rgb=out["rgb"], opacity=out["alpha"], depth=out["depth"], normals=out["normals"],
                    mask=out["mask"], verts=verts, faces=faces)
