"""Input elevation on the known-answer objects: the estimate, and what it buys the reconstruction.

    python benchmarks/elevation.py [--objects Android_Figure_Panda,CHICKEN_RACER,CITY_TAXI_POLICE_CAR]
        [--elevations -10,15,30,45] [--estimate-only] [--out results/elevation_bench] [--reuse]
        [--threads N] [--set k=v]

Each object's reference view is rendered from a camera at the true elevation; the oracle (3D
role) answers relative to that true camera, as a perfect Zero-1-to-3 that sees the photo would
(``oracle.reference_elevation``, never shown to the estimator), while the pipeline places its
cameras at the assumed or estimated elevation. Per object and true elevation:

    estimated   cameras.ref_elevation=auto's estimate (consistent123/priors/elevation.py)
    IoU at 0    the same object rendered level and reconstructed (the target)
    IoU fixed0  the paper's recipe, which assumes a level photo
    IoU auto    the cameras at the estimate

``--estimate-only`` runs the estimator alone (seconds per row, no reconstruction). A full grid
is 27 reconstructions; on 2 shared CPU cores a reduced one (NeRF phase only, ~5 min a run) is
``--set train.nerf_iters=200 --set train.mesh_iters=0 --set dynamic.fixed_switch_iter=100
--set train.checkpoint_every=200 --set eval.render_size=64``; add
``--set cameras.polar_range_frame=world`` to keep the novel-view polar range about the equator. Numbers come
from the oracle prior (known-answer config: config/known_answer.yaml, sized for the CPU); they
say nothing about how well a real Zero-1-to-3 estimates. The cost of ``auto`` is printed next to
a paper run's 3D-prior evaluations.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consistent123.config import Config, load_config  # noqa: E402
from consistent123.experiments.known_answer import known_answer  # noqa: E402

OBJECTS = "Android_Figure_Panda,CHICKEN_RACER,CITY_TAXI_POLICE_CAR"
HEAD = f"{'object':<22} {'true':>6} {'estimated':>9} {'|err|':>6} {'IoU at 0':>9} {'IoU fixed0':>10} {'IoU auto':>9}"


def paper_prior_evaluations() -> int:
    """The 3D prior's evaluations in a paper run: one per novel-view iteration (every iteration
    that is not the reference view's; the 2D prior's come on top after the switch)."""
    from consistent123.training.schedule import is_reference_view

    cfg = Config()
    return sum(not is_reference_view(t, cfg) for t in range(cfg.total_iters))


def estimate_only(mesh: Path, true_elevation: float, cfg: Config, out: Path) -> dict:
    from consistent123.case import load_case
    from consistent123.experiments.known_answer import (
        GROUND_TRUTH,
        caption_of,
        oracle_config,
        prepare_ground_truth,
        render_case,
    )
    from consistent123.meshes import load_mesh
    from consistent123.priors.elevation import estimate_elevation
    from consistent123.priors.oracle import OraclePrior

    gt = prepare_ground_truth(load_mesh(mesh), "z", cfg.oracle)
    render_case(gt, out, cfg, caption_of(mesh), true_elevation)
    run_cfg = oracle_config(cfg, out / GROUND_TRUTH, true_elevation)
    prior = OraclePrior.from_config(run_cfg, "cpu", "3d")
    return estimate_elevation(prior, load_case(out).rgba, run_cfg.cameras, run_cfg.elevation).as_dict()


def run(mesh: Path, out: Path, cfg: Config, true_elevation: float, reuse: bool, label: str) -> dict:
    if reuse and (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    return known_answer(
        mesh,
        out,
        cfg,
        up_axis="z",
        run_name=f"elevation/{mesh.stem}/{label}",
        tags={"variant": label, "true_elevation": str(true_elevation)},
        progress=False,
        true_elevation=true_elevation,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", default=OBJECTS)
    parser.add_argument("--elevations", default="-10,15,30,45")
    parser.add_argument("--config", default=str(REPO / "config" / "known_answer.yaml"))
    parser.add_argument("--out", default="results/elevation_bench")
    parser.add_argument("--estimate-only", action="store_true", help="the estimator alone, no reconstruction")
    parser.add_argument("--reuse", action="store_true", help="print finished runs' metrics.json instead of re-running")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    elevations = [float(e) for e in args.elevations.split(",")]
    fixed = load_config(args.config, [*args.overrides, "cameras.ref_elevation=0"])
    auto = load_config(args.config, [*args.overrides, "cameras.ref_elevation=auto"])
    rows, evaluations = [], set()
    for name in args.objects.split(","):
        mesh = REPO / "datasets" / "known_answer" / f"{name}.ply"
        root = Path(args.out) / name
        level = None
        if not args.estimate_only:
            level = run(mesh, root / "level", fixed, 0.0, args.reuse, "level")["metrics"]["volumetric_iou"]
        for e in elevations:
            tag = f"{e:+g}"
            if args.estimate_only:
                est = estimate_only(mesh, e, auto, root / f"estimate{tag}")
                estimated, iou_fixed, iou_auto = est["elevation"], None, None
                evaluations.add(est["prior_evaluations"])
            else:
                iou_fixed = run(mesh, root / f"fixed0{tag}", fixed, e, args.reuse, "fixed0")["metrics"]
                summary = run(mesh, root / f"auto{tag}", auto, e, args.reuse, "auto")
                estimated, iou_auto = summary["input_elevation"]["elevation"], summary["metrics"]["volumetric_iou"]
                iou_fixed = iou_fixed["volumetric_iou"]
                if summary["input_elevation"].get("prior_evaluations"):
                    evaluations.add(summary["input_elevation"]["prior_evaluations"])
            rows.append((name, e, estimated, level, iou_fixed, iou_auto))
            print(_row(*rows[-1]), flush=True)
    print()
    print("oracle prior (known-answer harness): not a measurement of a real Zero-1-to-3")
    print(HEAD)
    for r in rows:
        print(_row(*r))
    worst = max(abs(r[2] - r[1]) for r in rows)
    print(f"worst elevation error: {worst:.1f} deg (target <= 5)")
    if not args.estimate_only:
        gap = max(r[3] - r[5] for r in rows)
        print(f"largest IoU shortfall of auto below the level render: {gap:.3f} (target <= 0.05)")
    paper = paper_prior_evaluations()
    for n in sorted(evaluations):
        print(f"auto's prior evaluations: {n} = {100.0 * n / paper:.1f} % of a paper run's {paper} (3D prior alone)")


def _row(name, true, estimated, level, iou_fixed, iou_auto) -> str:
    def f(v, width):
        return f"{v:{width}.3f}" if v is not None else f"{'-':>{width}}"

    return (
        f"{name:<22} {true:6.1f} {estimated:9.1f} {abs(estimated - true):6.1f} {f(level, 9)} {f(iou_fixed, 10)} "
        f"{f(iou_auto, 9)}"
    )


if __name__ == "__main__":
    main()
