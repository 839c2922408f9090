"""What a GPU run depends on, checked on a CPU: the hash-grid scale as tiny-cuda-nn computes it,
one checkpoint layout for both hash-grid backends, empty meshes, small mesh-phase checkpoints."""

from __future__ import annotations

import io
import math
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from consistent123.config import Config, HashGridConfig
from consistent123.fields.hashgrid import (
    TCNN_FLAT_KEY,
    HashGridEncoding,
    TcnnHashEncoding,
    TorchHashEncoding,
    _TorchHashGrid,
    level_layout,
    per_level_scale,
)

SMALL = HashGridConfig(
    num_levels=6, features_per_level=2, log2_hashmap_size=10, base_resolution=4, desired_resolution_per_bound=40
)


# ---------------------------------------------------------------- per-level scale
def f32(x) -> np.float32:
    """A float32 operation as C's correctly rounded float functions do it: exact, then rounded."""
    return np.float32(np.float64(x))


def tcnn_grid_scale(level: int, per_level: float, base: int) -> np.float32:
    """tiny-cuda-nn's ``grid_scale``: ``exp2f(level * log2f((float)per_level_scale)) * base - 1.0f``
    (common_device.h; the log2 is taken on the float it stores), every step rounded to float32."""
    log2_b = f32(np.log2(np.float64(np.float32(per_level))))
    exponent = f32(np.float64(level) * np.float64(log2_b))
    return f32(f32(np.exp2(np.float64(exponent)) * base) - 1.0)


@pytest.mark.parametrize("cfg, bound", [(HashGridConfig(), 1.0), (SMALL, 1.5), (SMALL, 1.0)])
def test_level_scales_are_tcnn_float32_values(cfg, bound):
    scales, resolutions, *_ = level_layout(cfg, bound)
    b = per_level_scale(cfg, bound)
    for level, scale in enumerate(scales):
        expected = tcnn_grid_scale(level, b, cfg.base_resolution)
        assert np.float32(scale) == expected and scale == float(expected), level
        assert resolutions[level] == math.ceil(expected) + 1


def test_double_precision_scale_would_miss_the_finest_level():
    """The old computation (log2 in double) lands 1.3e-3 cells off at the finest default level."""
    cfg = HashGridConfig()
    scales = level_layout(cfg, 1.0)[0]
    log2_b = math.log2(per_level_scale(cfg, 1.0))
    in_double = float(torch.exp2(torch.tensor(15.0) * torch.tensor(log2_b, dtype=torch.float32)) * 16 - 1)
    assert in_double == 2047.0 and abs(scales[15] - in_double) > 1e-3
    enc = TorchHashEncoding(cfg, 1.0)
    assert enc.scales[15].item() == scales[15]  # the torch backend indexes with these values
    enc.half().to("cpu")  # moving or casting the module keeps the float32 scales of the device
    assert enc.scales.dtype == torch.float32 and enc.scales.tolist() == scales


@pytest.mark.gpu
def test_torch_backend_on_cuda_indexes_with_the_kernels_scales():
    """On CUDA the scales use the GPU's exp2f (tiny-cuda-nn's kernel); at most 2 ulp from the host's."""
    cfg = HashGridConfig()
    host = torch.tensor(level_layout(cfg, 1.0)[0])
    enc = TorchHashEncoding(cfg, 1.0).cuda()
    assert enc.scales.device.type == "cuda" and enc.scales.dtype == torch.float32
    ulp = torch.finfo(torch.float32).eps * host.abs()
    assert ((enc.scales.cpu() - host).abs() <= 2 * ulp).all()
    print("levels whose CUDA scale differs from the host's:", int((enc.scales.cpu() != host).sum()))


# ---------------------------------------------------------------- one checkpoint layout
class _FakeTcnnEncoding(nn.Module):
    """tinycudann.Encoding's contract as the wrapper uses it: a flat ``params`` parameter that
    forward passes to the kernel. The kernel here is the torch backend's, on ``params``."""

    reference: TorchHashEncoding = None

    def __init__(self, n_input_dims, encoding_config, dtype):
        super().__init__()
        ref = self.reference
        self.features = encoding_config["n_features_per_level"]
        assert encoding_config["per_level_scale"] == per_level_scale(SMALL, 1.5)
        self.params = nn.Parameter(torch.zeros(ref.table.numel(), dtype=dtype))

    def forward(self, u):
        return _TorchHashGrid.apply(u, self.params.view(-1, self.features), self.reference)


@pytest.fixture
def fake_tcnn(monkeypatch):
    """tinycudann importable (the fake above); HashGridEncoding(..., device="cuda") builds it."""
    _FakeTcnnEncoding.reference = TorchHashEncoding(SMALL, 1.5)
    monkeypatch.setitem(sys.modules, "tinycudann", types.SimpleNamespace(Encoding=_FakeTcnnEncoding))
    from consistent123 import backends

    backends.load_failure.cache_clear()

    def build(cfg):
        with monkeypatch.context() as m:  # CUDA only while resolving: the optimiser must not see it
            m.setattr(torch.cuda, "is_available", lambda: True)
            return HashGridEncoding(cfg, 1.5, device="cuda")

    yield build
    backends.load_failure.cache_clear()


