"""Any method's meshes scored like ours: one mesh per case in a folder (named by case; GLB, OBJ
or PLY), each aligned to its ground truth and scored under the configured protocol.

Each case gets ``OUT/<case>/metrics.json`` in the format ``consistent123 evaluate`` writes (so
``eval/aggregate.py`` reads it), tagged ``method=<NAME>``, ``supplied=user``, ``protocol``,
``benchmark`` and ``case``; ``OUT/runs.csv`` holds all rows. ``consistent123 tables --supplied
OUT`` puts them in Table 2 as extra rows named by method, marked "supplied by the user".
Only the geometry and the 18 views are scored: a supplied mesh has no reference-view render
or run of ours behind it.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Optional

import pandas as pd

from consistent123.config import Config
from consistent123.errors import InputError
from consistent123.io import atomic_write_json, check_writable

log = logging.getLogger(__name__)

MESH_SUFFIXES = (".glb", ".obj", ".ply")
SUPPLIED = "user"  # the `supplied` tag of these rows (eval/aggregate.py)
# The `priors` tag: not our priors, so never compared with the paper; "+random" when the view
# metrics ran LPIPS on a random-weight trunk (eval.lpips_random_backbone), so the table says so.
PRIORS = "supplied"


def find_meshes(mesh_dir: Path) -> dict[str, Path]:
    """case -> mesh file; two files for one case is an error (which one would be scored?)."""
    if not mesh_dir.is_dir():
        raise InputError(f"{mesh_dir}: mesh folder not found")
    found: dict[str, Path] = {}
    for path in sorted(mesh_dir.iterdir()):
        if path.is_file() and path.suffix.lower() in MESH_SUFFIXES:
            if path.stem in found:
                raise InputError(
                    f"{mesh_dir}: two meshes for case {path.stem!r} ({found[path.stem].name}, {path.name})"
                )
            found[path.stem] = path
    if not found:
        raise InputError(f"{mesh_dir}: no mesh (GLB, OBJ or PLY) in the folder")
    return found


def manifest_models(manifest: Path) -> dict[str, Optional[str]]:
    """case -> ground-truth model name: the manifest's ``gt_mesh`` (None where it is empty: the
    case's model is unknown, datasets/README.md), or the case itself when there is no such column."""
    if not manifest.is_file():
        raise InputError(f"{manifest}: manifest not found")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "case" not in rows[0]:
        raise InputError(f"{manifest}: not a manifest (no 'case' column)")
    if "gt_mesh" not in rows[0]:
        return {row["case"]: row["case"] for row in rows}
    return {row["case"]: (row["gt_mesh"] or None) for row in rows}


def ground_truth_path(pattern: str, case: str, model: str) -> Path:
    """``pattern`` with ``{case}`` and ``{model}`` filled in."""
    return Path(pattern.format(case=case, model=model))


def evaluate_mesh_folder(
    mesh_dir: str | Path,
    out_dir: str | Path,
    method: str,
    cfg: Config,
    gt_pattern: str,
    manifest: str | Path,
    benchmark: str = "gso",
    lpips_metric=None,
    progress: bool = False,
) -> pd.DataFrame:
    """Score every mesh of ``mesh_dir`` whose case is in ``manifest``; one row per case."""
    from consistent123.meshes import load_mesh
    from eval import aggregate
    from eval.evaluate import metrics_of_geometry
    from eval.image_metrics import load_lpips

    mesh_dir, out_dir, manifest = Path(mesh_dir), Path(out_dir), Path(manifest)
    if not method or "/" in method:
        raise InputError(f"--method {method!r}: give the method's name (no '/')")
    meshes = find_meshes(mesh_dir)
    models = manifest_models(manifest)
    unknown = sorted(set(meshes) - set(models))
    if unknown:
        raise InputError(f"{mesh_dir}: meshes for cases not in {manifest}: {', '.join(unknown)}")
    missing = sorted(set(models) - set(meshes))
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
        log.warning("%d case(s) of %s have no mesh in %s: %s", len(missing), manifest, mesh_dir, shown)
    unmapped = sorted(case for case in meshes if models[case] is None)
    if unmapped:
        log.warning("no known ground-truth model in %s, not scored: %s", manifest, ", ".join(unmapped))
        meshes = {case: path for case, path in meshes.items() if models[case] is not None}
    if not meshes:
        raise InputError(f"{mesh_dir}: no mesh of a case with a known ground truth in {manifest}")
    # Every ground truth must exist before anything is scored or written.
    gts = {case: ground_truth_path(gt_pattern, case, models[case]) for case in meshes}
    absent = [str(p) for p in gts.values() if not p.is_file()]
    if absent:
        raise InputError(f"ground-truth mesh not found: {', '.join(absent)}")
    check_writable(out_dir)
    if lpips_metric is None:
        lpips_metric = load_lpips(cfg.eval.lpips_net, "cpu", cfg.eval.lpips_random_backbone)

    priors = PRIORS + ("+random" if lpips_metric.random_backbone else "")
    paths = []
    for case, mesh_path in sorted(meshes.items()):
        gt, pred = load_mesh(gts[case]), load_mesh(mesh_path)
        details: dict = {}
        if cfg.eval.align:  # a supplied mesh is in its own method's frame
            from eval.alignment import align_to

            pred, details["alignment"] = align_to(gt, pred, cfg.eval)
        else:
            details["alignment"] = {"enabled": False}
        metrics: dict = {}
        metrics_of_geometry(gt, pred, cfg, lpips_metric, metrics, details, progress)
        tags = {
            "benchmark": benchmark,
            "case": case,
            "method": method,
            "variant": "default",
            "supplied": SUPPLIED,
            "priors": priors,
            "protocol": cfg.eval.protocol,
        }
        record = {
            "metrics": metrics,
            "tags": tags,
            "priors": {"priors": priors, "lpips": lpips_metric.name},
            "run": {"run_id": f"supplied:{method}:{case}"},
            "details": details,
            "inputs": {"mesh": str(mesh_path), "gt_mesh": str(gts[case]), "manifest": str(manifest)},
        }
        paths.append(atomic_write_json(out_dir / case / "metrics.json", record))
        log.info("%s/%s: %s", method, case, {k: round(v, 4) for k, v in metrics.items()})
    runs = aggregate.runs_from_files(paths)
    aggregate.save_table(runs, out_dir / "runs")
    return runs


def default_manifest(protocol_objects: str, repository_root: Optional[Path] = None) -> Path:
    """The protocol's object list (eval/protocols.py), relative to the repository root."""
    root = repository_root or Path(__file__).resolve().parents[1]
    return root / protocol_objects
