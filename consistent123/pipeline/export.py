"""Export: NeRF -> mesh (marching cubes), texture baking, .glb/.obj files, turntable video.

The baked texture follows the OBJ / glTF convention that trimesh reads and writes: uv in
[0,1]^2 with v = 0 at the image's bottom row. Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from consistent123.config import ExportConfig
from consistent123.io import atomic_path
from consistent123.render.cameras import Camera


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ---------------------------------------------------------------- NeRF -> mesh
@torch.no_grad()
def extract_nerf_mesh(
    density_fn: Callable[[torch.Tensor], torch.Tensor],
    bound: float,
    resolution: int,
    threshold: float,
    device="cpu",
    chunk: int = 1 << 18,
):
    """Marching cubes of ``density_fn(points[N,3]) -> sigma[N]`` over [-bound, bound]^3.

    Raises ValueError when no part of the grid crosses ``threshold`` (empty or full field).
    """
    import trimesh

    from consistent123.fields.density_grid import density_grid, lattice_surface

    sigma = density_grid(density_fn, bound, resolution, device=device, chunk=chunk, progress=True)
    if not (sigma.min() < threshold < sigma.max()):
        raise ValueError(
            f"marching cubes: density range [{sigma.min():.4g}, {sigma.max():.4g}] does not cross "
            f"the threshold {threshold}: no surface to extract"
        )
    verts, faces = lattice_surface(sigma, bound, threshold)
    # mcubes winds triangles for "inside = above the level" the other way round: face outwards.
    mesh = trimesh.Trimesh(verts, faces[:, ::-1], process=True)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


# ---------------------------------------------------------------- texture baking
def clean_mesh(verts: np.ndarray, faces: np.ndarray, min_diag_percent: float, min_faces: int):
    """(verts, faces) without unreferenced vertices, duplicate or zero-area faces and small pieces.

    A piece (faces connected through shared edges) is dropped when the diagonal of its bounding
    box is under ``min_diag_percent`` % of the whole mesh's or it has fewer than ``min_faces``
    faces, as the authors' pymeshlab clean-up does: stray specks of a DMTet surface would
    otherwise be textured, exported and counted by every geometry metric.
    """
    import trimesh

    mesh = trimesh.Trimesh(_numpy(verts), _numpy(faces), process=False)
    mesh.update_faces(mesh.unique_faces() & mesh.nondegenerate_faces())
    diag = np.linalg.norm(np.ptp(mesh.vertices[mesh.faces].reshape(-1, 3), axis=0)) if len(mesh.faces) else 0.0

    def keep(piece):
        corners = mesh.vertices[mesh.faces[piece]].reshape(-1, 3)
        return len(piece) >= min_faces and np.linalg.norm(np.ptp(corners, axis=0)) >= diag * min_diag_percent / 100

    return _keep_pieces(mesh, keep)


def _keep_pieces(mesh, keep: Callable[[np.ndarray], bool]):
    """(verts, faces) of ``mesh`` with only the pieces (faces connected through shared edges, given
    as face indices) that ``keep`` accepts, and without unreferenced vertices."""
    import trimesh

    if len(mesh.faces):
        pieces = trimesh.graph.connected_components(mesh.face_adjacency, nodes=np.arange(len(mesh.faces)))
        kept = np.zeros(len(mesh.faces), dtype=bool)
        for piece in pieces:
            kept[piece] = keep(piece)
        mesh.update_faces(kept)
    mesh.remove_unreferenced_vertices()
    return mesh.vertices.astype(np.float32), mesh.faces.astype(np.int64)


def meshlab_clean_mesh(verts: np.ndarray, faces: np.ndarray, export_cfg: ExportConfig):
    """(verts, faces) after the authors' pymeshlab clean-up and decimation (``export.clean_up``
    "meshlab": meshutils.clean_mesh with repair and remeshing, then decimate_mesh)."""
    import pymeshlab as pml

    cfg = export_cfg
    ms = pml.MeshSet()
    ms.add_mesh(pml.Mesh(_numpy(verts).astype(np.float64), _numpy(faces).astype(np.int32)))
    ms.meshing_remove_unreferenced_vertices()
    if cfg.clean_merge_percent > 0:
        ms.meshing_merge_close_vertices(threshold=pml.PercentageValue(cfg.clean_merge_percent))
    ms.meshing_remove_duplicate_faces()
    ms.meshing_remove_null_faces()
    if cfg.clean_min_component_diag_percent > 0:
        ms.meshing_remove_connected_component_by_diameter(
            mincomponentdiag=pml.PercentageValue(cfg.clean_min_component_diag_percent)
        )
    if cfg.clean_min_component_faces > 0:
        ms.meshing_remove_connected_component_by_face_number(mincomponentsize=cfg.clean_min_component_faces)
    ms.meshing_repair_non_manifold_edges(method=0)
    ms.meshing_repair_non_manifold_vertices(vertdispratio=0)
    if cfg.clean_remesh_size > 0:
        ms.meshing_isotropic_explicit_remeshing(
            iterations=cfg.clean_remesh_iterations, targetlen=pml.PureValue(cfg.clean_remesh_size)
        )
    if 0 < cfg.decimate_target < ms.current_mesh().face_number():
        ms.meshing_decimation_quadric_edge_collapse(targetfacenum=cfg.decimate_target, optimalplacement=True)
    mesh = ms.current_mesh()
    return mesh.vertex_matrix().astype(np.float32), mesh.face_matrix().astype(np.int64)


def drop_small_pieces(verts: np.ndarray, faces: np.ndarray, min_face_share: float):
    """(verts, faces) without the connected pieces that hold under ``min_face_share`` of the faces
    (threestudio's ``isosurface_remove_outliers``, 0.01): floaters far from the object can span
    more than the authors' 5 % of the diagonal, since they stretch the diagonal themselves."""
    import trimesh

    mesh = trimesh.Trimesh(_numpy(verts), _numpy(faces), process=False)
    if min_face_share <= 0:
        return mesh.vertices.astype(np.float32), mesh.faces.astype(np.int64)
    total = len(mesh.faces)
    return _keep_pieces(mesh, lambda piece: len(piece) >= min_face_share * total)


def clean_up(verts, faces, export_cfg: ExportConfig):
    """(verts, faces) after ``export.clean_up`` ("meshlab", "light" (clean_mesh) or "none"), then
    without pieces under ``export.min_component_face_share`` of the faces."""
    if export_cfg.clean_up == "meshlab":
        verts, faces = meshlab_clean_mesh(verts, faces, export_cfg)
    elif export_cfg.clean_up == "light":
        verts, faces = clean_mesh(
            verts, faces, export_cfg.clean_min_component_diag_percent, export_cfg.clean_min_component_faces
        )
    return drop_small_pieces(verts, faces, export_cfg.min_component_face_share)


def _fill_gutters(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Give every empty texel the colour of its nearest covered texel, so bilinear lookups and
    mipmaps near chart borders never pick up the background."""
    from scipy import ndimage

    if covered.all() or not covered.any():
        return image
    _, (rows, cols) = ndimage.distance_transform_edt(~covered, return_indices=True)
    return image[rows, cols]


@torch.no_grad()
def bake_texture(
    verts,
    faces,
    color_fn: Callable[[torch.Tensor], torch.Tensor],
    texture_size: int,
    device=None,
    backend: str = "auto",
):
    """UV-unwrap with xatlas and bake ``color_fn(points[N,3]) -> rgb[N,3] in [0,1]``.

    ``color_fn`` is called on ``device`` (default: where ``verts`` live, i.e. the field's device)
    with the rasteriser ``backend`` resolved there (consistent123.backends).

    Returns (uv [Vt,2] float32, uv_faces [F,3] int64, texture [S,S,3] float32 in [0,1]) as
    numpy arrays; uv_faces index uv and correspond face by face to ``faces``.
    """
    import xatlas

    from consistent123.render.rasterize import make_rasteriser

    if device is None:
        device = verts.device if isinstance(verts, torch.Tensor) else "cpu"
    v = _numpy(verts).astype(np.float32)
    f = _numpy(faces).astype(np.uint32)
    vmapping, uv_faces, uv = xatlas.parametrize(v, f)
    uv = uv.astype(np.float32)
    uv_faces = uv_faces.astype(np.int64)
    # Rasterise the UV layout: clip = (2u - 1, 2v - 1, 0, 1); row 0 of the result is v = 0.
    r = make_rasteriser(backend, device)
    uv_t = torch.from_numpy(uv).to(device)
    clip = torch.cat([uv_t * 2 - 1, torch.zeros_like(uv_t[:, :1]), torch.ones_like(uv_t[:, :1])], -1)
    uvf = torch.from_numpy(uv_faces).to(device)
    rast, _ = r.rasterize(clip.unsqueeze(0), uvf, texture_size, texture_size)
    pos3d = torch.from_numpy(v[vmapping.astype(np.int64)]).to(device)
    points, _ = r.interpolate(pos3d.unsqueeze(0), rast, uvf)
    covered = rast[0, ..., 3] > 0
    image = torch.zeros(texture_size, texture_size, 3, device=device)
    if bool(covered.any()):
        image[covered] = color_fn(points[0][covered]).float().clamp(0, 1)
    image = np.flip(image.cpu().numpy(), 0)  # image row 0 is the top: v = 1
    covered = np.flip(covered.cpu().numpy(), 0)
    return uv, uv_faces, np.ascontiguousarray(_fill_gutters(image, covered)).astype(np.float32)


# ---------------------------------------------------------------- files
def _to_uint8(texture) -> np.ndarray:
    t = _numpy(texture)
    if t.dtype != np.uint8:
        t = (np.clip(t, 0, 1) * 255 + 0.5).astype(np.uint8)
    return t[..., :3]


def textured_trimesh(verts, faces, uv, uv_faces, texture):
    """A trimesh with one (vertex, uv) pair per mesh vertex, as glTF and trimesh require."""
    import trimesh

    v, f = _numpy(verts).astype(np.float64), _numpy(faces).astype(np.int64)
    uv, uvf = _numpy(uv).astype(np.float64), _numpy(uv_faces).astype(np.int64)
    corners = np.stack([f.reshape(-1), uvf.reshape(-1)], -1)
    pairs, inverse = np.unique(corners, axis=0, return_inverse=True)
    image = Image.fromarray(_to_uint8(texture))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image, metallicFactor=0.0, roughnessFactor=1.0)
    visual = trimesh.visual.TextureVisuals(uv=uv[pairs[:, 1]], image=image, material=material)
    return trimesh.Trimesh(v[pairs[:, 0]], inverse.reshape(-1, 3), visual=visual, process=False)


def save_textured_mesh(out_dir, verts, faces, uv, uv_faces, texture, stem: str = "mesh") -> dict:
    """Write ``{stem}.glb`` and ``{stem}.obj`` + ``{stem}.mtl`` + ``{stem}_albedo.png``.

    Returns {"glb", "obj", "mtl", "texture"} -> Path. Each file appears only when complete.
    """
    from trimesh.exchange.obj import export_obj

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mesh = textured_trimesh(verts, faces, uv, uv_faces, texture)
    paths = {
        k: out_dir / n
        for k, n in (
            ("glb", f"{stem}.glb"),
            ("obj", f"{stem}.obj"),
            ("mtl", f"{stem}.mtl"),
            ("texture", f"{stem}_albedo.png"),
        )
    }
    # OBJ side: write our own texture name into the material trimesh generates.
    obj_text, files = export_obj(
        mesh, include_normals=False, include_texture=True, return_texture=True, mtl_name=paths["mtl"].name
    )
    mtl_text = files[paths["mtl"].name].decode()
    for name in list(files):
        if name != paths["mtl"].name:
            mtl_text = mtl_text.replace(name, paths["texture"].name)
    with atomic_path(paths["texture"]) as tmp:
        Image.fromarray(_to_uint8(texture)).save(tmp, format="PNG")
    with atomic_path(paths["mtl"]) as tmp:
        tmp.write_text(mtl_text)
    with atomic_path(paths["obj"]) as tmp:
        tmp.write_text(obj_text)
    with atomic_path(paths["glb"]) as tmp:
        tmp.write_bytes(mesh.export(file_type="glb"))
    return paths


# ---------------------------------------------------------------- turntable
def ffmpeg_available() -> bool:
    try:
        import imageio_ffmpeg

        return Path(imageio_ffmpeg.get_ffmpeg_exe()).exists()
    except Exception:
        return False


def _frame(image) -> np.ndarray:
    a = _numpy(image)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    return a[..., :3]


def render_turntable(render_fn: Callable[[Camera], object], cams: Sequence[Camera], path, fps: int) -> Path:
    """Render ``render_fn(cam) -> image [H,W,3]`` (float in [0,1] or uint8) for each camera and
    write an mp4 (H.264 via imageio-ffmpeg); without ffmpeg write a gif next to ``path`` instead.
    Returns the path written."""
    import imageio.v2 as imageio

    path = Path(path)
    use_mp4 = path.suffix.lower() == ".mp4" and ffmpeg_available()
    if not use_mp4:
        path = path.with_suffix(".gif")
    with atomic_path(path) as tmp:
        if use_mp4:
            # Even sizes for yuv420p; macro_block_size=1 stops imageio from resizing frames.
            writer = imageio.get_writer(
                tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=1
            )
        else:
            writer = imageio.get_writer(tmp, format="GIF", mode="I", duration=1000.0 / fps, loop=0)
        try:
            for cam in tqdm(cams, desc=f"turntable {path.name}", leave=False):
                frame = _frame(render_fn(cam))
                if use_mp4:
                    frame = frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
                writer.append_data(frame)
        finally:
            writer.close()
    return path
