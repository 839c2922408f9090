"""What a finished reconstruction leaves behind: the evaluation's views, the per-iteration
plan as CSV, the textured mesh and the turntable (``RunFolder`` names the files)."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from consistent123.images import on_white, straight_colour
from consistent123.io import atomic_path, atomic_write_text
from consistent123.render.cameras import Camera, clip_view_cameras, reference_camera, ring_cameras
from consistent123.run_folder import RunFolder
from consistent123.training.trainer import Trainer

log = logging.getLogger(__name__)


def _save_png(path: Path, rgba: torch.Tensor) -> None:
    arr = (rgba.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


@torch.no_grad()
def render_view(trainer: Trainer, cam: Camera, size: int) -> torch.Tensor:
    """Straight-alpha RGBA render of the final model (mesh when it exists), albedo shading.

    Rendered over black the colour comes out premultiplied; dividing by the opacity gives the
    straight colour a PNG stores, so compositing the file on any background is exact.
    """
    out = trainer.render(cam, size, ("albedo", 1.0, None), torch.zeros(3), perturb=False)
    alpha = out["opacity"].clamp(0, 1)
    straight = straight_colour(out["rgb"], alpha)
    return torch.cat([straight.clamp(0, 1), alpha], -1)


def write_views(trainer: Trainer, folder: RunFolder) -> list[Path]:
    """views/reference.png and views/novel_<azimuth>.png, the inputs of the evaluation."""
    cfg = trainer.cfg
    size = cfg.eval.render_size
    paths = [folder.reference_view]
    _save_png(paths[0], render_view(trainer, reference_camera(cfg.cameras), size))
    for az, cam in zip(cfg.eval.clip_views_azimuths, clip_view_cameras(cfg.eval, cfg.cameras)):
        path = folder.novel_view(az)
        _save_png(path, render_view(trainer, cam, size))
        paths.append(path)
    return paths


def write_schedule_csv(records: list[dict], path: Path) -> None:
    columns: list[str] = []
    for row in records:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(path, buf.getvalue())


def export_outputs(trainer: Trainer, out_dir: Path) -> dict[str, Path]:
    """Textured mesh (.glb and .obj) and the turntable video of the final model."""
    from consistent123.fields.unseen_fill import surface_density
    from consistent123.pipeline import export

    cfg = trainer.cfg
    if trainer.mesh is not None:
        verts, faces = trainer.mesh.get_mesh()
        color_fn = trainer.mesh.albedo
    else:
        density_fn, threshold = surface_density(trainer.nerf, cfg.dmtet, cfg.cameras)  # as the hand-over reads it
        mesh = export.extract_nerf_mesh(
            density_fn, cfg.nerf.bound, cfg.export.marching_cubes_resolution, threshold, device=trainer.device
        )
        verts = torch.as_tensor(mesh.vertices, dtype=torch.float32, device=trainer.device)
        faces = torch.as_tensor(mesh.faces, dtype=torch.int64, device=trainer.device)
        color_fn = lambda x: trainer.nerf(x)[1]  # noqa: E731  (albedo of the NeRF)
    if cfg.export.clean_up != "none" or cfg.export.min_component_face_share > 0:
        before = faces.shape[0]
        v, f = export.clean_up(verts.detach(), faces, cfg.export)
        if len(f) or not before:
            verts, faces = torch.from_numpy(v).to(trainer.device), torch.from_numpy(f).to(trainer.device)
            log.info("mesh clean-up (%s): %d faces -> %d", cfg.export.clean_up, before, len(f))
        else:  # all specks (e.g. an untrained surface): export what there is rather than nothing
            log.warning("mesh clean-up would remove all %d faces; the mesh is exported as it is", before)
    with torch.no_grad():
        uv, uv_faces, texture = export.bake_texture(
            verts.detach(),
            faces,
            color_fn,
            cfg.export.texture_size,
            device=trainer.device,
            backend=cfg.dmtet.rasteriser_backend,
        )
    paths = export.save_textured_mesh(out_dir, verts.detach(), faces, uv, uv_faces, texture, stem="mesh")
    ref = reference_camera(cfg.cameras)
    cams = ring_cameras(cfg.export.turntable_views, ref.polar, ref.radius, ref.fovy)
    size = cfg.export.turntable_size
    paths["turntable"] = export.render_turntable(
        lambda cam: on_white(render_view(trainer, cam, size)),
        cams,
        RunFolder(out_dir).turntable,
        cfg.export.turntable_fps,
    )
    return paths
