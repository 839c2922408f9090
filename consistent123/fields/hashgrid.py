"""Multiresolution hash encoding (Instant-NGP) behind one seam: tinycudann or pure PyTorch.

Both backends follow tiny-cuda-nn's ``HashGrid`` conventions exactly, so a table trained with
one can be loaded into the other (``tests/test_hashgrid.py`` checks this on a GPU):

* input ``x`` in ``[-bound, bound]`` is mapped to ``u = (x + bound) / (2 bound)`` in [0, 1];
* level ``l`` has ``scale_l = base * b**l - 1`` cells per unit and ``ceil(scale_l) + 1``
  vertices per axis, with ``b = exp(ln(finest / base) / (L - 1))``, ``finest =
  desired_resolution_per_bound * bound``;
* the vertex below a point is ``floor(u * scale_l + 0.5)``; interpolation is trilinear in the
  cell fraction f, or in smoothstep(f) = f^2 (3 - 2f) (``hashgrid.interpolation``, R's default);
* a level whose dense grid fits in its table is indexed densely (x + y R + z R²), finer levels
  use the spatial hash ``xor_d(v_d * prime_d) mod T`` with primes (1, 2654435761, 805459861);
* the level's table holds ``min(next_multiple(R^3, 8), 2^log2_hashmap_size)`` entries and the
  tables of all levels are concatenated (tcnn's parameter layout: entry-major, features last);
* entries start uniform in ±1e-4.

The output is ``[N, num_levels * features_per_level]``, level-major.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from consistent123.config import HashGridConfig

PRIMES = (1, 2654435761, 805459861)
INIT_RANGE = 1e-4
# Points per chunk in the torch backend: bounds the int64 index buffers (L * 8 per point).
CHUNK = 1 << 17
# Up to this many points, forward keeps indices and weights for backward (~1 KB per point
# with the default 16 levels) rather than recomputing them.
KEEP_POINTS = 1 << 19


def per_level_scale(cfg: HashGridConfig, bound: float) -> float:
    finest = cfg.desired_resolution_per_bound * bound
    if cfg.num_levels == 1:
        return 1.0
    return math.exp(math.log(finest / cfg.base_resolution) / (cfg.num_levels - 1))


def level_layout(cfg: HashGridConfig, bound: float, input_dim: int = 3):
    """Per-level (scale, resolution, table size, offset, dense?) lists, as tiny-cuda-nn builds them."""
    log2_b = math.log2(per_level_scale(cfg, bound))
    scales, resolutions, sizes, offsets, dense = [], [], [], [], []
    offset = 0
    for level in range(cfg.num_levels):
        # float32 arithmetic like the CUDA kernel, so both backends land on the same vertices.
        exponent = torch.tensor(float(level), dtype=torch.float32) * torch.tensor(log2_b, dtype=torch.float32)
        scale = float(torch.exp2(exponent) * cfg.base_resolution - 1.0)
        resolution = math.ceil(scale) + 1
        n_dense = resolution**input_dim
        size = min(-(-n_dense // 8) * 8, 1 << cfg.log2_hashmap_size)
        scales.append(scale)
        resolutions.append(resolution)
        sizes.append(size)
        offsets.append(offset)
        dense.append(n_dense <= size)
        offset += size
    return scales, resolutions, sizes, offsets, dense


def interpolation_weights(frac: torch.Tensor, smoothstep: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(s(f), ds/df) of the per-axis interpolation: identity (trilinear) or tcnn's Smoothstep."""
    if not smoothstep:
        return frac, torch.ones_like(frac)
    return frac * frac * (3.0 - 2.0 * frac), 6.0 * frac * (1.0 - frac)


