"""Milliseconds per training iteration, phase by phase and part by part, eager against optimised.

    python perf/iteration_speed.py --models full [--device cpu|cuda] [--iters N]
    python perf/iteration_speed.py --models tiny            # the tiny priors, seconds

``--models full`` uses the real prior architectures with random weights
(``consistent123.priors.standins.full_size``: Stable Diffusion 2.1-base, Zero-1-to-3 XL, CLIP ViT-B/16),
which cost what the real checkpoints cost. Per phase (stage 1: Zero-1-to-3 only; stage 2: both
priors; mesh: DMTet with both priors) it times ``--iters`` novel-view iterations and
``--ref-iters`` reference-view iterations and mixes them at the configured reference-view rate,
split into: render (forward), Zero-1-to-3 UNet, SD UNet, VAE encode (forward) + its backward,
field backward (the rest of the backward), optimiser step, boundary check (the 8-view CLIP
judgement, amortised over stage 1), other (losses, regularisers, sampling, Python) and the
host-device syncs per iteration (CUDA: counted by torch's sync debug mode; CPU: explicit host
reads of tensors, which would be syncs on a GPU). Then peak memory and ``projected <X> min``
(and, with ``--models full``, the projected peak GPU memory per phase and part at the paper's
sizes, ``perf/gpu_memory.py``) for the paper schedule (5,000 NeRF + 5,000 mesh iterations, stage 2 from the end of the
boundary window at the latest, checks every ``boundary.every`` iterations inside it).

Modes, measured in the same process one after the other on the same priors:
  eager      cfg.perf all off (the defaults)
  optimised  sync-free logging, device sampling, cached targets, channels_last; on CUDA also TF32
             and torch.compile (UNets with mode=reduce-overhead = CUDA graphs, the field's MLP).
             On the CPU torch.compile is left out unless ``--compile`` (compiling an 865M-parameter
             UNet on two cores takes longer than the profile itself).

On the CPU the UNets and VAEs run at their real input sizes (256² for Zero-1-to-3, 512² for
Stable Diffusion) but the renders are small (``--render-size`` S, default 32; the mesh 2S px on an S³ tet
grid): the torch hash grid on two shared cores would otherwise dominate the profile; on CUDA the configured sizes are kept unless overridden with ``--set``.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from consistent123.case import Case  # noqa: E402
from consistent123.config import load_config  # noqa: E402
from consistent123.priors.base import Priors  # noqa: E402
from consistent123.priors.registry import load_priors  # noqa: E402
from consistent123.training import perf  # noqa: E402
from consistent123.training.schedule import BoundaryJudge  # noqa: E402
from consistent123.training.trainer import Trainer  # noqa: E402

PARTS = ["render", "zero123_unet", "sd_unet", "vae_enc_bwd", "field_bwd", "optimiser", "boundary", "other"]
HEAD = {
    "render": "render",
    "zero123_unet": "Z123 UNet",
    "sd_unet": "SD UNet",
    "vae_enc_bwd": "VAE enc+bwd",
    "field_bwd": "field bwd",
    "optimiser": "optim",
    "boundary": "boundary",
    "other": "other",
}
PHASES = ["stage1", "stage2", "mesh"]


def synthetic_case(size: int = 256) -> Case:
    """A coloured disc with a depth bump (the cost of an iteration does not depend on the picture)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    r2 = xx**2 + yy**2
    mask = (r2 < 0.5).float()
    rgba = torch.stack([0.5 + 0.4 * xx, 0.5 + 0.4 * yy, 0.3 + 0.2 * r2, mask]).clamp(0, 1)
    return Case("disc", rgba, ((0.3 + r2) * mask)[None], "a yellow disc on a table")


