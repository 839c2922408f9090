"""Export: marching cubes, texture baking, .glb / .obj round trips, turntable video."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from consistent123.meshes import load_textured_mesh
from consistent123.pipeline.export import (
    bake_texture,
    clean_mesh,
    extract_nerf_mesh,
    render_turntable,
    save_textured_mesh,
)
from consistent123.render.cameras import ring_cameras
from consistent123.render.rasterize import render_mesh
from consistent123.testing import RF15


def _blob(points):
    return 30.0 * torch.exp(-(points**2).sum(-1) / (2 * 0.35**2))


def test_marching_cubes_of_a_density_blob():
    mesh = extract_nerf_mesh(_blob, bound=1.0, resolution=48, threshold=10.0)
    radius = 0.35 * np.sqrt(2 * np.log(3.0))
    r = np.linalg.norm(mesh.vertices, axis=1)
    assert mesh.is_watertight and mesh.volume > 0
    assert np.abs(r - radius).max() < 2.0 / 47
    with pytest.raises(ValueError, match="threshold"):
        extract_nerf_mesh(lambda p: torch.zeros(p.shape[0]), 1.0, 8, 10.0)


def _colour_of_position(points):
    return (points * 0.8 + 0.5).clamp(0, 1)


def test_clean_up_drops_specks_and_keeps_every_real_piece():
    body = trimesh.creation.icosphere(subdivisions=3)
    second = trimesh.creation.icosphere(subdivisions=2, radius=0.4).apply_translation([1.6, 0, 0])
    speck = trimesh.creation.icosphere(subdivisions=1, radius=0.02).apply_translation([0, 1.5, 0])  # 80 faces, tiny
    sliver = trimesh.Trimesh([[0, 0, 2.5], [2, 0, 2.5], [0, 2, 2.5]], [[0, 1, 2]])  # large but one face
    mesh = trimesh.util.concatenate([body, second, speck, sliver])
    faces = np.concatenate([mesh.faces, mesh.faces[:5], [[0, 0, 1]]])  # duplicates and a zero-area face

    verts, kept = clean_mesh(mesh.vertices, faces, min_diag_percent=5.0, min_faces=8)

    assert len(kept) == len(body.faces) + len(second.faces)
    assert len(verts) == len(body.vertices) + len(second.vertices)  # unreferenced vertices gone
    cleaned = trimesh.Trimesh(verts, kept)
    assert len(cleaned.split(only_watertight=False)) == 2 and cleaned.is_watertight
    # Without the thresholds only the duplicate and zero-area faces go.
    assert len(clean_mesh(mesh.vertices, faces, 0.0, 0)[1]) == len(mesh.faces)


def test_baked_texture_reproduces_the_colour_function():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.6)
    verts, faces = torch.tensor(sphere.vertices, dtype=torch.float32), torch.tensor(sphere.faces)
    uv, uv_faces, tex = bake_texture(verts, faces, _colour_of_position, texture_size=256)
    assert tex.shape == (256, 256, 3) and uv_faces.shape == faces.shape
    assert uv.min() >= 0 and uv.max() <= 1
    # Sample surface points, look their uv up in the texture, compare with the function.
    rng = np.random.default_rng(0)
    fid = rng.integers(0, faces.shape[0], 300)
    b = rng.dirichlet(np.ones(3), 300).astype(np.float32)
    p = (sphere.vertices[sphere.faces[fid]] * b[..., None]).sum(1)
    t = (uv[uv_faces[fid]] * b[..., None]).sum(1)
    from consistent123.render.rasterize import sample_texture

    got = sample_texture(torch.from_numpy(tex), torch.from_numpy(t)).numpy()
    want = _colour_of_position(torch.from_numpy(p).float()).numpy()
    err = np.abs(got - want)
    assert np.median(err) < 0.01 and err.max() < 0.08
    # And the same through the renderer: textured mesh vs the colour function per pixel.
    cam = ring_cameras(1, 70.0, 3.0, 35.0)[0]
    out = render_mesh(
        verts,
        faces,
        cam,
        64,
        64,
        uv=torch.from_numpy(uv),
        uv_faces=torch.from_numpy(uv_faces),
        texture=torch.from_numpy(tex),
        backend="torch",
    )
    m = out["mask"][..., 0]
    interior = m.clone()
    interior[1:-1] &= m[:-2] & m[2:]
    interior[:, 1:-1] &= m[:, :-2] & m[:, 2:]
    want_px = _colour_of_position(out["position"][interior])
    assert (out["rgb"][interior] - want_px).abs().mean() < 0.02


def test_saved_glb_and_obj_reload_with_their_texture(tmp_path):
    photo = np.asarray(Image.open(RF15 / "teddy_bear_rgba.png").convert("RGB").resize((128, 96)))
    quad = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float32)
    # uv faces differ from faces: exercises the (vertex, uv) splitting.
    uv4 = np.concatenate([uv, uv[:1]])
    uv_faces = np.array([[4, 1, 2], [0, 2, 3]])
    paths = save_textured_mesh(tmp_path / "out", quad, faces, uv4, uv_faces, photo, stem="mesh")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"mesh.glb", "mesh.obj", "mesh.mtl", "mesh_albedo.png"}

    glb = trimesh.load(paths["glb"], force="mesh")
    img = glb.visual.material.baseColorTexture
    assert img is not None and img.size == (128, 96)
    np.testing.assert_array_equal(np.asarray(img.convert("RGB")), photo)
    assert len(glb.faces) == 2

    obj = trimesh.load(paths["obj"], force="mesh")
    assert isinstance(obj.visual, trimesh.visual.TextureVisuals)
    oimg = obj.visual.material.image
    assert oimg.size == (128, 96)
    np.testing.assert_array_equal(np.asarray(oimg.convert("RGB")), photo)
    # Same uv per position in both files (v = 0 at the image bottom).
    for m in (glb, obj):
        np.testing.assert_allclose(m.visual.uv, (m.vertices[:, :2] + 1) / 2, atol=1e-6)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_turntable_writes_all_frames(tmp_path, suffix, monkeypatch):
    box = trimesh.creation.box(extents=(0.8, 0.5, 0.3))
    verts, faces = torch.tensor(box.vertices, dtype=torch.float32), torch.tensor(box.faces)
    cams = ring_cameras(6, 75.0, 3.0, 35.0)

    def render_fn(cam):
        return render_mesh(
            verts, faces, cam, 48, 48, vertex_colors=(verts + 0.5).clamp(0, 1), bg_color=torch.ones(3), backend="torch"
        )["rgb"]

    written = render_turntable(render_fn, cams, tmp_path / f"turn{suffix}", fps=6)
    assert written.exists() and written.suffix == suffix
    frames = iio.imread(written, index=None)
    assert frames.shape[0] == len(cams) and frames.shape[1:3] == (48, 48)


def test_turntable_falls_back_to_gif_without_ffmpeg(tmp_path, monkeypatch):
    import consistent123.pipeline.export as export

    monkeypatch.setattr(export, "ffmpeg_available", lambda: False)
    cams = ring_cameras(3, 90.0, 3.0, 30.0)
    written = render_turntable(lambda cam: np.full((16, 16, 3), cam.azimuth / 360.0), cams, tmp_path / "t.mp4", fps=4)
    assert written.suffix == ".gif" and iio.imread(written, index=None).shape[0] == 3


def test_baked_mesh_renders_the_same_after_a_glb_round_trip(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.6)
    verts, faces = torch.tensor(sphere.vertices, dtype=torch.float32), torch.tensor(sphere.faces)
    uv, uv_faces, tex = bake_texture(verts, faces, _colour_of_position, texture_size=128)
    paths = save_textured_mesh(tmp_path, verts, faces, uv, uv_faces, tex)
    cam = ring_cameras(1, 60.0, 3.0, 35.0, start_azimuth=40.0)[0]
    before = render_mesh(
        verts,
        faces,
        cam,
        48,
        48,
        uv=torch.from_numpy(uv),
        uv_faces=torch.from_numpy(uv_faces),
        texture=torch.from_numpy(tex),
        backend="torch",
    )
    for key in ("glb", "obj"):
        v, f, t_uv, t_img = load_textured_mesh(paths[key])
        after = render_mesh(v, f, cam, 48, 48, uv=t_uv, texture=t_img, backend="torch")
        assert (before["mask"] == after["mask"]).float().mean() > 0.995
        both = before["mask"][..., 0] & after["mask"][..., 0]
        assert (before["rgb"][both] - after["rgb"][both]).abs().mean() < 0.01  # 8-bit texture


def test_an_exported_closed_mesh_reads_back_closed_despite_its_uv_seams(tmp_path):
    # A textured file splits vertices along UV seams, so trimesh's is_watertight says no: the
    # evaluation's warning "IoU is not meaningful" came up for every exported reconstruction.
    from consistent123.meshes import is_closed, load_mesh

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.6)
    verts = torch.as_tensor(sphere.vertices, dtype=torch.float32)
    faces = torch.as_tensor(sphere.faces, dtype=torch.int64)
    uv, uv_faces, texture = bake_texture(verts, faces, _colour_of_position, 64)
    paths = save_textured_mesh(tmp_path, verts, faces, uv, uv_faces, texture, stem="mesh")
    loaded = load_mesh(paths["glb"])
    assert not loaded.is_watertight and len(loaded.vertices) > len(sphere.vertices)  # the seams
    assert is_closed(loaded)
    opened = trimesh.Trimesh(sphere.vertices, sphere.faces[1:])
    assert not is_closed(opened)


def test_the_authors_meshlab_clean_up_repairs_remeshes_and_decimates():
    from consistent123.config import ExportConfig
    from consistent123.pipeline.export import clean_up

    body = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
    speck = trimesh.creation.icosphere(subdivisions=1, radius=0.005).apply_translation([0, 0.6, 0])
    mesh = trimesh.util.concatenate([body, speck])
    assert ExportConfig().clean_up == "meshlab" and ExportConfig().decimate_target == 50000

    verts, faces = clean_up(mesh.vertices, mesh.faces, ExportConfig(decimate_target=0))
    cleaned = trimesh.Trimesh(verts, faces)
    assert cleaned.is_watertight and len(cleaned.split(only_watertight=False)) == 1  # the speck is gone
    edges = cleaned.edges_unique_length
    assert 0.005 < np.median(edges) < 0.02  # remeshed to edges of about clean_remesh_size (0.01)
    assert abs(cleaned.volume - body.volume) / body.volume < 0.02
    decimated = clean_up(mesh.vertices, mesh.faces, ExportConfig(decimate_target=2000))[1]
    assert len(faces) > 2000 >= len(decimated) > 1800
    light = clean_up(mesh.vertices, mesh.faces, ExportConfig(clean_up="light"))
    assert len(light[1]) == len(body.faces)  # pieces only: no remeshing


def test_small_pieces_far_from_the_object_go_when_asked():
    # A floater far away stretches the diagonal, so the authors' 5 % rule keeps it; a share of
    # the faces (threestudio's outlier rule) does not.
    from consistent123.config import ExportConfig
    from consistent123.pipeline.export import clean_up

    body = trimesh.creation.icosphere(subdivisions=4, radius=0.4)  # 5120 faces
    floater = trimesh.creation.icosphere(subdivisions=1, radius=0.08).apply_translation([0.9, 1.0, 1.0])  # 80
    mesh = trimesh.util.concatenate([body, floater])
    kept = clean_up(mesh.vertices, mesh.faces, ExportConfig(clean_up="light"))[1]
    assert len(kept) == len(mesh.faces) and ExportConfig().min_component_face_share == 0.0
    dropped = clean_up(mesh.vertices, mesh.faces, ExportConfig(clean_up="light", min_component_face_share=0.02))[1]
    assert len(dropped) == len(body.faces)