class _TorchHashGrid(torch.autograd.Function):
    """Forward without an autograd graph; backward recomputes indices and weights.

    Keeping only ``u`` for backward (instead of L*8 indices and weights per point) is what
    lets a full 128x128 view with ~10^6 samples fit in a laptop's memory. The forward is one
    fused gather + weighted sum (``embedding_bag``), the backward one flat ``scatter_add_``.
    """

    @staticmethod
    def forward(ctx, u, table, enc):
        ctx.save_for_backward(u, table)
        ctx.enc = enc
        L, F = enc.num_levels, enc.features
        out = u.new_empty(u.shape[0], L * F)
        # Small batches keep their corners for backward (8 bytes per corner) instead of
        # recomputing them; large ones recompute, chunk by chunk.
        keep = any(ctx.needs_input_grad[:2]) and u.shape[0] <= KEEP_POINTS
        ctx.corners = [] if keep else None
        for s in range(0, u.shape[0], CHUNK):
            idx, w = enc._corners(u[s:s + CHUNK])
            n = idx.shape[0]
            out[s:s + CHUNK] = torch.nn.functional.embedding_bag(
                idx.reshape(n * L, -1), table, per_sample_weights=w.reshape(n * L, -1), mode="sum"
            ).reshape(n, L * F)
            if keep:
                ctx.corners.append((idx, w))
        return out

    @staticmethod
    def backward(ctx, grad_out):
        u, table = ctx.saved_tensors
        enc = ctx.enc
        L, F = enc.num_levels, enc.features
        need_u, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_out = grad_out.reshape(u.shape[0], L, F)
        grad_flat = torch.zeros(table.numel(), dtype=table.dtype, device=table.device) if need_table else None
        grad_u = torch.zeros_like(u) if need_u else None
        feature = torch.arange(F, device=u.device)
        for chunk, s in enumerate(range(0, u.shape[0], CHUNK)):
            g = grad_out[s:s + CHUNK]  # [n, L, F]
            idx, w = ctx.corners[chunk] if ctx.corners is not None else enc._corners(u[s:s + CHUNK])
            if need_table:
                contrib = w.unsqueeze(-1) * g.unsqueeze(2)  # [n, L, 8, F]
                flat = (idx.to(torch.int64).unsqueeze(-1) * F + feature).reshape(-1)
                grad_flat.scatter_add_(0, flat, contrib.reshape(-1).to(table.dtype))
            if need_u:
                # d out / d u_k = sum_corners (feat . g) * dw/dfrac_k * scale_l
                gf = (table[idx] * g.unsqueeze(2)).sum(-1)  # [n, L, 8]
                dw = enc._weight_slopes(u[s:s + CHUNK])  # [n, L, 8, d]
                grad_u[s:s + CHUNK] = (gf.unsqueeze(-1) * dw).sum(2).mul(enc.scales.view(1, -1, 1)).sum(1)
        grad_table = grad_flat.view_as(table) if need_table else None
        return grad_u, grad_table, None


class TorchHashEncoding(nn.Module):
    """Pure-PyTorch hash encoding, vectorised over points, levels and the 2^d cell corners."""

    def __init__(self, cfg: HashGridConfig, bound: float, input_dim: int = 3):
        super().__init__()
        if input_dim > len(PRIMES):
            raise ValueError(f"hash encoding supports at most {len(PRIMES)} input dimensions")
        self.bound = float(bound)
        self.input_dim = input_dim
        self.num_levels = cfg.num_levels
        self.features = cfg.features_per_level
        self.output_dim = cfg.num_levels * cfg.features_per_level
        self.smoothstep = cfg.interpolation == "smoothstep"
        scales, resolutions, sizes, offsets, dense = level_layout(cfg, bound, input_dim)
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float32), persistent=False)
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.int64), persistent=False)
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.int64), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64), persistent=False)
        self.register_buffer("dense", torch.tensor(dense), persistent=False)
        corners = torch.tensor([[(c >> d) & 1 for d in range(input_dim)] for c in range(1 << input_dim)])
        self.register_buffer("corner_bits", corners, persistent=False)  # [2^d, d]
        self.register_buffer("primes", torch.tensor(PRIMES[:input_dim], dtype=torch.int64), persistent=False)
        self.register_buffer("sizes32", self.sizes.to(torch.int32), persistent=False)
        self.register_buffer("offsets32", self.offsets.to(torch.int32), persistent=False)
        self.register_buffer("hash_mask", torch.where(self.dense, 0, self.sizes - 1), persistent=False)
        self.num_dense = int(sum(dense))
        assert all(dense[: self.num_dense]), "dense levels must be the coarse prefix"
        if sum(sizes) >= 2**31:
            raise ValueError("hash tables larger than 2^31 entries are not supported")
        self.table = nn.Parameter(torch.empty(sum(sizes), cfg.features_per_level).uniform_(-INIT_RANGE, INIT_RANGE))

    def _cell(self, u: torch.Tensor):
        pos = u.unsqueeze(1) * self.scales.view(1, -1, 1) + 0.5  # [n, L, d]
        lower = torch.floor(pos)
        return lower.to(torch.int64), pos - lower

    def _corners(self, u: torch.Tensor):
        """Table rows (int32) and trilinear weights, both [n, L, 2^d]; corner c has bit k = axis k.

        Per-axis terms are built on the small [n, L, 2] tensors and combined by broadcasting,
        so the big [n, L, 2^d] tensors see only d-1 adds/xors, one modulo and one offset add.
        """
        lower, frac = self._cell(u)
        frac = interpolation_weights(frac, self.smoothstep)[0]
        d = self.input_dim
        ends = lower.unsqueeze(-1) + torch.arange(2, device=u.device)  # [n, L, d, 2]: lower, upper vertex
        parts_dense, parts_hash, parts_w = [], [], []
        stride = torch.ones_like(self.resolutions)
        for k in range(d):
            v = ends[:, :, k, :]  # [n, L, 2]
            parts_dense.append((v * stride.view(1, -1, 1)).to(torch.int32))
            # Hashed levels have power-of-two tables, so "mod T" is "& (T-1)", which commutes
            # with xor: the uint32 products are masked here and xor-ed in int32.
            parts_hash.append(((v * self.primes[k]) & self.hash_mask.view(1, -1, 1)).to(torch.int32))
            f = frac[:, :, k].unsqueeze(-1)
            parts_w.append(torch.cat([1.0 - f, f], -1))
            stride = stride * self.resolutions

        def combine(parts, op):
            # Axis k varies along dim -(k+1) of [n, L, 2, ..., 2], so the flattened corner
            # index is sum_k bit_k 2^k, matching ``corner_bits``.
            def spread(t, k):
                return t.reshape(*t.shape[:2], *([1] * (d - 1 - k)), 2, *([1] * k))

            out = spread(parts[0], 0)
            for k in range(1, d):
                out = op(out, spread(parts[k], k))
            return out.reshape(*out.shape[:2], -1)

        w = combine(parts_w, torch.mul)
        # Dense levels are the coarse prefix (R grows with the level), hashed ones the rest.
        nd = self.num_dense
        groups = []
        if nd:
            dense = combine([p[:, :nd] for p in parts_dense], torch.add)
            groups.append(dense % self.sizes32[:nd].view(1, -1, 1) + self.offsets32[:nd].view(1, -1, 1))
        if nd < self.num_levels:
            hashed = combine([p[:, nd:] for p in parts_hash], torch.bitwise_xor)
            groups.append(hashed + self.offsets32[nd:].view(1, -1, 1))
        idx = groups[0] if len(groups) == 1 else torch.cat(groups, 1)
        return idx, w

    def _weight_slopes(self, u: torch.Tensor) -> torch.Tensor:
        """d w_c / d frac_k for every corner c and axis k: [n, L, 2^d, d]."""
        _, frac = self._cell(u)
        frac, slope = interpolation_weights(frac, self.smoothstep)
        bits = self.corner_bits.to(u.dtype)  # [2^d, d]
        f = frac.unsqueeze(2)
        per_dim = torch.where(bits.bool(), f, 1.0 - f)  # [n, L, 2^d, d]
        sign = bits * 2.0 - 1.0
        return torch.stack(
            [sign[:, k] * torch.cat([per_dim[..., :k], per_dim[..., k + 1:]], -1).prod(-1) for k in range(self.input_dim)], -1
        ) * slope.unsqueeze(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x.clamp(-self.bound, self.bound) + self.bound) / (2 * self.bound)
        return _TorchHashGrid.apply(u.float().contiguous(), self.table, self)