# ---------------------------------------------------------------- instrumentation
class Clock:
    """Wall time per part; on CUDA every reading waits for the device, so work is charged to the part that launched it."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.ms: dict[str, float] = defaultdict(float)
        self.syncs = 0
        self.backward_start = None
        self.vae_grad_done = None

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def timed(self, part: str, fn):
        def wrapper(*args, **kwargs):
            start = self.now()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ms[part] += (self.now() - start) * 1e3

        return wrapper


class _Proxy:
    """Stands in for a prior's UNet or VAE: times calls (and VAE encodes) and passes the rest through."""

    def __init__(self, module, clock: Clock, part: str):
        self.__dict__.update(_module=module, _clock=clock, _part=part)

    def __getattr__(self, name):
        return getattr(self._module, name)

    def __call__(self, *args, **kwargs):
        return self._clock.timed(self._part, self._module)(*args, **kwargs)

    def encode(self, x, *args, **kwargs):
        clock = self._clock
        if x.requires_grad:  # the gradient reaching the VAE's input ends the VAE's share of the backward
            x.register_hook(lambda g: setattr(clock, "vae_grad_done", clock.now()) or g)
        return clock.timed(self._part, self._module.encode)(x, *args, **kwargs)


@contextlib.contextmanager
def instrumented(trainer: Trainer, clock: Clock):
    """Time render, both UNets, VAE encodes, the backward (split at the VAE input) and the optimiser."""
    priors = trainer.priors
    saved = []
    for prior, unet_part in ((priors.zero123, "zero123_unet"), (priors.stable_diffusion, "sd_unet")):
        if prior is not None:
            saved.append((prior, prior.unet, prior.vae))
            prior.unet = _Proxy(prior.unet, clock, unet_part)
            prior.vae = _Proxy(prior.vae, clock, "vae_enc_bwd")
    trainer.render = clock.timed("render", Trainer.render.__get__(trainer))
    original_backward = torch.Tensor.backward

    def backward(tensor, *args, **kwargs):
        clock.vae_grad_done = None
        start = clock.now()
        original_backward(tensor, *args, **kwargs)
        end = clock.now()
        split = clock.vae_grad_done or start
        clock.ms["vae_enc_bwd"] += (split - start) * 1e3
        clock.ms["field_bwd"] += (end - split) * 1e3

    torch.Tensor.backward = backward
    opt_step = trainer.optimizer.step
    trainer.optimizer.step = clock.timed("optimiser", opt_step)
    reads = [(name, getattr(torch.Tensor, name)) for name in ("item", "tolist", "__float__", "__int__", "__bool__")]
    if not clock.cuda:  # CPU: count the explicit host reads (each one a sync on a GPU)
        for name, fn in reads:

            def counting(*args, _fn=fn, **kwargs):
                clock.syncs += 1
                return _fn(*args, **kwargs)

            setattr(torch.Tensor, name, counting)
    try:
        yield
    finally:
        torch.Tensor.backward = original_backward
        if not clock.cuda:
            for name, fn in reads:
                setattr(torch.Tensor, name, fn)
        trainer.optimizer.step = opt_step
        del trainer.render
        for prior, unet, vae in saved:
            prior.unet, prior.vae = unet, vae


def profile_iterations(trainer: Trainer, t: int, n: int, device: torch.device) -> dict:
    """Mean per-part ms over ``n`` iterations run at schedule position ``t`` (+ k * interval)."""
    clock = Clock(device)
    total = 0.0
    interval = trainer.cfg.cameras.ref_view_interval
    with instrumented(trainer, clock):
        for i in range(n):
            trainer.iteration = t + i * interval
            start = clock.now()
            trainer.step()
            total += (clock.now() - start) * 1e3
    parts = {k: v / n for k, v in clock.ms.items()}
    parts["other"] = total / n - sum(parts.values())
    parts["total"] = total / n
    parts["syncs"] = clock.syncs / n if device.type != "cuda" else cuda_syncs(trainer, t)
    return parts


