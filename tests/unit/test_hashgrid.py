"""The torch hash encoding against a straightforward per-level, per-point reference."""

from __future__ import annotations

import math

import pytest
import torch

from consistent123.backends import unavailable
from consistent123.config import HashGridConfig
from consistent123.fields.hashgrid import (
    HashGridEncoding,
    TorchHashEncoding,
    make_hash_encoding,
)
from consistent123.render.shading import sample_shading, shade

# A small table so that the coarse levels are dense and the fine ones are hashed (and collide).
SMALL = HashGridConfig(
    num_levels=6,
    features_per_level=2,
    log2_hashmap_size=10,
    base_resolution=4,
    desired_resolution_per_bound=40,
    backend="torch",
)
BOUND = 1.5


def naive_encode(x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig, bound: float) -> torch.Tensor:
    """Instant-NGP encoding written with plain loops, one point and one level at a time."""
    L, F = cfg.num_levels, cfg.features_per_level
    b = math.exp(math.log(cfg.desired_resolution_per_bound * bound / cfg.base_resolution) / (L - 1))
    T = 1 << cfg.log2_hashmap_size
    offset = 0
    level_tables = []
    level_params = []
    for level in range(L):
        scale = cfg.base_resolution * b**level - 1.0
        res = math.ceil(scale) + 1
        size = min(int(math.ceil(res**3 / 8) * 8), T)
        level_tables.append(table[offset : offset + size])
        level_params.append((scale, res, size))
        offset += size
    assert offset == table.shape[0]
    rows = []
    for p in x:
        u = [(p[d] + bound) / (2 * bound) for d in range(3)]  # tensors: differentiable in x
        feats = []
        for level in range(L):
            scale, res, size = level_params[level]
            acc = torch.zeros(F, dtype=table.dtype)
            pos = [u[d] * scale + 0.5 for d in range(3)]
            lo = [math.floor(float(v.detach())) for v in pos]
            fr = [pos[d] - lo[d] for d in range(3)]
            if cfg.interpolation == "smoothstep":  # tcnn's Smoothstep: s(f) = f^2 (3 - 2f)
                fr = [f * f * (3 - 2 * f) for f in fr]
            for cx in (0, 1):
                for cy in (0, 1):
                    for cz in (0, 1):
                        v = (lo[0] + cx, lo[1] + cy, lo[2] + cz)
                        w = (fr[0] if cx else 1 - fr[0]) * (fr[1] if cy else 1 - fr[1]) * (fr[2] if cz else 1 - fr[2])
                        if res**3 <= size:
                            i = v[0] + v[1] * res + v[2] * res * res
                        else:
                            i = ((v[0] * 1) ^ (v[1] * 2654435761) ^ (v[2] * 805459861)) & 0xFFFFFFFF
                        acc = acc + w * level_tables[level][i % size]
            feats.append(acc)
        rows.append(torch.cat(feats))
    return torch.stack(rows)


def _points(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 3, generator=g) * 2 - 1) * BOUND
    x[0] = torch.tensor([-BOUND, -BOUND, -BOUND])  # the corners of the domain are valid inputs
    x[1] = torch.tensor([BOUND, BOUND, BOUND])
    return x


def test_layout_has_dense_and_hashed_levels():
    enc = TorchHashEncoding(SMALL, BOUND)
    assert enc.dense.any() and not enc.dense.all()
    assert enc.output_dim == SMALL.num_levels * SMALL.features_per_level
    assert enc.scales[-1].item() == pytest.approx(SMALL.desired_resolution_per_bound * BOUND - 1, rel=1e-5)


