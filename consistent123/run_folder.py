"""A reconstruction's output folder: the one place that names its files.

OUT/mesh.glb, mesh.obj (+ .mtl, texture)   the textured mesh
OUT/views/reference.png, novel_<az>.png    renders the evaluation scores
OUT/turntable.mp4 (or .gif)                the turntable
OUT/boundary.json, schedule.csv            the boundary judgement and the per-iteration plan
OUT/config.yaml, priors.json, run.json     the resolved config, the models really loaded, the MLflow run
OUT/checkpoints/last.pt, config_hash       the last state and the fingerprint it was trained under
OUT/metrics.json, figures/                 written by ``evaluate``
OUT/DONE                                   training and outputs finished
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


class RunFolder:
    CHECKPOINT = "checkpoints/last.pt"
    CONFIG_STAMP = "checkpoints/config_hash"
    RUN_RECORD = "run.json"
    PRIORS_RECORD = "priors.json"
    COST = "cost.json"
    DONE = "DONE"
    CONFIG = "config.yaml"
    BOUNDARY = "boundary.json"
    SCHEDULE = "schedule.csv"
    MESH_GLB = "mesh.glb"
    MESH_OBJ = "mesh.obj"
    VIEWS = "views"
    REFERENCE_VIEW = "views/reference.png"
    METRICS = "metrics.json"
    FIGURES = "figures"
    TURNTABLE = "turntable.mp4"
    # What a finished folder holds besides the novel views and a turntable.
    FINAL_OUTPUTS = (MESH_GLB, MESH_OBJ, BOUNDARY, SCHEDULE, CONFIG, REFERENCE_VIEW)

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def __fspath__(self) -> str:
        return str(self.root)

    @property
    def checkpoint(self) -> Path:
        return self.root / self.CHECKPOINT

    @property
    def config_stamp(self) -> Path:
        return self.root / self.CONFIG_STAMP

    @property
    def run_record(self) -> Path:
        return self.root / self.RUN_RECORD

    @property
    def priors_record(self) -> Path:
        return self.root / self.PRIORS_RECORD

    @property
    def cost(self) -> Path:
        return self.root / self.COST

    @property
    def done(self) -> Path:
        return self.root / self.DONE

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def boundary(self) -> Path:
        return self.root / self.BOUNDARY

    @property
    def schedule(self) -> Path:
        return self.root / self.SCHEDULE

    @property
    def views(self) -> Path:
        return self.root / self.VIEWS

    @property
    def reference_view(self) -> Path:
        return self.root / self.REFERENCE_VIEW

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def figures(self) -> Path:
        return self.root / self.FIGURES

    @property
    def turntable(self) -> Path:
        return self.root / self.TURNTABLE

    @staticmethod
    def novel_view_name(azimuth: float) -> str:
        return f"novel_{int(round(azimuth)):03d}.png"

    def novel_view(self, azimuth: float) -> Path:
        return self.views / self.novel_view_name(azimuth)

    def novel_views(self) -> list[Path]:
        """The novel views on disk, in azimuth order."""
        return sorted(self.views.glob("novel_*.png"))

    def mesh(self) -> Path | None:
        """The reconstruction's mesh: mesh.obj (keeps its UVs as written), else mesh.glb."""
        for name in (self.MESH_OBJ, self.MESH_GLB):
            if (self.root / name).is_file():
                return self.root / name
        return None

    def outputs_complete(self, azimuths: Iterable[float]) -> bool:
        """Every final output of a finished run is there (the novel views at ``azimuths`` too)."""
        return (
            all((self.root / name).exists() for name in self.FINAL_OUTPUTS)
            and all(self.novel_view(az).exists() for az in azimuths)
            and any(self.root.glob("turntable.*"))
        )