def cuda_syncs(trainer: Trainer, t: int) -> int:
    """Synchronisations of one iteration at ``t``, counted without the profile's own waits."""
    with _sync_counter(torch.device("cuda")) as syncs:
        trainer.iteration = t
        trainer.step()
        return syncs()


@contextlib.contextmanager
def _sync_counter(device: torch.device):
    """CUDA: count the implicit synchronisations torch reports in its sync debug mode."""
    if device.type != "cuda":
        yield lambda: 0
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield lambda: sum("synchroniz" in str(w.message) for w in caught)
        finally:
            torch.cuda.set_sync_debug_mode(0)


def boundary_check_ms(trainer: Trainer, device: torch.device, runs: int) -> float:
    clock = Clock(device)
    times = []
    for _ in range(runs):
        start = clock.now()
        trainer.check_score()
        times.append((clock.now() - start) * 1e3)
    return statistics.median(times)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS so far (KB on Linux)


# ---------------------------------------------------------------- the schedule and the modes
def schedule_counts(cfg) -> dict:
    """Iterations of each phase in the paper schedule with stage 2 starting at the latest switch."""
    judge = BoundaryJudge.from_config(cfg.boundary)
    switch = min(cfg.boundary.most_3d_only, cfg.train.nerf_iters)
    checks = sum(judge.is_check(t) for t in range(switch))
    return {"stage1": switch, "stage2": cfg.train.nerf_iters - switch, "mesh": cfg.train.mesh_iters, "checks": checks}


def mode_overrides(mode: str, device: torch.device, compile_on_cpu: bool) -> list[str]:
    if mode == "eager":
        return []
    out = [
        "perf.sync_free_logging=true",
        "perf.device_sampling=true",
        "perf.cache_targets=true",
        "perf.channels_last=true",
    ]
    if device.type == "cuda":
        out += ["perf.tf32=true", "perf.compile=true", "perf.compile_mode=reduce-overhead"]
    elif compile_on_cpu:
        out += ["perf.compile=true"]
    return out


def check_switches(mode: str, phase: str, trainer: Trainer, cfg) -> None:
    """The switches the mode claims are in effect on the priors and the field's MLPs (the priors
    are shared with the modes timed before it), else the ratios printed would be false."""
    applied = perf.applied_switches(trainer.priors, trainer.field)
    missing = perf.missing_switches(applied, cfg.perf)
    if missing:
        raise SystemExit(f"{mode} {phase}: switches asked for but not applied: {'; '.join(missing)}")
    print(f"  {mode:9s} {phase:6s} applied: " + ", ".join(f"{k} {sorted(v)}" for k, v in applied.items()), flush=True)