@pytest.mark.parametrize("interpolation", ["smoothstep", "linear"])
def test_torch_encoding_equals_naive_reference(interpolation):
    cfg = SMALL.model_copy(update={"interpolation": interpolation})
    torch.manual_seed(0)
    enc = HashGridEncoding(cfg, BOUND)
    with torch.no_grad():  # well above the 1e-4 init, so the comparison is not vacuous
        enc.impl.table.uniform_(-1, 1)
    x = _points(24)
    ours = enc(x)
    ref = naive_encode(x, enc.impl.table.detach(), cfg, BOUND)
    assert ours.shape == (24, SMALL.num_levels * SMALL.features_per_level)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)  # float32 vs float64 level scales


def test_table_gradient_only_at_touched_entries_and_matches_reference():
    torch.manual_seed(1)
    enc = TorchHashEncoding(SMALL, BOUND)
    x = _points(5, seed=3)
    upstream = torch.randn(5, enc.output_dim)
    (enc(x) * upstream).sum().backward()
    ours = enc.table.grad.clone()

    table = enc.table.detach().clone().requires_grad_(True)
    (naive_encode(x, table, SMALL, BOUND) * upstream).sum().backward()
    torch.testing.assert_close(ours, table.grad, rtol=1e-4, atol=1e-5)
    # Rows touched by the 5 points (<= 5 * 6 levels * 8 corners) are the only nonzero ones.
    touched = (ours.abs().sum(1) > 0).sum().item()
    assert 0 < touched <= 5 * SMALL.num_levels * 8
    assert touched < enc.table.shape[0]


def test_table_gradient_is_the_same_on_one_thread_and_several():
    # Several CPU threads scatter the features' gradients side by side: bit-identical to one.
    enc = TorchHashEncoding(SMALL, BOUND)
    x = _points(4000, seed=5)
    upstream = torch.randn(4000, enc.output_dim, generator=torch.Generator().manual_seed(6))
    threads = torch.get_num_threads()
    grads = {}
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            enc.table.grad = None
            (enc(x) * upstream).sum().backward()
            grads[n] = enc.table.grad.clone()
    finally:
        torch.set_num_threads(threads)
    assert grads[1].abs().sum() > 0
    assert torch.equal(grads[1], grads[2])


@pytest.mark.parametrize("interpolation", ["smoothstep", "linear"])
def test_input_gradient_matches_reference(interpolation):
    cfg = SMALL.model_copy(update={"interpolation": interpolation})
    torch.manual_seed(2)
    enc = TorchHashEncoding(cfg, BOUND)
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    x = _points(6, seed=5)[2:] * 0.9  # away from the clamp at the border
    upstream = torch.randn(4, enc.output_dim)
    xa = x.clone().requires_grad_(True)
    (enc(xa) * upstream).sum().backward()
    xr = x.clone().requires_grad_(True)
    (naive_encode(xr, enc.table.detach(), cfg, BOUND) * upstream).sum().backward()
    assert xr.grad.abs().max() > 1.0  # the table is O(1): a real slope, not a vacuous zero
    torch.testing.assert_close(xa.grad, xr.grad, rtol=1e-4, atol=1e-3)


def test_default_config_parameter_count():
    cfg = HashGridConfig(backend="torch")
    enc = make_hash_encoding(cfg, 1.0)
    assert enc.table.shape[1] == 2
    # Every level is capped at 2^19 entries and the finest ones hit the cap.
    assert enc.sizes.max().item() == 1 << 19
    assert enc.table.shape[0] == int(enc.sizes.sum())
    assert enc.table.abs().max().item() <= 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(unavailable("hashgrid", "cuda") is not None, reason="needs CUDA and tinycudann")
def test_tcnn_matches_torch_backend():
    cfg = HashGridConfig(backend="tcnn")
    tc = HashGridEncoding(cfg, 1.0, device="cuda").cuda()
    th = HashGridEncoding(cfg.model_copy(update={"backend": "torch"}), 1.0).cuda()
    assert tc.backend == "tcnn" and th.backend == "torch"
    with torch.no_grad():
        th.impl.table.uniform_(-1, 1)
    # One checkpoint layout: the torch table loads into the tcnn module as it is.
    tc.load_state_dict(th.state_dict())
    x = torch.rand(4096, 3, device="cuda") * 2 - 1
    torch.testing.assert_close(tc(x), th(x), rtol=1e-4, atol=1e-4)


