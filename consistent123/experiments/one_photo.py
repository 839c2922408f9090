"""One photo, start to finish (``consistent123 run PHOTO --out DIR``):

    DIR/case/       preprocess: rgba.png, depth.png, caption.txt, preprocess.json
    DIR/run/        reconstruct: mesh.glb, mesh.obj, turntable, views/, run.json, priors.json, ...
                    then the reference-view evaluation: metrics.json (PSNR/LPIPS against the
                    input, CLIP-similarity of the novel views), figures/
    DIR/index.html  one self-contained page: the mesh in a 3D viewer, turntable, views, metrics
    DIR/mlflow.db   the MLflow store (unless tracking.uri is configured), with DIR/mlartifacts/

The models come from the config through the same registry the workflow uses. Real weights that
are not on this machine stop the run before any work, in one line (``check_weights``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from consistent123.config import Config
from consistent123.errors import ModelUnavailableError
from consistent123.io import atomic_write_text

log = logging.getLogger(__name__)

CASE, RUN, PAGE, STORE = "case", "run", "index.html", "mlflow.db"
# Every part one photo needs: preprocessing, both priors and the judge, the metrics.
PARTS = ("captioner", "segmenter", "depth", "zero123", "stable_diffusion", "clip_judge", "clip_metric", "lpips")


@dataclass
class OnePhotoResult:
    case_dir: Path
    run_dir: Path
    page: Path
    metrics: dict
    priors: str


def demo_config_path() -> Path:
    """The CPU demo's method settings, shipped inside the package (consistent123/configs/demo.yaml)."""
    from importlib.resources import files

    return Path(str(files("consistent123") / "configs" / "demo.yaml"))


def with_local_store(cfg: Config, out_dir: Path) -> Config:
    """The MLflow store in DIR unless the config names one: a run leaves nothing where it was started."""
    if "uri" in cfg.tracking.model_fields_set:
        return cfg
    cfg = cfg.model_copy(deep=True)
    cfg.tracking.uri = f"sqlite:///{(out_dir / STORE).resolve()}"
    return cfg


def check_weights(cfg: Config) -> None:
    """Stop at once, without touching the network, when a real model is not on this machine."""
    if cfg.models.tiny_models_dir() is not None:
        return
    from consistent123.priors.fetch import missing_from_cache

    parts = [p for p in PARTS if not (p == "lpips" and cfg.eval.lpips_random_backbone)]
    # The CLIP names are resolved through open_clip, seconds to import: checked only when the
    # rest is here, so a machine without any weights hears so at once.
    missing = missing_from_cache(cfg, [p for p in parts if not p.startswith("clip")])
    unchecked = " (the CLIP models not checked yet)" if missing else ""
    missing = missing or missing_from_cache(cfg, [p for p in parts if p.startswith("clip")])
    if missing:
        raise ModelUnavailableError(
            f"no weights on this machine for {len(missing)} model(s){unchecked}: {', '.join(missing)}; run "
            "`consistent123 fetch-models` on a connected machine (same cache), or pass --demo for the "
            "random-weight demo priors"
        )


def run_one_photo(
    photo: str | Path,
    out_dir: str | Path,
    cfg: Config,
    caption: Optional[str] = None,
    progress: bool = True,
) -> OnePhotoResult:
    from consistent123.pipeline.reconstruct import reconstruct
    from consistent123.preprocess.pipeline import preprocess_image
    from eval.evaluate import evaluate_run
    from eval.run_page import run_page

    photo, out_dir = Path(photo), Path(out_dir)
    check_weights(cfg)
    tiny_dir = cfg.models.tiny_models_dir()
    if tiny_dir is not None:  # said before any work, not at the first load minutes later
        from consistent123.priors.provenance import note_stand_in

        note_stand_in("random-weight", "tiny models", str(tiny_dir))
    cfg = with_local_store(cfg, out_dir)
    case_dir, run_dir = out_dir / CASE, out_dir / RUN
    log.info("1/4 preprocess %s -> %s", photo, case_dir)
    preprocess_image(photo, case_dir, cfg, caption=caption)
    log.info("2/4 reconstruct -> %s", run_dir)
    reconstruct(case_dir, run_dir, cfg, run_name=photo.stem, tags={"benchmark": "photo"}, progress=progress)
    log.info("3/4 reference-view evaluation -> %s", run_dir / "metrics.json")
    record = evaluate_run(run_dir, case_dir, cfg, progress=progress)
    page = out_dir / PAGE
    log.info("4/4 page -> %s", page)
    title = f"{photo.name}: Consistent123 reconstruction"
    atomic_write_text(page, run_page(run_dir, title, case_dir / "rgba.png", f"input: {photo.name}, preprocessed"))
    return OnePhotoResult(case_dir, run_dir, page, record["metrics"], record["priors"]["priors"])
