"""The mesh phase again, from a finished known-answer run's NeRF: what does the mesh phase add?

A known-answer run keeps its final checkpoint (``run/checkpoints/last.pt``), and the NeRF in it is
the NeRF at the end of the NeRF phase (the mesh phase trains a DMTet built from a copy of it). So
every mesh-phase setting (the tet grid, its render size, the SDF hand-over threshold, the mesh
phase's length) can be compared on the same NeRF, in a fraction of a whole run:

    DIR/case/  DIR/run/   a finished ``consistent123 known-answer`` folder (the source)
    OUT/run/              the mesh phase of ``run/config.yaml`` + overrides, exported and evaluated
    OUT/metrics.json      chamfer_distance, volumetric_iou, mv_psnr, ..., cavity_filled (hard shapes)
    OUT/cross_section.png, OUT/top_down.png

``nerf_only=True`` exports the NeRF itself (marching cubes at ``export.marching_cubes_resolution``,
at the hand-over's threshold, ``dmtet.init_density_rule``): its starting point, scored the same way.
``benchmarks/mesh_probe.py`` prints one row per setting.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from consistent123.config import Config, load_config
from consistent123.io import atomic_write_json


def source_config(source: Path, overrides: list[str]) -> Config:
    """The source run's own config, its oracle pointed at the source's truth, plus ``overrides``."""
    from consistent123.experiments.known_answer import GROUND_TRUTH

    return load_config(source / "run" / "config.yaml", [f"oracle.mesh={source / 'case' / GROUND_TRUTH}", *overrides])


def mesh_phase_again(source: str | Path, out: str | Path, overrides: list[str], nerf_only: bool = False) -> dict:
    """Train the mesh phase of ``source``'s config + ``overrides`` from its NeRF; the metrics."""
    from tqdm.auto import tqdm

    from consistent123.case import load_case
    from consistent123.device import resolve_device
    from consistent123.experiments.known_answer import GROUND_TRUTH, HEADLINE, load_source, write_geometry_views
    from consistent123.pipeline.outputs import export_outputs, write_views
    from consistent123.priors.registry import load_priors
    from consistent123.run_folder import RunFolder
    from consistent123.training.schedule import plan
    from consistent123.training.trainer import Trainer
    from eval.evaluate import evaluate_run, prediction_mesh_path

    source, out = Path(source), Path(out)
    cfg = source_config(source, [*overrides, *(["train.mesh_iters=0"] if nerf_only else [])])
    case_dir, run_dir = source / "case", out / "run"
    device = resolve_device(cfg.train.device)
    trainer = Trainer(cfg, load_case(case_dir), load_priors(cfg, device), device)
    # Read without the fingerprint check on purpose: the overrides change the mesh phase only.
    state = torch.load(source / "run" / "checkpoints" / "last.pt", map_location=device, weights_only=True)
    trainer.nerf.load_state_dict(state["nerf"])  # the NeRF as the NeRF phase left it
    if state.get("nerf_average") is not None and trainer.nerf_average is not None:
        trainer.nerf_average.load_state_dict(state["nerf_average"])  # its average, for the hand-over
    else:  # a source trained without the average hands over its last weights
        trainer.nerf_average = None
    trainer.t_switch = state["t_switch"]
    trainer.judge.load_state(state["judge"])
    trainer.iteration = cfg.train.nerf_iters
    # The blob as the hand-over reads it (a faded blob stays faded), also for ``nerf_only``, which
    # takes no step; a throwaway generator leaves the run's own draws as they were.
    trainer.nerf.blob_scale = plan(trainer.iteration, cfg, trainer.t_switch, torch.Generator()).blob_scale
    start = time.perf_counter()
    for _ in tqdm(range(trainer.iteration, cfg.total_iters), desc="mesh phase", dynamic_ncols=True):
        trainer.step()
    seconds = time.perf_counter() - start
    run_dir.mkdir(parents=True, exist_ok=True)
    write_views(trainer, RunFolder(run_dir))
    export_outputs(trainer, run_dir)
    record = evaluate_run(run_dir, case_dir, cfg, gt_mesh=case_dir / GROUND_TRUTH, log_mlflow=False, progress=False)
    metrics = {k: record["metrics"][k] for k in HEADLINE}
    metrics["time_s"] = seconds
    built = load_source(state_mesh_spec(source))[2]
    metrics.update(
        write_geometry_views(case_dir / GROUND_TRUTH, prediction_mesh_path(RunFolder(run_dir)), out, cfg, built)
    )
    summary = {"metrics": metrics, "source": str(source), "overrides": overrides, "nerf_only": nerf_only}
    atomic_write_json(out / "metrics.json", summary)
    return summary


def state_mesh_spec(source: Path) -> str:
    """What the source run measured (``hard:cup``, a mesh file), from its metrics.json."""
    import json

    return json.loads((source / "metrics.json").read_text())["mesh"]
