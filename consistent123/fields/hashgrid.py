"""Multiresolution hash encoding (Instant-NGP) behind one seam: tinycudann or pure PyTorch.

Both backends follow tiny-cuda-nn's ``HashGrid`` conventions exactly, so a table trained with
one can be loaded into the other (``tests/unit/test_hashgrid.py`` checks this on a GPU):

* input ``x`` in ``[-bound, bound]`` is mapped to ``u = (x + bound) / (2 bound)`` in [0, 1];
* level ``l`` has ``scale_l = base * b**l - 1`` cells per unit and ``ceil(scale_l) + 1``
  vertices per axis, with ``b = exp(ln(finest / base) / (L - 1))``, ``finest =
  desired_resolution_per_bound * bound``; ``scale_l`` is computed in float32 exactly as
  tiny-cuda-nn's ``grid_scale`` does (``exp2f(l * log2f((float)b)) * base - 1.0f``, the exp2f
  of the device the kernel runs on), so both backends put a point in the same cell at the same
  fraction;
* the vertex below a point is ``floor(u * scale_l + 0.5)``; interpolation is trilinear in the
  cell fraction f, or in smoothstep(f) = f^2 (3 - 2f) (``hashgrid.interpolation``, R's default);
* a level whose dense grid fits in its table is indexed densely (x + y R + z R²), finer levels
  use the spatial hash ``xor_d(v_d * prime_d) mod T`` with primes (1, 2654435761, 805459861);
* the level's table holds ``min(next_multiple(R^3, 8), 2^log2_hashmap_size)`` entries and the
  tables of all levels are concatenated (tcnn's parameter layout: entry-major, features last);
* entries start uniform in ±1e-4.

Both backends keep the tables in one parameter ``table`` of shape [entries, features], so a
checkpoint has the same keys and shapes (optimiser moments included) whichever backend wrote
it; a checkpoint in tiny-cuda-nn's own flat layout (``impl.encoding.params``) is converted on
load. The output is ``[N, num_levels * features_per_level]``, level-major.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from consistent123.config import HashGridConfig

PRIMES = (1, 2654435761, 805459861)
INIT_RANGE = 1e-4
# Points per chunk in the torch backend: bounds its index and weight buffers (L * 2^d of each per
# point); 2^15 to 2^17 measure alike on 2 cores, the smallest keeps the buffers at ~16 MB.
CHUNK = 1 << 15
# Up to this many points, forward keeps indices and weights for backward (~1 KB per point
# with the default 16 levels) rather than recomputing them.
KEEP_POINTS = 1 << 19


def per_level_scale(cfg: HashGridConfig, bound: float) -> float:
    """The growth factor b between levels, as given to tiny-cuda-nn (which stores it as float)."""
    finest = cfg.desired_resolution_per_bound * bound
    if cfg.num_levels == 1:
        return 1.0
    return math.exp(math.log(finest / cfg.base_resolution) / (cfg.num_levels - 1))


@functools.cache
def _c_float_function(name: str):
    """The C math library's float function ``name`` (what tiny-cuda-nn's host code calls), or None."""
    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m"))
        fn = getattr(libm, name)
    except (OSError, AttributeError, TypeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


def _float32_call(name: str, x: np.float32) -> np.float32:
    fn = _c_float_function(name)
    if fn is not None:
        return np.float32(fn(x))
    return getattr(np, name.rstrip("f"))(np.float32(x))  # numpy's float32 loop when libm is not found


def level_scales(cfg: HashGridConfig, bound: float) -> list[float]:
    """scale_l of every level, rounded step by step in float32 like tiny-cuda-nn's ``grid_scale``:
    ``exp2f(level * log2f((float)per_level_scale)) * base_resolution - 1.0f``."""
    log2_b = _float32_call("log2f", np.float32(per_level_scale(cfg, bound)))
    base, one = np.float32(cfg.base_resolution), np.float32(1.0)
    return [float(_float32_call("exp2f", np.float32(level) * log2_b) * base - one) for level in range(cfg.num_levels)]


def kernel_scales(cfg: HashGridConfig, bound: float, device) -> torch.Tensor:
    """scale_l as tiny-cuda-nn's kernel computes it on ``device`` (float32 [L]).

    Its host passes log2f(b) (C library) to the kernel, which evaluates ``exp2f`` on the device
    and contracts ``* base - 1.0f`` into one fused multiply-add. On CUDA the GPU's exp2f may
    round the last bit differently from the C library's, which would move points by ~1e-4 cell
    at the finest level, so there torch's CUDA exp2 (the same exp2f) is used.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return torch.tensor(level_scales(cfg, bound), dtype=torch.float32, device=device)
    log2_b = _float32_call("log2f", np.float32(per_level_scale(cfg, bound)))
    exponent = np.array([np.float32(level) * log2_b for level in range(cfg.num_levels)], dtype=np.float32)
    power = torch.exp2(torch.from_numpy(exponent).to(device))
    # float64 holds power * base exactly, so one rounding to float32 is the fused multiply-add.
    return (power.double() * cfg.base_resolution - 1.0).float()


