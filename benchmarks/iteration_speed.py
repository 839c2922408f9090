"""Seconds per iteration of the three phases with tiny priors at 64 px on this machine.

    python benchmarks/iteration_speed.py [--size 64] [--iters 12]

Stage 1 (3D prior only), stage 2 (both priors, dynamic weights) and the DMTet mesh phase,
each timed over ITERS iterations after two warm-up iterations (reference-view iterations
included at their configured rate, as in training).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consistent123.case import load_case  # noqa: E402
from consistent123.config import load_config  # noqa: E402
from consistent123.priors.tiny import ensure_tiny_models  # noqa: E402
from consistent123.trainer import Trainer, load_priors  # noqa: E402
from tests._tiny_run import make_case  # noqa: E402


def time_steps(trainer: Trainer, iters: int) -> float:
    for _ in range(2):
        trainer.step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        trainer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iters", type=int, default=12)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ensure_tiny_models(tmp / "tiny")
        base = [f"models.tiny_dir={tmp / 'tiny'}", f"nerf.render_size={args.size}", f"dmtet.render_size={args.size}",
                "sds.zero123_resolution=64", "sds.sd_resolution=64", "dmtet.tet_grid_size=64",
                "train.nerf_iters=100000", "train.mesh_iters=100000", *args.overrides]
        case = load_case(make_case(tmp / "cases"))
        device = torch.device("cpu")
        stage1_cfg = load_config(None, base + ["dynamic.strategy=3d_only"])
        stage2_cfg = load_config(None, base + ["dynamic.strategy=dynamic_only"])
        trainer = Trainer(stage1_cfg, case, load_priors(stage1_cfg, device), device)
        s1 = time_steps(trainer, args.iters)
        print(f"stage1 {s1:.3f} s/it  (NeRF {args.size}px, Zero-1-to-3 SDS)", flush=True)
        trainer = Trainer(stage2_cfg, case, load_priors(stage2_cfg, device), device)
        s2 = time_steps(trainer, args.iters)
        print(f"stage2 {s2:.3f} s/it  (NeRF {args.size}px, Zero-1-to-3 + Stable Diffusion SDS)", flush=True)
        trainer.start_mesh_phase()
        mesh = time_steps(trainer, args.iters)
        print(f"mesh   {mesh:.3f} s/it  (DMTet {stage2_cfg.dmtet.tet_grid_size}^3 grid, {args.size}px raster, both priors)")
        print(f"ratio stage2/stage1 {s2 / s1:.2f}  mesh/stage2 {mesh / s2:.2f}")


if __name__ == "__main__":
    main()
