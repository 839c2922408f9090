"""Peak GPU memory per training phase at the paper's sizes, projected on the CPU (or any device).

    python perf/gpu_memory.py [--set section.key=value ...] [--device cpu] [--budget-gb 24]

Full-size prior architectures on the meta device (random weights are never allocated: the
counts are what the real checkpoints cost), the field built and rendered for real on
``--device``; method in ``consistent123/training/memory_projection.py``. One table (phase x part, GB)
per switch set of ``memory_projection.CANDIDATES``, then which sets fit ``--budget-gb`` with
``perf.memory_margin_gb`` left for what is not counted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consistent123.config import load_config  # noqa: E402
from consistent123.training.memory_projection import GB, MetaPriors, advise, candidates, field_costs, project  # noqa: E402


def report(overrides: list[str], device: str = "cpu", budget_gb: float = 24.0, priors=None, fit=None) -> dict[str, int]:
    """Print one table per switch set; return the peak bytes of each."""
    start = time.perf_counter()
    priors = priors or MetaPriors.build()
    print(f"full-size priors built on the meta device in {time.perf_counter() - start:.0f} s", flush=True)
    t0 = time.perf_counter()
    fields = field_costs(load_config(None, overrides), device, fit=fit)
    print(
        f"field weights, optimiser state and render activations counted on {device} in "
        f"{time.perf_counter() - t0:.0f} s"
        + (f" (renders counted at {fit[0]}px and {fit[1]}px, extrapolated in pixels)" if fit else ""),
        flush=True,
    )
    peaks = {}
    for label, cfg in candidates(load_config(None, overrides)).items():
        proj = project(cfg, device, priors, fields)
        peaks[label] = proj.peak()
        print(
            f"\nprojected GPU memory, GB ({label}: priors {proj.switches['prior_dtype']}, free_encoders "
            f"{proj.switches['free_encoders']}; NeRF {cfg.nerf.render_size}px x{cfg.nerf.ref_render_scale} reference, "
            f"{samples(cfg.nerf)}; mesh {cfg.dmtet.render_size}px on a "
            f"{cfg.dmtet.tet_grid_size}^3 grid; random-weight full-size architectures)"
        )
        print(proj.table(), flush=True)
    margin = load_config(None, overrides).perf.memory_margin_gb
    print(f"\nagainst a {budget_gb:.0f} GB card with {margin:.1f} GB kept for what is not counted:")
    for label, peak in peaks.items():
        verdict = "fits" if peak + margin * GB <= budget_gb * GB else "does not fit"
        print(f"  {label}: peak {peak / GB:.2f} GB, {verdict}")
    print("pre-flight line on such a card: " + advise(peaks, int(budget_gb * GB), int(margin * GB))[1])
    return peaks


def samples(nerf_cfg) -> str:
    """How a ray is sampled, in words."""
    if nerf_cfg.sampler == "march":
        return f"marched, up to {nerf_cfg.max_steps} steps"
    return f"{nerf_cfg.num_steps}+{nerf_cfg.upsample_steps} samples"


def main(argv=None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--budget-gb", type=float, default=24.0)
    parser.add_argument(
        "--fit",
        default="32,64",
        help="count the renders at these two sizes and extrapolate in pixels ('none': render at full size)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    args = parser.parse_args(argv)
    fit = None if args.fit == "none" else tuple(int(s) for s in args.fit.split(","))
    report(args.overrides, args.device, args.budget_gb, fit=fit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
