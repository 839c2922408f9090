"""Reference-view fit with both priors switched off: a quality check of the renderer + losses.

    python perf/reference_fit.py --cases banana,bird,cactus [--size 128] [--iters 600]

Fits each RealFusion15 case's reference view (rgb, mask, depth losses only) at SIZE x SIZE
and prints one line per case, then `mean_ref_psnr <dB>`. PSNR is the evaluation's own
implementation, on a white background, against the input composited on white.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consistent123.case import load_case  # noqa: E402
from consistent123.config import load_config  # noqa: E402
from consistent123.priors.base import Priors  # noqa: E402
from consistent123.render.cameras import reference_camera  # noqa: E402
from consistent123.testing import make_case  # noqa: E402
from consistent123.training.trainer import Trainer  # noqa: E402
from eval.image_metrics import psnr  # noqa: E402


def fit_case(name: str, size: int, iters: int, overrides: list[str]) -> tuple[float, float, int]:
    cfg = load_config(
        None,
        [
            f"nerf.render_size={size}",
            "nerf.ref_render_scale=1.0",
            f"train.nerf_iters={iters}",
            "train.mesh_iters=0",
            "train.use_priors=false",
            "train.checkpoint_every=0",
            "hashgrid.backend=torch",
            *overrides,
        ],
    )
    with tempfile.TemporaryDirectory() as tmp:
        case = load_case(make_case(Path(tmp), name))
    trainer = Trainer(cfg, case, Priors(), torch.device("cpu"))
    start = time.perf_counter()
    trainer.fit(progress=True)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        out = trainer.render(
            reference_camera(cfg.cameras),
            size,
            ("albedo", 1.0, torch.tensor([0.0, 0.0, 1.0])),
            torch.ones(3),
            perturb=False,
        )
    target = case.targets(size, torch.ones(3), cfg.loss.reference_targets)["rgb"]
    return psnr(out["rgb"].clamp(0, 1).cpu().numpy(), target.numpy()), seconds, iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="banana,bird,cactus")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    values = []
    for name in args.cases.split(","):
        value, seconds, iters = fit_case(name, args.size, args.iters, args.overrides)
        values.append(value)
        print(
            f"{name} ref_psnr {value:.2f} dB  {iters} iterations  {seconds:.0f} s  ({seconds / iters:.2f} s/it)",
            flush=True,
        )
    print(f"mean_ref_psnr {sum(values) / len(values):.2f}")


if __name__ == "__main__":
    main()