def _points(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) * 2 - 1) * 1.5


def _saved(obj) -> dict:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


def test_tcnn_and_torch_checkpoints_share_keys_shapes_and_optimiser_state(fake_tcnn):
    torch.manual_seed(0)
    tc = fake_tcnn(SMALL.model_copy(update={"backend": "auto"}))
    th = HashGridEncoding(SMALL.model_copy(update={"backend": "torch"}), 1.5)
    assert isinstance(tc.impl, TcnnHashEncoding) and tc.backend == "tcnn" and th.backend == "torch"
    assert [(k, v.shape) for k, v in tc.state_dict().items()] == [(k, v.shape) for k, v in th.state_dict().items()]
    assert [n for n, _ in tc.named_parameters()] == ["impl.table"]  # tcnn's own flat copy is gone

    x, target = _points(), torch.randn(64, SMALL.num_levels * 2)
    opt = torch.optim.Adam(tc.parameters(), lr=1e-2)
    for _ in range(3):  # train on "tcnn", then resume on torch
        opt.zero_grad()
        ((tc(x) - target) ** 2).mean().backward()
        opt.step()
    state = _saved({"enc": tc.state_dict(), "opt": opt.state_dict()})
    th.load_state_dict(state["enc"])
    opt_th = torch.optim.Adam(th.parameters(), lr=1e-2)
    opt_th.load_state_dict(state["opt"])
    torch.testing.assert_close(th(x), tc(x))
    for enc, o in ((tc, opt), (th, opt_th)):  # one more step each: moments must have matched
        o.zero_grad()
        ((enc(x) - target) ** 2).mean().backward()
        o.step()
    torch.testing.assert_close(th.impl.table, tc.impl.table)
    # ... and back: the torch checkpoint loads into the tcnn module, built as the fields build
    # it (no device yet: moved after construction).
    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: True)
        tc2 = HashGridEncoding(SMALL.model_copy(update={"backend": "tcnn"}), 1.5)
    assert tc2.backend == "tcnn"
    tc2.load_state_dict(_saved(th.state_dict()))
    torch.testing.assert_close(tc2(x), th(x))


def test_tiny_cuda_nn_flat_layout_loads_into_either_backend(fake_tcnn):
    th = HashGridEncoding(SMALL.model_copy(update={"backend": "torch"}), 1.5)
    with torch.no_grad():
        th.impl.table.uniform_(-1, 1)
    flat = {TCNN_FLAT_KEY: th.impl.table.detach().reshape(-1).clone()}  # how tinycudann.Encoding saves
    for other in (
        HashGridEncoding(SMALL.model_copy(update={"backend": "torch"}), 1.5),
        fake_tcnn(SMALL.model_copy(update={"backend": "tcnn"})),
    ):
        assert other.backend in ("torch", "tcnn")
        other.load_state_dict(dict(flat))
        torch.testing.assert_close(other(_points()), th(_points()))
    nerf = {"encoder." + TCNN_FLAT_KEY: flat[TCNN_FLAT_KEY]}  # nested inside a field, as in checkpoints
    holder = nn.Module()
    holder.encoder = HashGridEncoding(SMALL.model_copy(update={"backend": "torch"}), 1.5)
    holder.load_state_dict(nerf)
    torch.testing.assert_close(holder.encoder.impl.table, th.impl.table)


def test_empty_batch_needs_no_kernel():
    enc = HashGridEncoding(SMALL.model_copy(update={"backend": "torch"}), 1.5)
    assert enc(torch.zeros(0, 3)).shape == (0, SMALL.num_levels * 2)


# ---------------------------------------------------------------- empty meshes
class _StrictDr:
    """nvdiffrast's behaviour on an empty triangle tensor: it raises."""

    def __getattr__(self, name):
        def call(*args, **kwargs):
            raise RuntimeError(f"nvdiffrast.{name}: empty triangle tensor")

        return call


@pytest.mark.parametrize("backend", ["torch", "nvdiffrast"])
def test_empty_mesh_renders_background_on_both_backends(backend):
    from consistent123.render.cameras import Camera
    from consistent123.render.rasterize import (
        NvdiffrastRasteriser,
        TorchRasteriser,
        render_mesh,
    )

    if backend == "torch":
        r = TorchRasteriser("cpu")
    else:
        r = NvdiffrastRasteriser.__new__(NvdiffrastRasteriser)  # no CUDA context needed: never called
        r.dr = _StrictDr()
    verts, faces = torch.zeros(0, 3, requires_grad=True), torch.zeros(0, 3, dtype=torch.long)
    clip = torch.zeros(1, 0, 4)
    rast, _ = r.rasterize(clip, faces, 12, 16)
    assert rast.shape == (1, 12, 16, 4) and not rast.any()
    attr, _ = r.interpolate(verts.unsqueeze(0), rast, faces)
    assert attr.shape == (1, 12, 16, 3) and not attr.any()
    color = torch.rand(1, 12, 16, 4)
    assert torch.equal(r.antialias(color, rast, clip, faces), color)

    from consistent123.render import rasterize

    # render_mesh with this rasteriser (the resolver would refuse nvdiffrast on a CPU).
    saved = rasterize._CACHE.pop(("torch", "cpu"), None)
    rasterize._CACHE[("torch", "cpu")] = r
    try:
        out = render_mesh(verts, faces, Camera(90.0, 0.0, 3.2, 20.0), 12, 16, bg_color=(0.2, 0.4, 0.6), backend="torch")
    finally:
        rasterize._CACHE.pop(("torch", "cpu"))
        if saved is not None:
            rasterize._CACHE[("torch", "cpu")] = saved
    assert torch.allclose(out["rgb"], torch.tensor([0.2, 0.4, 0.6]).expand(12, 16, 3))
    assert not out["alpha"].any() and not out["mask"].any()