class TcnnHashEncoding(nn.Module):
    """tiny-cuda-nn's HashGrid with the same parameters; imported only when constructed."""

    def __init__(self, cfg: HashGridConfig, bound: float, input_dim: int = 3):
        super().__init__()
        import tinycudann as tcnn  # lazy: only CUDA machines have it

        self.bound = float(bound)
        self.input_dim = input_dim
        self.output_dim = cfg.num_levels * cfg.features_per_level
        self.encoding = tcnn.Encoding(
            n_input_dims=input_dim,
            encoding_config={
                "otype": "HashGrid",
                "n_levels": cfg.num_levels,
                "n_features_per_level": cfg.features_per_level,
                "log2_hashmap_size": cfg.log2_hashmap_size,
                "base_resolution": cfg.base_resolution,
                "per_level_scale": per_level_scale(cfg, bound),
                "interpolation": "Smoothstep" if cfg.interpolation == "smoothstep" else "Linear",
            },
            dtype=torch.float32,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x.clamp(-self.bound, self.bound) + self.bound) / (2 * self.bound)
        return self.encoding(u.float().contiguous()).float()


def tcnn_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    if backend == "auto":
        return "tcnn" if tcnn_available() else "torch"
    return backend


def make_hash_encoding(cfg: HashGridConfig, bound: float, input_dim: int = 3) -> nn.Module:
    """The encoding module ``cfg.backend`` asks for ("auto": tcnn on CUDA when importable)."""
    backend = resolve_backend(cfg.backend)
    if backend == "tcnn":
        from consistent123.errors import ConfigError

        if not tcnn_available():
            raise ConfigError("hashgrid.backend=tcnn needs CUDA and the tinycudann package (pip install '.[cuda]')")
        return TcnnHashEncoding(cfg, bound, input_dim)
    return TorchHashEncoding(cfg, bound, input_dim)


class HashGridEncoding(nn.Module):
    """The seam: ``forward(x [N, d] in [-bound, bound]) -> [N, num_levels * features_per_level]``."""

    def __init__(self, cfg: HashGridConfig, bound: float, input_dim: int = 3):
        super().__init__()
        self.impl = make_hash_encoding(cfg, bound, input_dim)
        self.backend = "tcnn" if isinstance(self.impl, TcnnHashEncoding) else "torch"
        self.bound = float(bound)
        self.input_dim = input_dim
        self.output_dim = self.impl.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.impl(x)