def level_layout(cfg: HashGridConfig, bound: float, input_dim: int = 3):
    """Per-level (scale, resolution, table size, offset, dense?) lists, as tiny-cuda-nn builds them."""
    scales, resolutions, sizes, offsets, dense = level_scales(cfg, bound), [], [], [], []
    offset = 0
    for scale in scales:
        resolution = math.ceil(scale) + 1
        n_dense = resolution**input_dim
        size = min(-(-n_dense // 8) * 8, 1 << cfg.log2_hashmap_size)
        resolutions.append(resolution)
        sizes.append(size)
        offsets.append(offset)
        dense.append(n_dense <= size)
        offset += size
    return scales, resolutions, sizes, offsets, dense


def table_rows(cfg: HashGridConfig, bound: float, input_dim: int = 3) -> int:
    """Entries of all levels together: the first dimension of ``table``."""
    return sum(level_layout(cfg, bound, input_dim)[2])


def new_table(cfg: HashGridConfig, bound: float, input_dim: int = 3) -> nn.Parameter:
    """The tables of all levels, [entries, features], uniform in ±INIT_RANGE (as tiny-cuda-nn)."""
    rows = table_rows(cfg, bound, input_dim)
    return nn.Parameter(torch.empty(rows, cfg.features_per_level).uniform_(-INIT_RANGE, INIT_RANGE))


def interpolation_weights(frac: torch.Tensor, smoothstep: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(s(f), ds/df) of the per-axis interpolation: identity (trilinear) or tcnn's Smoothstep."""
    if not smoothstep:
        return frac, torch.ones_like(frac)
    return frac * frac * (3.0 - 2.0 * frac), 6.0 * frac * (1.0 - frac)


@functools.cache
def _feature_pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hashgrid-grad")


def _for_each_feature(fn, features: int, device: torch.device) -> None:
    """Run ``fn(f)`` for every feature, on CPU threads side by side when torch has them.

    A 1-D ``index_add_`` runs on one CPU thread, and the table gradient is one such scatter
    per feature into its own row: scattering the features concurrently uses the other cores
    (about 1.8x faster on 2) and is bit-identical, as each scatter stays sequential.
    """
    workers = min(features, torch.get_num_threads())
    if device.type != "cpu" or workers < 2:
        for f in range(features):
            fn(f)
        return
    for future in [_feature_pool(workers).submit(fn, f) for f in range(features)]:
        future.result()


class _TorchHashGrid(torch.autograd.Function):
    """Forward without an autograd graph; backward recomputes indices and weights.

    Keeping only ``u`` for backward (instead of L*8 indices and weights per point) is what
    lets a full 128x128 view with ~10^6 samples fit in a laptop's memory. The forward is one
    fused gather + weighted sum (``embedding_bag``), the backward one flat ``index_add_`` per
    feature. Both walk the corners level by level, so each level's table stays in the cache
    while it is read or written (point by point, the 16 levels' tables are visited in turn:
    ~7x slower scatters on a CPU).
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
            idx, w = enc._corners(u[s : s + CHUNK])
            n = idx.shape[1]
            by_level = torch.nn.functional.embedding_bag(
                idx.reshape(L * n, -1), table, per_sample_weights=w.reshape(L * n, -1), mode="sum"
            )
            out[s : s + CHUNK].view(n, L, F).copy_(by_level.view(L, n, F).transpose(0, 1))
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
        # Feature-major while accumulating: one row index per corner, not one per (corner, feature).
        grad_by_feature = torch.zeros(F, table.shape[0], dtype=table.dtype, device=table.device) if need_table else None
        grad_u = torch.zeros_like(u) if need_u else None
        for chunk, s in enumerate(range(0, u.shape[0], CHUNK)):
            g = grad_out[s : s + CHUNK].permute(1, 2, 0)  # [L, F, n]
            idx, w = ctx.corners[chunk] if ctx.corners is not None else enc._corners(u[s : s + CHUNK])
            if need_table:
                rows = idx.reshape(-1)

                def accumulate(f):  # finished before the next chunk rebinds rows, w, g
                    grad_by_feature[f].index_add_(0, rows, (w * g[:, f].unsqueeze(-1)).reshape(-1).to(table.dtype))

                _for_each_feature(accumulate, F, table.device)
            if need_u:
                # d out / d u_k = sum_corners (feat . g) * dw/dfrac_k * scale_l
                gf = (table[idx] * g.transpose(1, 2).unsqueeze(2)).sum(-1)  # [L, n, 8]
                dw = enc._weight_slopes(u[s : s + CHUNK])  # [L, n, 8, d]
                grad_u[s : s + CHUNK] = (gf.unsqueeze(-1) * dw).sum(2).mul(enc.scales.view(-1, 1, 1)).sum(0)
        grad_table = grad_by_feature.t().contiguous() if need_table else None
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
        self.register_buffer("sizes32", self.sizes.to(torch.int32), persistent=False)
        self.register_buffer("offsets32", self.offsets.to(torch.int32), persistent=False)
        self.num_dense = int(sum(dense))
        # Index arithmetic in int32, each level's indices computed once. Dense levels: strides
        # R^k (R^3 <= table size < 2^31). Hashed levels: the uint32 products of tcnn's hash
        # keep their low bits under int32's wrap-around, and the mask (T-1, T a power of two)
        # keeps only bits below 31, so the primes are stored as their wrapped int32 values.
        strides = torch.tensor(
            [[r**k for k in range(input_dim)] for r in resolutions[: self.num_dense]], dtype=torch.int64
        )
        self.register_buffer(
            "dense_strides", strides.to(torch.int32).reshape(self.num_dense, input_dim), persistent=False
        )
        wrapped = [p - (1 << 32) if p >= 1 << 31 else p for p in PRIMES[:input_dim]]
        self.register_buffer("primes32", torch.tensor(wrapped, dtype=torch.int32), persistent=False)
        self.register_buffer("hash_mask32", self.sizes32[self.num_dense :] - 1, persistent=False)
        assert all(dense[: self.num_dense]), "dense levels must be the coarse prefix"
        if sum(sizes) >= 2**31:
            raise ValueError("hash tables larger than 2^31 entries are not supported")
        self.table = new_table(cfg, bound, input_dim)
        self.hash_cfg = cfg

    def _apply(self, fn, *args, **kwargs):
        # Index with the level scales tiny-cuda-nn's kernel uses on the new device (float32 always).
        out = super()._apply(fn, *args, **kwargs)
        self.scales = kernel_scales(self.hash_cfg, self.bound, self.scales.device)
        return out

    def _cell(self, u: torch.Tensor):
        """Vertex below each point (int32) and the fraction past it, both [L, d, n] (points innermost)."""
        pos = u.t().unsqueeze(0) * self.scales.view(-1, 1, 1) + 0.5
        lower = torch.floor(pos)
        return lower.to(torch.int32), pos - lower

    def _corners(self, u: torch.Tensor):
        """Table rows (int32) and interpolation weights, both [L, n, 2^d] (level-major, the order
        the table is read and written in); corner c has bit k = axis k.

        Per-axis terms are built on small [L, 2, n] tensors and combined by broadcasting, with the
        points innermost so that every elementwise op runs over long contiguous rows (a 2-wide
        corner axis innermost made them ~1.3x slower); each finished [L, 2^d, n] block goes into
        the [L, n, 2^d] result in one transposing copy (writing the last op through a transposed
        view instead was ~2.5x slower).
        """
        d, nd, n = self.input_dim, self.num_dense, u.shape[0]
        lower, frac = self._cell(u)
        frac = interpolation_weights(frac, self.smoothstep)[0]
        ends = torch.stack([lower, lower + 1], 2)  # [L, d, 2, n]: lower, upper vertex per axis
        weights = torch.stack([1.0 - frac, frac], 2)  # [L, d, 2, n]

        def combine(parts, op):
            # Axis k varies along corner dim d-1-k of [l, 2, ..., 2, n], so the flattened corner
            # index is sum_k bit_k 2^k, matching ``corner_bits``; the result is [l, 2^d, n].
            def spread(t, k):
                return t.reshape(t.shape[0], *([1] * (d - 1 - k)), 2, *([1] * k), n)

            acc = spread(parts[0], 0)
            for k in range(1, d):
                acc = op(acc, spread(parts[k], k))
            return acc.reshape(acc.shape[0], 1 << d, n)

        w = u.new_empty(self.num_levels, n, 1 << d)
        w.copy_(combine([weights[:, k] for k in range(d)], torch.mul).transpose(1, 2))
        # Dense levels are the coarse prefix (R grows with the level), hashed ones the rest.
        idx = torch.empty(w.shape, dtype=torch.int32, device=u.device)
        if nd:
            v = ends[:nd]
            rows = combine([v[:, k] * self.dense_strides[:, k].view(-1, 1, 1) for k in range(d)], torch.add)
            # tcnn's "mod T": vertex coordinates are at most R, so a dense index is at most
            # R + R^2 + ... + R^d < 2 R^d <= 2T and one conditional subtraction is the remainder.
            size = self.sizes32[:nd].view(-1, 1, 1)
            rows -= size * (rows >= size)
            rows += self.offsets32[:nd].view(-1, 1, 1)
            idx[:nd].copy_(rows.transpose(1, 2))
        if nd < self.num_levels:
            # "mod T" is "& (T-1)" for the power-of-two tables and commutes with xor.
            v, mask = ends[nd:], self.hash_mask32.view(-1, 1, 1)
            rows = combine([(v[:, k] * self.primes32[k]) & mask for k in range(d)], torch.bitwise_xor)
            rows += self.offsets32[nd:].view(-1, 1, 1)
            idx[nd:].copy_(rows.transpose(1, 2))
        return idx, w

    def _weight_slopes(self, u: torch.Tensor) -> torch.Tensor:
        """d w_c / d frac_k for every corner c and axis k: [L, n, 2^d, d]."""
        frac, slope = interpolation_weights(self._cell(u)[1].transpose(1, 2), self.smoothstep)  # [L, n, d]
        bits = self.corner_bits.to(u.dtype)  # [2^d, d]
        f = frac.unsqueeze(2)
        per_dim = torch.where(bits.bool(), f, 1.0 - f)  # [L, n, 2^d, d]
        sign = bits * 2.0 - 1.0
        return torch.stack(
            [
                sign[:, k] * torch.cat([per_dim[..., :k], per_dim[..., k + 1 :]], -1).prod(-1)
                for k in range(self.input_dim)
            ],
            -1,
        ) * slope.unsqueeze(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x.clamp(-self.bound, self.bound) + self.bound) / (2 * self.bound)
        return _TorchHashGrid.apply(u.float().contiguous(), self.table, self)


class TcnnHashEncoding(nn.Module):
    """tiny-cuda-nn's HashGrid with the same parameters; imported only when constructed.

    The tables live in this module's ``table`` [entries, features], the same parameter as the
    torch backend's; tiny-cuda-nn reads a flat view of it (its ``params`` attribute, which its
    forward passes to the kernels), so gradients and optimiser moments keep one shape.
    """

    def __init__(self, cfg: HashGridConfig, bound: float, input_dim: int = 3):
        super().__init__()
        import tinycudann as tcnn  # lazy: only CUDA machines have it

        from consistent123.backends import BackendError

        self.bound = float(bound)
        self.input_dim = input_dim
        self.output_dim = cfg.num_levels * cfg.features_per_level
        self.table = new_table(cfg, bound, input_dim)
        encoding = tcnn.Encoding(
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
        own = encoding.params
        if own.numel() != self.table.numel() or own.dtype != self.table.dtype:
            raise BackendError(
                f"hashgrid.backend=tcnn: tiny-cuda-nn lays out {own.numel()} {own.dtype} parameters, "
                f"the torch backend {self.table.numel()} {self.table.dtype}; this tinycudann "
                "version is not supported"
            )
        del encoding.params  # replaced by the view of ``table`` set before each call
        self.encoding = encoding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x.clamp(-self.bound, self.bound) + self.bound) / (2 * self.bound)
        self.encoding.params = self.table.view(-1)
        return self.encoding(u.float().contiguous()).float()


def make_hash_encoding(cfg: HashGridConfig, bound: float, input_dim: int = 3, device=None) -> nn.Module:
    """The encoding module ``cfg.backend`` asks for on ``device``, the device it will run on
    (consistent123.backends' rule). Fields are built first and moved after, so without a device
    ``tcnn`` is checked against CUDA and ``auto`` resolves for the default device (CPU unless
    changed): a run resolves ``auto`` for its own device before building its fields."""
    from consistent123 import backends

    if device is None:
        device = "cuda" if cfg.backend == "tcnn" else backends.default_device()
    name = backends.resolve("hashgrid", cfg.backend, device)
    if name == "tcnn":
        return TcnnHashEncoding(cfg, bound, input_dim)
    return TorchHashEncoding(cfg, bound, input_dim)


# The flat parameter tiny-cuda-nn's own module keeps, as older checkpoints of the tcnn backend hold it.
TCNN_FLAT_KEY = "impl.encoding.params"


class HashGridEncoding(nn.Module):
    """The seam: ``forward(x [N, d] in [-bound, bound]) -> [N, num_levels * features_per_level]``."""

    def __init__(self, cfg: HashGridConfig, bound: float, input_dim: int = 3, device=None):
        super().__init__()
        self.impl = make_hash_encoding(cfg, bound, input_dim, device)
        self.backend = "tcnn" if isinstance(self.impl, TcnnHashEncoding) else "torch"
        self.bound = float(bound)
        self.input_dim = input_dim
        self.features = cfg.features_per_level
        self.output_dim = self.impl.output_dim

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # tiny-cuda-nn's flat layout -> the canonical [entries, features] table.
        flat = state_dict.pop(prefix + TCNN_FLAT_KEY, None)
        if flat is not None and prefix + "impl.table" not in state_dict:
            state_dict[prefix + "impl.table"] = flat.reshape(-1, self.features)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 0:  # no visible surface point: tiny-cuda-nn wants a non-empty batch
            return x.new_zeros(0, self.output_dim)
        return self.impl(x)