# ---------------------------------------------------------------- mesh-phase checkpoint size
def _dmtet(grid):
    from consistent123.fields.dmtet import DMTetField

    cfg = Config()
    dm = cfg.dmtet.model_copy(update=dict(tet_grid_size=grid, rasteriser_backend="torch", marching_backend="torch"))
    hg = HashGridConfig(num_levels=4, log2_hashmap_size=10, base_resolution=8, backend="torch")
    return DMTetField(dm, hg, bound=1.0)


def test_mesh_checkpoint_leaves_out_the_tet_grid():
    torch.manual_seed(0)
    field = _dmtet(48)
    grid_bytes = field.base_verts.numel() * 4 + field.tets.numel() * 8
    learned_bytes = sum(p.numel() * p.element_size() for p in field.parameters()) + field.tet_scale.numel() * 4
    assert grid_bytes > 2 * learned_bytes  # the grid would dominate the file
    state = field.state_dict()
    assert "base_verts" not in state and "tets" not in state and "tet_scale" in state
    buf = io.BytesIO()
    torch.save(state, buf)
    assert buf.tell() < learned_bytes + 64 * 1024  # learned values and pickle overhead only
    with torch.no_grad():
        field.sdf.copy_(torch.linalg.norm(field.base_verts, dim=-1) * -1 + 0.5)
        field.deform.normal_(0, 0.1)
        field.tet_scale.fill_(0.8)
    restored = _dmtet(48)
    restored.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True) | field.state_dict())
    assert torch.equal(restored.tets, field.tets) and torch.equal(restored.base_verts, field.base_verts)
    va, fa = field.get_mesh()
    vb, fb = restored.get_mesh()
    assert fa.shape[0] > 0 and torch.equal(fa, fb) and torch.equal(va, vb)
    old_style = field.state_dict() | {"base_verts": field.base_verts, "tets": field.tets}  # earlier checkpoints
    restored.load_state_dict(old_style)


# ---------------------------------------------------------------- export on the run's device
@pytest.mark.parametrize("phase", ["mesh", "nerf"])
def test_export_runs_on_the_trainers_device_and_backend(phase, monkeypatch, tmp_path):
    """Both export paths hand the run's device and resolved rasteriser to the export functions
    (they used to fall back to CPU and the torch rasteriser while the field lived on CUDA)."""
    from consistent123.pipeline import export, outputs

    calls = {}
    cfg = Config().model_copy(update={"dmtet": Config().dmtet.model_copy(update={"rasteriser_backend": "nvdiffrast"})})
    verts, faces = torch.rand(3, 3), torch.tensor([[0, 1, 2]])

    def extract(density_fn, bound, resolution, threshold, device="cpu", chunk=1 << 18):
        calls["extract"] = device
        return types.SimpleNamespace(vertices=verts.numpy(), faces=faces.numpy())

    def clean(v, f, export_cfg):  # the clean-up works on the host
        calls["clean"] = (v.device, f.device)
        return verts.numpy(), faces.numpy()

    def bake(v, f, color_fn, size, device=None, backend="auto"):
        calls["bake"] = (device, backend)
        calls["baked_on"] = (v.device, f.device)
        return None, None, None

    monkeypatch.setattr(export, "extract_nerf_mesh", extract)
    monkeypatch.setattr(export, "clean_up", clean)
    monkeypatch.setattr(export, "bake_texture", bake)
    monkeypatch.setattr(export, "save_textured_mesh", lambda *a, **k: {})
    monkeypatch.setattr(export, "render_turntable", lambda *a, **k: tmp_path / "turntable.mp4")
    device = torch.device("meta")  # any device but the CPU; nothing is computed on it here
    mesh = types.SimpleNamespace(get_mesh=lambda: (verts, faces), albedo=None) if phase == "mesh" else None
    nerf = types.SimpleNamespace(density=None, surface_threshold=lambda threshold, rule: threshold)
    trainer = types.SimpleNamespace(cfg=cfg, device=device, mesh=mesh, nerf=nerf)
    outputs.export_outputs(trainer, tmp_path)
    assert calls["bake"] == (device, "nvdiffrast")
    assert "clean" in calls and calls["baked_on"] == (device, device)  # cleaned mesh back on the run's device
    if phase == "nerf":
        assert calls["extract"] == device
