"""Rendering speed of the pure-PyTorch (or CUDA) backends: one line per figure.

    python perf/render_speed.py [--runs 3] [--device cpu|cuda] [--backend torch|tcnn|auto]

The hash-grid line compares the torch encoding with nerfstudio's torch ``HashEncoding`` (same
16 levels, 2^19 table, 2 features) in the same run. nerfstudio is not a dependency of this
project; for the comparison install it beside it without its dependency tree:
``pip install nerfstudio jaxtyping viser msgspec websockets zstandard --no-deps``. Without it the
line says so and prints our time alone.

Each measurement is a function returning ``(value_ms, detail)``; ``MEASUREMENTS`` lists them
with their labels and ``main`` prints one line each, so more renderers can be added by
appending to the list.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from consistent123.config import Config
from consistent123.render.cameras import Camera

VIEW = Camera(80.0, 30.0, 3.2, 20.0)


def _timed(fn: Callable[[], None], runs: int, warmup: int, device: str) -> float:
    """Median wall time (ms) of ``fn`` over ``runs`` after ``warmup`` calls."""
    times = []
    for i in range(warmup + runs):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


# ---------------------------------------------------------------- NeRF (volume rendering)
def nerf_forward_backward_ms(args, size: int, use_occupancy: bool, shading: str = "albedo"):
    """Forward + backward of one ``size``x``size`` view of a freshly initialised NeRF (full
    default hash grid: 16 levels, 2^19 table), 64 + 32 samples per ray. With the occupancy
    grid it is updated once first (as after the first training steps: the density blob only)."""
    from consistent123.fields.nerf import NeRFField
    from consistent123.render.volume import render_nerf

    cfg = Config()
    cfg.hashgrid.backend = args.backend
    torch.manual_seed(0)
    field = NeRFField(cfg.nerf, cfg.hashgrid).to(args.device)
    if use_occupancy:
        field.occupancy.update(field)
    gen = torch.Generator().manual_seed(0)
    samples = []

    def step():
        field.zero_grad(set_to_none=True)
        out = render_nerf(field, VIEW, size, shading=(shading, 0.3, None), generator=gen, use_occupancy=use_occupancy)
        out["rgb"].mean().backward()
        samples.append(out["num_samples"])

    ms = _timed(step, args.runs, args.warmup, args.device)
    backend = field.encoder.backend
    skip = "occupancy grid on" if use_occupancy else "no skipping"
    return ms, f"{backend} hash grid, {shading}, {skip}, {samples[-1]} field samples"


# ---------------------------------------------------------------- rasteriser (mesh phase)
def rasteriser_forward_backward_ms(args, size: int, raster_backend: str = "torch"):
    """Forward + backward of one ``size``x``size`` view of a 20480-face icosphere (rasterise,
    interpolate colour/position/normal/depth, antialias, backward to the vertices)."""
    import trimesh

    from consistent123.render.rasterize import render_mesh

    mesh = trimesh.creation.icosphere(subdivisions=5, radius=0.8)
    verts = torch.tensor(mesh.vertices, dtype=torch.float32, device=args.device, requires_grad=True)
    faces = torch.tensor(mesh.faces, device=args.device)
    colours = (verts.detach() * 0.5 + 0.5).clamp(0, 1)
    cam = Camera(75.0, 30.0, 3.2, 40.0)  # the sphere fills ~40 % of the view
    covered = []

    def step():
        verts.grad = None
        out = render_mesh(verts, faces, cam, size, size, vertex_colors=colours, backend=raster_backend)
        (out["rgb"].mean() + out["alpha"].mean() + out["depth"].mean()).backward()
        covered.append(int(out["mask"].sum()))

    ms = _timed(step, args.runs, args.warmup, args.device)
    return ms, f"{raster_backend} rasteriser, {faces.shape[0]} faces, {covered[-1]} covered pixels"


# ---------------------------------------------------------------- hash grid against a peer
def _nerfstudio_hash_encoding(cfg, bound: float):
    """nerfstudio's pure-torch HashEncoding with our grid's levels and table, or None when absent."""
    try:
        from nerfstudio.field_components.encodings import HashEncoding
    except ImportError:
        return None
    return HashEncoding(
        num_levels=cfg.num_levels,
        min_res=cfg.base_resolution,
        max_res=int(cfg.desired_resolution_per_bound * bound),
        log2_hashmap_size=cfg.log2_hashmap_size,
        features_per_level=cfg.features_per_level,
        implementation="torch",
    )


def hashgrid_forward_backward_ms(args, points: int):
    """Forward + backward (to the table) of the default hash grid on ``points`` random points,
    against nerfstudio's torch HashEncoding on the same points, runs interleaved so that the
    load of a shared machine falls on both alike."""
    from consistent123.config import HashGridConfig
    from consistent123.fields.hashgrid import TorchHashEncoding

    cfg, bound = HashGridConfig(backend="torch"), 1.0
    ours = TorchHashEncoding(cfg, bound).to(args.device)
    peer = _nerfstudio_hash_encoding(cfg, bound)
    u = torch.rand(points, 3, generator=torch.Generator().manual_seed(0)).to(args.device)
    x = u * 2 * bound - bound  # ours takes [-bound, bound], nerfstudio [0, 1]

    def run(enc, inp):
        def step():
            enc.zero_grad(set_to_none=True)
            enc(inp).square().sum().backward()

        return step

    ms_ours, ms_peer = [], []
    for _ in range(args.warmup + args.runs):
        ms_ours.append(_timed(run(ours, x), 1, 0, args.device))
        if peer is not None:
            ms_peer.append(_timed(run(peer.to(args.device), u), 1, 0, args.device))
    mine = statistics.median(ms_ours[args.warmup :])
    if peer is None:
        return mine, "nerfstudio not installed: no peer comparison (see the module docstring)"
    theirs = statistics.median(ms_peer[args.warmup :])
    return mine, f"nerfstudio torch HashEncoding {theirs:.1f} ms, ratio ours/nerfstudio {mine / theirs:.2f}"


MEASUREMENTS: list[tuple[str, Callable]] = [
    ("hash grid fwd+bwd 2^18 points", lambda a: hashgrid_forward_backward_ms(a, 1 << 18)),
    ("nerf fwd+bwd 64x64", lambda a: nerf_forward_backward_ms(a, 64, True)),
    ("nerf fwd+bwd 128x128", lambda a: nerf_forward_backward_ms(a, 128, True)),
    ("nerf fwd+bwd 64x64 lambertian", lambda a: nerf_forward_backward_ms(a, 64, True, "lambertian")),
    ("nerf fwd+bwd 64x64 no skipping", lambda a: nerf_forward_backward_ms(a, 64, False)),
    ("nerf fwd+bwd 128x128 no skipping", lambda a: nerf_forward_backward_ms(a, 128, False)),
    ("rasteriser fwd+bwd 256x256", lambda a: rasteriser_forward_backward_ms(a, 256)),
    ("rasteriser fwd+bwd 1024x1024", lambda a: rasteriser_forward_backward_ms(a, 1024)),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="torch", choices=["torch", "tcnn", "auto"])
    parser.add_argument("--only", default="", help="run only measurements whose label contains this")
    args = parser.parse_args(argv)
    print(
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.runs} after {args.warmup} warm-up"
    )
    for label, fn in MEASUREMENTS:
        if args.only and args.only not in label:
            continue
        ms, detail = fn(args)
        print(f"{label}: {ms:.1f} ms ({detail})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