def run_mode(mode: str, base: list[str], args, priors: Priors, case: Case, device: torch.device) -> dict:
    """Per phase: {part: ms} mixed at the reference-view rate, plus boundary and peak memory."""
    overrides = base + mode_overrides(mode, device, args.compile)
    results = {}
    ref_iters = max(1, args.ref_iters)
    for phase in PHASES:
        strategy = "3d_only" if phase == "stage1" else "dynamic_only"
        cfg = load_config(None, overrides + [f"dynamic.strategy={strategy}"])
        phase_priors = Priors(
            zero123=priors.zero123,
            clip_judge=priors.clip_judge,
            stable_diffusion=priors.stable_diffusion if phase != "stage1" else None,
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer = Trainer(cfg, case, phase_priors, device)
        trainer._prepared_priors = True  # reference and prompt were set once, on the shared priors
        interval = cfg.cameras.ref_view_interval
        start_t = 2600 if phase != "mesh" else cfg.train.nerf_iters + 100  # mid-phase; multiples of the interval
        if phase == "mesh":
            trainer.iteration = cfg.train.nerf_iters
            trainer.start_mesh_phase()  # compiles the mesh's colour MLP when perf.compile is on
        check_switches(mode, phase, trainer, cfg)
        for _ in range(args.warmup):  # warm-up: compilation, CUDA graphs, allocator
            for t in (start_t + 1, start_t):
                trainer.iteration = t
                trainer.step()
        novel = profile_iterations(trainer, start_t + 1, args.iters, device)
        ref = profile_iterations(trainer, start_t, ref_iters, device)
        keys = set(PARTS) | set(novel) | set(ref)
        mix = {k: (novel.get(k, 0.0) * (interval - 1) + ref.get(k, 0.0)) / interval for k in keys}
        if phase == "stage1" and priors.clip_judge is not None:
            trainer.iteration = start_t
            counts = schedule_counts(cfg)
            check = boundary_check_ms(trainer, device, max(1, args.ref_iters))
            mix["boundary"] = check * counts["checks"] / counts["stage1"]
            mix["total"] += mix["boundary"]
            mix["check_ms"] = check
        mix["peak_mb"] = peak_memory_mb(device)
        mix["novel_ms"], mix["ref_ms"] = novel["total"], ref["total"]
        results[phase] = mix
        trainer.host_records()
        del trainer
        print(
            f"  {mode:9s} {phase:6s} {mix['total']:10.1f} ms/it  (novel {novel['total']:.0f}, reference {ref['total']:.0f})",
            flush=True,
        )
    return results


def projected_minutes(results: dict, counts: dict) -> float:
    return sum(results[p]["total"] * counts[p] for p in PHASES) / 60e3


def print_table(all_results: dict, counts: dict, device: torch.device) -> None:
    modes = list(all_results)
    print()
    print(f"ms per iteration ({device.type}; novel and reference views mixed 1 in {counts['interval']} reference)")
    header = (
        f"{'phase':7s} {'mode':9s}"
        + "".join(f" {HEAD[p]:>11s}" for p in PARTS)
        + f" {'total':>10s} {'syncs/it':>8s} {'peak MB':>9s}"
    )
    print(header)
    for phase in PHASES:
        for mode in modes:
            r = all_results[mode][phase]
            print(
                f"{phase:7s} {mode:9s}"
                + "".join(f" {r.get(p, 0.0):11.1f}" for p in PARTS)
                + f" {r['total']:10.1f} {r['syncs']:8.1f} {r['peak_mb']:9.0f}"
            )
        if len(modes) == 2:
            a, b = (all_results[m][phase] for m in modes)
            print(
                f"{phase:7s} {'ratio':9s}"
                + "".join(f" {_ratio(b.get(p, 0.0), a.get(p, 0.0)):>11s}" for p in PARTS)
                + f" {_ratio(b['total'], a['total']):>10s}"
            )
    print()
    print(
        f"schedule: stage 1 {counts['stage1']} it ({counts['checks']} boundary checks), stage 2 {counts['stage2']} it, "
        f"mesh {counts['mesh']} it"
    )
    for mode in modes:
        print(f"projected {projected_minutes(all_results[mode], counts):.1f} min ({mode}, {device.type}, sizes above)")
    if len(modes) == 2:
        e, o = (projected_minutes(all_results[m], counts) for m in modes)
        print(f"optimised/eager {o / e:.2f}")


def _ratio(new: float, old: float) -> str:
    return f"{new / old:.2f}" if old > 1e-6 else "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", choices=("full", "tiny"), default="full")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--iters", type=int, default=None, help="novel-view iterations timed per phase (CPU 1, CUDA 10)"
    )
    parser.add_argument(
        "--ref-iters", type=int, default=None, help="reference-view iterations timed per phase (CPU 1, CUDA 5)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up (novel + reference) pairs per phase (CPU 0, CUDA 3)"
    )
    parser.add_argument("--modes", default="eager,optimised")
    parser.add_argument(
        "--render-size",
        type=int,
        default=None,
        help="NeRF render size (CPU default 32; mesh twice that on a grid of this size)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile in the optimised mode on the CPU too")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the projected GPU memory table (perf/gpu_memory.py)"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override section.key=value"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    cpu = device.type == "cpu"
    args.iters = args.iters if args.iters is not None else (1 if cpu else 10)
    args.ref_iters = args.ref_iters if args.ref_iters is not None else (1 if cpu else 5)
    args.warmup = args.warmup if args.warmup is not None else (0 if cpu else 3)
    base = ["train.nerf_iters=5000", "train.mesh_iters=5000", f"train.device={device.type}"]
    if cpu:
        size = args.render_size or 32
        base += [
            f"nerf.render_size={size}",
            f"boundary.check_render_size={size}",
            f"boundary.check_source_size={4 * size}",  # R renders 800^2 for 128^2: too slow here
            f"dmtet.render_size={2 * size}",
            f"dmtet.tet_grid_size={size}",
        ]
    elif args.render_size:
        base += [f"nerf.render_size={args.render_size}"]
    if args.models == "tiny":
        import tempfile

        from consistent123.priors.standins.tiny import ensure_tiny_models

        tiny = Path(tempfile.mkdtemp(prefix="c123-tiny-")) / "tiny"
        ensure_tiny_models(tiny)
        base += [f"models.tiny_dir={tiny}", "sds.zero123_resolution=64", "sds.sd_resolution=64"]
    base += args.overrides
    cfg = load_config(None, base)
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if not cpu else f'{torch.get_num_threads()} threads'}), "
        f"torch {torch.__version__}, {args.models} priors, {args.iters} novel + {args.ref_iters} reference it per phase "
        f"after {args.warmup} warm-up pairs",
        flush=True,
    )
    print(
        f"sizes: NeRF {cfg.nerf.render_size}px (reference x{cfg.nerf.ref_render_scale}), mesh {cfg.dmtet.render_size}px on a "
        f"{cfg.dmtet.tet_grid_size}^3 tet grid, Zero-1-to-3 {cfg.sds.zero123_resolution}², SD {cfg.sds.sd_resolution}², "
        f"checks {cfg.boundary.check_source_size or cfg.boundary.check_render_size}px -> "
        f"{cfg.boundary.check_render_size}px",
        flush=True,
    )
    start = time.perf_counter()
    if args.models == "full":
        from consistent123.priors.standins.full_size import load_full_size_priors, parameter_counts

        priors = load_full_size_priors(cfg, device)
        counts = parameter_counts(priors)
        print(
            "built "
            + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in counts.items())
            + f" in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    else:
        priors = load_priors(load_config(None, base + ["dynamic.strategy=consistent123"]), device)
    case = synthetic_case()
    # Reference and prompt once; the text and image encoders are not needed after that.
    Trainer(load_config(None, base), case, priors, device)._prepare_priors()
    if args.models == "full":
        priors.stable_diffusion.text_encoder = None
        priors.zero123.image_encoder = None
    # One stage-2 novel-view iteration before any timing: the first call of each kernel (oneDNN
    # primitives, cuDNN plans, the allocator) is not charged to whichever mode runs first.
    warm = Trainer(load_config(None, base + ["dynamic.strategy=dynamic_only"]), case, priors, device)
    warm._prepared_priors = True
    warm.iteration = 2601
    warm.step()
    del warm
    print(f"warmed up in {time.perf_counter() - start:.0f} s", flush=True)
    counts = schedule_counts(cfg)
    counts["interval"] = cfg.cameras.ref_view_interval
    results = {}
    for mode in args.modes.split(","):
        results[mode] = run_mode(mode, base, args, priors, case, device)
    print_table(results, counts, device)
    if args.models == "full" and not args.no_memory:
        # Peak memory at the paper's sizes (the CPU timings above shrink the renders).
        import gpu_memory

        gpu_memory.report(args.overrides, str(device), fit=(32, 64) if device.type == "cpu" else None)
    print(f"wall {time.perf_counter() - start:.0f} s; on a shared machine the figures carry the other jobs' load")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
