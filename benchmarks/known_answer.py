"""Known-answer benchmark: the oracle run against two runs that must do worse.

    python benchmarks/known_answer.py [--objects Android_Figure_Panda,CHICKEN_RACER,CITY_TAXI_POLICE_CAR]
        [--variants oracle,priors_off,wrong_azimuth] [--out results/known_answer_bench] [--reuse] [--threads N]
        [--set k=v]

For each scan of datasets/known_answer/ and each variant, runs ``consistent123 known-answer``
(config/known_answer.yaml) and prints CD, IoU, mv_psnr, mv_lpips and the reconstruction time,
then the mean over objects per variant:

    oracle         the oracle in both prior roles (the measurement)
    priors_off     the reference view alone (train.use_priors=false): what one image gives
    wrong_azimuth  the oracle's 3D role handed the azimuth difference with the wrong sign
                   (oracle.flip_azimuth=true): a pose-convention error the benchmark must catch

The oracle run must beat both by a wide margin. ``--reuse`` prints a finished run's
metrics.json instead of running it again (its time is the one recorded then).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consistent123.config import load_config  # noqa: E402
from consistent123.experiments.known_answer import known_answer  # noqa: E402

OBJECTS = "Android_Figure_Panda,CHICKEN_RACER,CITY_TAXI_POLICE_CAR"
VARIANTS = {"oracle": [], "priors_off": ["train.use_priors=false"], "wrong_azimuth": ["oracle.flip_azimuth=true"]}
COLUMNS = ("chamfer_distance", "volumetric_iou", "mv_psnr", "mv_lpips", "time_s")
HEAD = f"{'object':<22} {'variant':<14} {'CD':>8} {'IoU':>6} {'mvPSNR':>7} {'mvLPIPS':>8} {'time_s':>7}"


def row(name: str, variant: str, m: dict) -> str:
    return (
        f"{name:<22} {variant:<14} {m['chamfer_distance']:8.4f} {m['volumetric_iou']:6.3f} {m['mv_psnr']:7.2f} "
        f"{m['mv_lpips']:8.4f} {m['time_s']:7.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", default=OBJECTS)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--config", default=str(REPO / "config" / "known_answer.yaml"))
    parser.add_argument("--out", default="results/known_answer_bench")
    parser.add_argument("--reuse", action="store_true", help="print finished runs' metrics.json instead of re-running")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (1 is much faster than 2 on a machine shared with other jobs)",
    )
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)} (choose from {', '.join(VARIANTS)})")
    results: dict[str, dict[str, dict]] = {v: {} for v in variants}
    for name in args.objects.split(","):
        mesh = REPO / "datasets" / "known_answer" / f"{name}.ply"
        for variant in variants:
            out = Path(args.out) / variant / name
            if args.reuse and (out / "metrics.json").is_file():
                metrics = json.loads((out / "metrics.json").read_text())["metrics"]
            else:
                cfg = load_config(args.config, [*args.overrides, *VARIANTS[variant]])
                metrics = known_answer(
                    mesh,
                    out,
                    cfg,
                    up_axis="z",
                    run_name=f"known_answer/{name}/{variant}",
                    tags={"variant": variant},
                    progress=False,
                )["metrics"]
            results[variant][name] = metrics
            print(row(name, variant, metrics), flush=True)
    print()
    print(HEAD)
    for variant in variants:
        for name, m in results[variant].items():
            print(row(name, variant, m))
    for variant in variants:
        done = list(results[variant].values())
        mean = {k: sum(m[k] for m in done) / len(done) for k in COLUMNS}
        print(row(f"MEAN ({len(done)} objects)", variant, mean))


if __name__ == "__main__":
    main()