def test_shading_modes():
    albedo = torch.tensor([[0.2, 0.4, 0.8], [0.5, 0.5, 0.5]])
    normals = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    light = torch.tensor([0.0, 0.6, 0.8])
    torch.testing.assert_close(shade(albedo, normals, "albedo"), albedo)
    lam = shade(albedo, normals, "lambertian", 0.25, light)
    torch.testing.assert_close(lam[0], albedo[0] * (0.25 + 0.75 * 0.8))
    torch.testing.assert_close(lam[1], albedo[1] * 0.25)  # facing away: ambient only
    tl = shade(albedo, normals, "textureless", 0.25, light)
    torch.testing.assert_close(tl[:, 0], torch.tensor([0.25 + 0.75 * 0.8, 0.25]))
    torch.testing.assert_close(shade(albedo, normals, "normal"), (normals + 1) / 2)


def test_sample_shading_respects_config():
    from consistent123.config import NeRFConfig
    from consistent123.render.cameras import Camera, orbit_position

    cfg = NeRFConfig(shading={"lambertian": 0.5, "textureless": 0.5}, ambient_range=(0.3, 0.4))
    g = torch.Generator().manual_seed(0)
    cam = Camera(90.0, 30.0, 3.2, 20.0)
    seen = set()
    for _ in range(40):
        mode, ambient, light = sample_shading(cfg, g, camera=cam)
        seen.add(mode)
        assert 0.3 <= ambient <= 0.4
        assert light.norm().item() == pytest.approx(1.0, abs=1e-5)
        assert torch.dot(light, orbit_position(90.0, 30.0, 3.2) / 3.2).item() > 0  # lit from the viewer's side
    assert seen == {"lambertian", "textureless"}


def _int64_indices(enc: TorchHashEncoding, u: torch.Tensor) -> torch.Tensor:
    """Every level's table rows computed in int64 with tcnn's formulas: [n, L, 8], corner c = bits (x, y, z)."""
    lower = torch.floor(u.unsqueeze(1) * enc.scales.view(1, -1, 1) + 0.5).to(torch.int64)  # [n, L, 3]
    rows = []
    for c in range(8):
        v = lower + torch.tensor([(c >> k) & 1 for k in range(3)])
        res, size = enc.resolutions.view(1, -1), enc.sizes.view(1, -1)
        dense = (v[..., 0] + v[..., 1] * res + v[..., 2] * res * res) % size
        hashed = ((v[..., 0] * 1) ^ (v[..., 1] * 2654435761) ^ (v[..., 2] * 805459861)) % (1 << 32) % size
        rows.append(torch.where(enc.dense.view(1, -1), dense, hashed) + enc.offsets.view(1, -1))
    return torch.stack(rows, -1)


def test_int32_indices_equal_int64_formula_at_full_size():
    """The default grid (16 levels, 2^19 table): the int32 index arithmetic (wrapped hash primes,
    each level's indices computed once) lands on the rows the int64 formula gives."""
    enc = TorchHashEncoding(HashGridConfig(backend="torch"), 1.0)
    assert 0 < enc.num_dense < enc.num_levels
    g = torch.Generator().manual_seed(0)
    u = torch.cat(
        [torch.rand(4000, 3, generator=g), torch.tensor([[0.0, 0, 0], [1, 1, 1], [1, 0, 1], [0.99999, 1, 0]])]
    )
    idx, w = enc._corners(u)  # level-major: [L, n, 8]
    assert idx.dtype == torch.int32
    torch.testing.assert_close(idx.transpose(0, 1).to(torch.int64), _int64_indices(enc, u), rtol=0, atol=0)
    torch.testing.assert_close(w.sum(-1), torch.ones(enc.num_levels, u.shape[0]))
