"""Figures of one run: the stage-1 boundary curve and the prior weights (paper Fig. 11).

``boundary.png``: CLIP score S and its moving-average change rate R over the checks, the
threshold ±delta, and t_switch marked. ``weights.png``: w3D and w2D over the iterations.
Written as PNG with matplotlib's Agg backend (no display needed), atomically.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from consistent123.errors import InputError  # noqa: E402
from consistent123.io import atomic_path, read_json  # noqa: E402
from consistent123.run_folder import RunFolder  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def read_boundary(path: str | Path) -> dict:
    path = Path(path)
    data = read_json(path, "boundary record")
    if not isinstance(data, dict) or "checks" not in data:
        raise InputError(f"{path}: not a boundary record (no 'checks')")
    return data


def boundary_figure(boundary: dict, path: str | Path, title: str = "") -> Path:
    """S and R over iterations, ±delta dotted, t_switch as a vertical line."""
    checks = boundary["checks"]
    its = [c["iteration"] for c in checks]
    fig, ax_s = plt.subplots(figsize=(6.4, 3.6))
    ax_s.plot(its, [c["S"] for c in checks], color="tab:blue", marker=".", label="S (CLIP score)")
    ax_s.set_xlabel("iteration")
    ax_s.set_ylabel("S", color="tab:blue")
    ax_r = ax_s.twinx()
    r_pts = [(c["iteration"], c["moving_average"]) for c in checks if c.get("moving_average") is not None]
    if r_pts:
        ax_r.plot(*zip(*r_pts), color="tab:orange", marker=".", label="R (moving average of change rate)")
    delta = (boundary.get("settings") or {}).get("delta")
    if delta is not None:
        for sign in (1, -1):
            ax_r.axhline(sign * delta, color="tab:orange", linestyle=":", linewidth=1)
    ax_r.set_ylabel("R", color="tab:orange")
    t_switch = boundary.get("t_switch")
    if t_switch is not None:
        label = f"t_switch = {t_switch}" + (" (forced)" if boundary.get("forced") else "")
        ax_s.axvline(t_switch, color="k", linestyle="--", label=label)
    handles = ax_s.get_legend_handles_labels()[0] + ax_r.get_legend_handles_labels()[0]
    ax_s.legend(handles=handles, loc="best", fontsize=8)
    ax_s.set_title(title or "stage-1 boundary judgement")
    return _save(fig, Path(path))


def read_schedule(path: str | Path) -> dict[str, list[float]]:
    """schedule.csv -> {"iteration": [...], "w3d": [...], "w2d": [...]} (empty cells skipped)."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise InputError(f"{path}: unreadable schedule ({exc.__class__.__name__})") from None
    if not rows or not {"iteration", "w3d", "w2d"} <= set(rows[0]):
        raise InputError(f"{path}: schedule needs columns iteration, w3d, w2d")
    out: dict[str, list[float]] = {"iteration": [], "w3d": [], "w2d": []}
    for row in rows:
        if row["w3d"] == "" or row["w2d"] == "":
            continue
        out["iteration"].append(float(row["iteration"]))
        out["w3d"].append(float(row["w3d"]))
        out["w2d"].append(float(row["w2d"]))
    return out


def weights_figure(schedule: dict[str, list[float]], path: str | Path, t_switch=None, title: str = "") -> Path:
    """w3D and w2D over the iterations (paper Fig. 11)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(schedule["iteration"], schedule["w3d"], label="w3D (Zero-1-to-3)")
    ax.plot(schedule["iteration"], schedule["w2d"], label="w2D (Stable Diffusion)")
    if t_switch is not None:
        ax.axvline(t_switch, color="k", linestyle="--", label=f"t_switch = {t_switch}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("weight")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or "prior weights")
    return _save(fig, Path(path))


def run_figures(out_dir: str | Path) -> list[Path]:
    """Both figures for a reconstruction folder (those whose inputs exist) into OUT/figures/."""
    folder = RunFolder(out_dir)
    name = folder.root.name
    written = []
    t_switch = None
    if folder.boundary.is_file():
        boundary = read_boundary(folder.boundary)
        t_switch = boundary.get("t_switch")
        written.append(boundary_figure(boundary, folder.figures / "boundary.png", name))
    if folder.schedule.is_file():
        written.append(weights_figure(read_schedule(folder.schedule), folder.figures / "weights.png", t_switch, name))
    return written
