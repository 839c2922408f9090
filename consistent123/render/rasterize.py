"""Triangle rasterisation with one interface and two backends.

``make_rasteriser("nvdiffrast" | "torch" | "auto", device)`` (resolved by
``consistent123.backends``) returns an object with
nvdiffrast's three primitives and their semantics, so the pure-PyTorch backend is a drop-in
reference for the CUDA one:

- ``rasterize(pos[B,V,4] or [V,4], tri[F,3], height, width) -> (rast[B,H,W,4], None)``:
  clip-space positions in, per pixel (u, v, z/w, triangle_id + 1) out (0 = empty). Row 0 is
  NDC y = -1 (OpenGL's bottom row) exactly as nvdiffrast; ``render_mesh`` flips to the
  project's top-row-first images. The barycentrics are perspective-correct and carry
  gradients to the vertex positions; an attribute is u*a0 + v*a1 + (1-u-v)*a2.
- ``interpolate(attr[V,C] or [B,V,C], rast, tri) -> (out[B,H,W,C], None)``.
- ``antialias(color[B,H,W,C], rast, pos, tri) -> color``: nvdiffrast's silhouette
  antialiasing. Where neighbouring pixels see different triangles and a silhouette edge of the
  nearer one crosses the segment between the pixel centres, the colours are blended by how far
  the edge reaches into the other pixel. That blend weight depends on the edge's screen
  position, which is what lets mask and depth losses move vertices.

``render_mesh`` is the high-level call used by DMTet training, the turntable and the
evaluation renders. Pixel centres are at (i + 0.5) as in ``consistent123.render.cameras``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from consistent123.render.cameras import Camera, mvp_matrix

_CACHE: dict = {}


def make_rasteriser(backend: str = "auto", device="cpu"):
    """One rasteriser per (backend, device), chosen by consistent123.backends' rule; the CUDA
    context is created once and reused."""
    from consistent123 import backends

    device = torch.device(device)
    name = backends.resolve("rasteriser", backend, device)
    key = (name, str(device))
    if key not in _CACHE:
        _CACHE[key] = NvdiffrastRasteriser(device) if name == "nvdiffrast" else TorchRasteriser(device)
    return _CACHE[key]


def _batched(pos: torch.Tensor) -> torch.Tensor:
    return pos.unsqueeze(0) if pos.dim() == 2 else pos


class Rasteriser:
    """The three primitives; a mesh without triangles is background everywhere on every backend
    (nvdiffrast rejects an empty triangle tensor), so the backends only see non-empty meshes."""

    name = "base"

    def rasterize(self, pos, tri, height: int, width: int):
        if tri.shape[0] == 0:
            pos = _batched(pos)
            return pos.new_zeros(pos.shape[0], height, width, 4), None
        return self._rasterize(pos, tri, height, width)

    def interpolate(self, attr, rast, tri):
        if tri.shape[0] == 0:
            B, H, W, _ = rast.shape
            return attr.new_zeros(B, H, W, attr.shape[-1]) + 0 * attr.sum(), None  # keeps attr in the graph
        return self._interpolate(attr, rast, tri)

    def antialias(self, color, rast, pos, tri):
        if tri.shape[0] == 0:
            return color
        return self._antialias(color, rast, pos, tri)


# ---------------------------------------------------------------- nvdiffrast backend
class NvdiffrastRasteriser(Rasteriser):
    name = "nvdiffrast"

    def __init__(self, device):
        import nvdiffrast.torch as dr  # lazily: only present on CUDA installs

        self.dr = dr
        self.ctx = dr.RasterizeCudaContext(device=device)  # never GL: clusters are headless

    def _rasterize(self, pos, tri, height, width):
        return self.dr.rasterize(self.ctx, _batched(pos).float().contiguous(), tri.int().contiguous(), (height, width))

    def _interpolate(self, attr, rast, tri):
        return self.dr.interpolate(attr.float().contiguous(), rast, tri.int().contiguous())

    def _antialias(self, color, rast, pos, tri):
        return self.dr.antialias(
            color.float().contiguous(), rast, _batched(pos).float().contiguous(), tri.int().contiguous()
        )


# ---------------------------------------------------------------- pure-PyTorch backend
def _screen(pos: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Clip positions [...,4] -> (x_pix, y_pix, z/w) with nvdiffrast's pixel layout."""
    w = pos[..., 3:4]
    ndc = pos[..., :3] / w
    return torch.cat([(ndc[..., :1] * 0.5 + 0.5) * width, (ndc[..., 1:2] * 0.5 + 0.5) * height, ndc[..., 2:3]], -1)


class TorchRasteriser(Rasteriser):
    """Vectorised rasteriser: per-triangle bounding boxes expanded into (triangle, pixel)
    candidates, a chunk of triangles at a time, with a z-buffer built by scatter-min.

    Triangles with a vertex behind the eye (w <= 0) are dropped instead of clipped.
    """

    name = "torch"

    def __init__(self, device, max_candidates: int = 1 << 22):
        self.device = torch.device(device)
        self.max_candidates = max_candidates

    # -- visibility (discrete, no gradient)
    @torch.no_grad()
    def _visible_triangles(self, pos: torch.Tensor, tri: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """pos [V,4], tri [F,3] -> triangle id + 1 per pixel, [H*W] long (0 = empty)."""
        dev = pos.device
        v = pos[tri]  # [F,3,4]
        ok = (v[..., 3] > 1e-8).all(-1)
        s = _screen(v.double(), height, width)  # doubles: exact edge tests at 1024^2
        x, y, z = s[..., 0], s[..., 1], s[..., 2]
        area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
        ok &= area.abs() > 1e-12
        ok &= ~((z < -1).all(-1) | (z > 1).all(-1))
        # Pixels whose centre (i + 0.5) lies in the bounding box.
        x0 = torch.ceil(x.amin(-1) - 0.5).clamp(min=0)
        x1 = torch.floor(x.amax(-1) - 0.5).clamp(max=width - 1)
        y0 = torch.ceil(y.amin(-1) - 0.5).clamp(min=0)
        y1 = torch.floor(y.amax(-1) - 0.5).clamp(max=height - 1)
        ok &= torch.isfinite(x0) & torch.isfinite(y0) & torch.isfinite(x1) & torch.isfinite(y1)
        nx = torch.where(ok, (x1 - x0 + 1).clamp(min=0), torch.zeros_like(x0)).long()
        ny = torch.where(ok, (y1 - y0 + 1).clamp(min=0), torch.zeros_like(y0)).long()
        count = nx * ny
        x0, y0 = torch.where(ok, x0, 0).long(), torch.where(ok, y0, 0).long()

        zbuf = torch.full((height * width,), float("inf"), dtype=torch.float64, device=dev)
        ids = torch.zeros(height * width, dtype=torch.long, device=dev)
        live = torch.nonzero(count > 0).squeeze(1)
        if live.numel() == 0:
            return ids
        # Split the live triangles into chunks of at most max_candidates (triangle, pixel) pairs.
        ends = torch.cumsum(count[live], 0)
        start = 0
        while start < live.numel():
            base = ends[start - 1] if start > 0 else ends.new_zeros(())
            stop = int(torch.searchsorted(ends, base + self.max_candidates, right=True))
            stop = max(stop, start + 1)  # one huge triangle still goes through on its own
            self._raster_chunk(live[start:stop], count, nx, x0, y0, x, y, z, area, width, zbuf, ids)
            start = stop
        return ids

    def _raster_chunk(self, tris, count, nx, x0, y0, x, y, z, area, width, zbuf, ids):
        dev = tris.device
        cnt = count[tris]
        owner = torch.repeat_interleave(torch.arange(tris.numel(), device=dev), cnt)
        first = torch.cumsum(cnt, 0) - cnt
        local = torch.arange(int(cnt.sum()), device=dev) - first[owner]
        t = tris[owner]
        ix = x0[t] + local % nx[t]
        iy = y0[t] + torch.div(local, nx[t], rounding_mode="floor")
        cx, cy = ix.double() + 0.5, iy.double() + 0.5
        xs, ys = x[t], y[t]

        def edge(a, b):  # signed area of (p_a, p_b, centre), normalised by the triangle's
            return ((xs[:, b] - xs[:, a]) * (cy - ys[:, a]) - (ys[:, b] - ys[:, a]) * (cx - xs[:, a])) / area[t]

        b0, b1, b2 = edge(1, 2), edge(2, 0), edge(0, 1)
        zf = b0 * z[t, 0] + b1 * z[t, 1] + b2 * z[t, 2]
        inside = (b0 >= 0) & (b1 >= 0) & (b2 >= 0) & (zf >= -1) & (zf <= 1)
        pix = (iy * width + ix)[inside]
        zf, tid = zf[inside], t[inside] + 1
        chunk_min = torch.full_like(zbuf, float("inf")).scatter_reduce(0, pix, zf, "amin")
        new_z = torch.minimum(zbuf, chunk_min)
        win = zf == new_z[pix]
        # Ties (shared edges, coplanar duplicates) go to the highest triangle id.
        cand = torch.zeros_like(ids).scatter_reduce(0, pix[win], tid[win], "amax")
        ids.copy_(torch.where(new_z < zbuf, cand, torch.maximum(ids, cand)))
        zbuf.copy_(new_z)

    def _rasterize(self, pos, tri, height: int, width: int):
        pos = _batched(pos).float()
        tri = tri.long()
        out = []
        for b in range(pos.shape[0]):
            ids = self._visible_triangles(pos[b], tri, height, width)
            pix = torch.nonzero(ids > 0).squeeze(1)
            v = pos[b][tri[ids[pix] - 1]]  # [N,3,4], differentiable
            xn = ((pix % width).float() + 0.5) / width * 2 - 1
            yn = (torch.div(pix, width, rounding_mode="floor").float() + 0.5) / height * 2 - 1
            # Perspective-correct barycentrics: the point sum(l_i v_i) projects onto the pixel,
            # i.e. l is orthogonal to (x_i - xn w_i) and (y_i - yn w_i).
            a = v[..., 0] - xn[:, None] * v[..., 3]
            c = v[..., 1] - yn[:, None] * v[..., 3]
            lam = torch.linalg.cross(a, c, dim=-1)
            lam = lam / lam.sum(-1, keepdim=True)
            zw = (lam * v[..., 2]).sum(-1) / (lam * v[..., 3]).sum(-1)
            vals = torch.stack([lam[:, 0], lam[:, 1], zw, ids[pix].float()], -1)
            img = pos.new_zeros(height * width, 4).index_put((pix,), vals)
            out.append(img.reshape(height, width, 4))
        return torch.stack(out), None

    def _interpolate(self, attr, rast, tri):
        tri = tri.long()
        attr = attr if attr.dim() == 3 else attr.unsqueeze(0).expand(rast.shape[0], -1, -1)
        B, H, W, _ = rast.shape
        outs = []
        for b in range(B):
            flat = rast[b].reshape(-1, 4)
            pix = torch.nonzero(flat[:, 3] > 0).squeeze(1)  # only covered pixels do any work
            r = flat[pix]
            a = attr[b][tri[r[:, 3].long() - 1]]  # [N,3,C]
            u, v = r[:, 0:1], r[:, 1:2]
            vals = u * a[:, 0] + v * a[:, 1] + (1 - u - v) * a[:, 2]
            outs.append(vals.new_zeros(H * W, attr.shape[-1]).index_put((pix,), vals).reshape(H, W, -1))
        return torch.stack(outs), None

    def _antialias(self, color, rast, pos, tri):
        pos, color = _batched(pos).float(), color.float()  # fp32 blending, as nvdiffrast's kernel
        tri = tri.long()
        out = []
        for b in range(color.shape[0]):
            out.append(_antialias_one(color[b], rast[b], pos[b if pos.shape[0] > 1 else 0], tri))
        return torch.stack(out)


def _silhouette_edges(scr: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """[F,3] bool: is edge k (vertex k -> k+1) a silhouette edge in this view?

    Silhouette = on one triangle only, or between a front- and a back-facing triangle.
    """
    with torch.no_grad():
        p = scr[tri][..., :2]
        area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (
            p[:, 1, 1] - p[:, 0, 1]
        )
        facing = torch.sign(area).long()
        edges = torch.sort(torch.stack([tri, tri.roll(-1, dims=1)], -1).reshape(-1, 2), dim=1).values
        # 1-D keys: torch.unique(dim=0) is far slower than unique on a flat int64 tensor.
        _, inv = torch.unique(edges[:, 0] * (int(tri.max()) + 1) + edges[:, 1], return_inverse=True)
        n = int(inv.max()) + 1
        count = torch.bincount(inv, minlength=n)
        fsum = torch.zeros(n, dtype=torch.long, device=tri.device).index_add_(0, inv, facing.repeat_interleave(3))
        sil = (count == 1) | (fsum.abs() < count)
        return sil[inv].reshape(-1, 3)


def _antialias_one(color, rast, pos, tri):
    """color [H,W,C], rast [H,W,4], pos [V,4] -> antialiased colour [H,W,C]."""
    H, W, C = color.shape
    if tri.shape[0] == 0:
        return color
    ids = rast[..., 3].detach().long()
    zw = rast[..., 2].detach()
    ok_v = pos[:, 3] > 1e-8
    scr = _screen(pos, H, W)  # differentiable in the vertex positions
    sil = _silhouette_edges(scr.detach(), tri) & ok_v[tri].all(-1, keepdim=True)
    flat = color.reshape(-1, C)
    deltas = []
    for axis in (1, 0):  # horizontal pairs (x), then vertical pairs (y)
        if (W if axis == 1 else H) < 2:
            continue
        if axis == 1:
            ia, ib, za, zb = ids[:, :-1], ids[:, 1:], zw[:, :-1], zw[:, 1:]
        else:
            ia, ib, za, zb = ids[:-1, :], ids[1:, :], zw[:-1, :], zw[1:, :]
        differ = ia != ib
        a_front = (ib == 0) | ((ia != 0) & (za < zb))
        sel = torch.nonzero(differ.reshape(-1)).squeeze(1)
        if sel.numel() == 0:
            continue
        if axis == 1:  # pair index over [H, W-1] -> pixel ids of the left/right pixel
            pa = torch.div(sel, W - 1, rounding_mode="floor") * W + sel % (W - 1)
            pb = pa + 1
        else:
            pa = sel
            pb = pa + W
        a_front = a_front.reshape(-1)[sel]
        p_occ = torch.where(a_front, pa, pb)  # pixel covered by the nearer triangle
        p_oth = torch.where(a_front, pb, pa)
        occ_tri = torch.where(a_front, ia.reshape(-1)[sel], ib.reshape(-1)[sel]) - 1
        step = torch.where(a_front, 1.0, -1.0)  # direction from occluder pixel to the other one
        # Pixel-centre coordinates of the occluder pixel along (u) and across (c) the pair axis.
        along = ((p_occ % W) if axis == 1 else torch.div(p_occ, W, rounding_mode="floor")).float() + 0.5
        across = (torch.div(p_occ, W, rounding_mode="floor") if axis == 1 else (p_occ % W)).float() + 0.5
        f = tri[occ_tri]  # [N,3]
        e0, e1 = scr[f][..., :2], scr[f.roll(-1, dims=1)][..., :2]  # edge k: vertex k -> k+1, [N,3,2]
        u_idx, c_idx = (0, 1) if axis == 1 else (1, 0)
        du = e1[..., u_idx] - e0[..., u_idx]
        dc = e1[..., c_idx] - e0[..., c_idx]
        safe_dc = torch.where(dc.abs() > 1e-12, dc, torch.ones_like(dc))
        s = (across[:, None] - e0[..., c_idx]) / safe_dc  # where the edge meets the centre line
        t = (e0[..., u_idx] + s * du - along[:, None]) * step[:, None]  # 0 = occluder centre, 1 = other
        valid = sil[occ_tri] & (dc.abs() > 1e-12) & (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
        if not bool(valid.any()):
            continue
        # One crossing per pair: the valid edge nearest the midpoint.
        score = torch.where(valid, (t.detach() - 0.5).abs(), torch.full_like(t, 9.0))
        k = score.argmin(-1)
        has = valid.gather(1, k[:, None]).squeeze(1)
        t = t.gather(1, k[:, None]).squeeze(1)[has]
        p_occ, p_oth = p_occ[has], p_oth[has]
        c_occ, c_oth = flat[p_occ], flat[p_oth]
        # Edge beyond the midpoint: the occluder spills into the other pixel by (t - 1/2);
        # before it: the occluder pixel is uncovered by (1/2 - t).
        spill = (t > 0.5).unsqueeze(-1)
        w = (t - 0.5).abs().unsqueeze(-1)
        target = torch.where(spill.squeeze(-1), p_oth, p_occ)
        delta = torch.where(spill, c_occ - c_oth, c_oth - c_occ) * w
        deltas.append((target, delta))
    if not deltas:
        return color
    out = flat
    for target, delta in deltas:
        out = out.index_add(0, target, delta)
    return out.reshape(H, W, C)


# ---------------------------------------------------------------- high-level mesh render
def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals [V,3] (unit length)."""
    faces = faces.long()
    v = verts[faces]
    fn = torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1)
    vn = torch.zeros_like(verts).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, 0))
    return F.normalize(vn, dim=-1, eps=1e-12)


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup; texture [Ht,Wt,C] with row 0 at the top, uv [...,2] with v = 0 at the
    bottom (the OBJ / glTF-via-trimesh convention)."""
    grid = torch.stack([uv[..., 0] * 2 - 1, (1 - uv[..., 1]) * 2 - 1], -1).reshape(1, -1, 1, 2)
    tex = texture.permute(2, 0, 1).unsqueeze(0).float()
    out = F.grid_sample(tex, grid.float(), mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, :, 0].T.reshape(*uv.shape[:-1], texture.shape[-1])


def clip_coordinates(verts: torch.Tensor, cam: Camera, aspect: float = 1.0) -> torch.Tensor:
    """Homogeneous clip positions [V,4] of ``verts`` [V,3], in float32 whatever autocast is on.

    The trainer's autocast would run this product in fp16 (depth errors up to a quarter of an
    object's depth range, surfaces drawn in the wrong order); the authors' code computes it
    under autocast too. Positions and depth stay fp32 here; gradients still reach ``verts``."""
    with torch.autocast(verts.device.type, enabled=False):
        mvp = mvp_matrix(cam, aspect=aspect).to(verts.device, torch.float32)
        v = verts.float()
        return torch.cat([v, torch.ones_like(v[:, :1])], -1) @ mvp.T


def render_mesh(
    verts: torch.Tensor,
    faces: torch.Tensor,
    cam: Camera,
    height: int,
    width: int,
    vertex_colors: Optional[torch.Tensor] = None,
    uv: Optional[torch.Tensor] = None,
    uv_faces: Optional[torch.Tensor] = None,
    texture: Optional[torch.Tensor] = None,
    bg_color=None,
    backend: str = "auto",
    color_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
) -> dict:
    """Render a triangle mesh from ``cam``; images are [H,W,C], row 0 at the top.

    Colour comes from, in order: ``texture`` sampled at ``uv``/``uv_faces``, ``vertex_colors``,
    ``color_fn(points[N,3], normals[N,3]) -> [N,3]`` evaluated at the visible surface points,
    else white. Returns rgb (antialiased, composited over ``bg_color``, default black), alpha
    (antialiased coverage, differentiable in the vertices), depth (view-space distance along the
    optical axis, 0 where empty), normals (world space, unit, 0 where empty), mask (hard
    coverage, bool) and position (world surface point).
    """
    dev = verts.device
    faces = faces.long()
    r = make_rasteriser(backend, dev)
    clip = clip_coordinates(verts, cam, aspect=width / height)
    rast, _ = r.rasterize(clip.unsqueeze(0), faces, height, width)
    mask = rast[..., 3:4] > 0
    # One interpolation pass for position, normal and view depth (clip w) together.
    geo, _ = r.interpolate(torch.cat([verts, vertex_normals(verts, faces), clip[:, 3:4]], -1).unsqueeze(0), rast, faces)
    position, depth = geo[..., 0:3], geo[..., 6:7]
    normals = F.normalize(geo[..., 3:6], dim=-1, eps=1e-12) * mask

    if texture is not None:
        if uv is None:
            raise ValueError("render_mesh: a texture needs uv coordinates")
        uv = torch.as_tensor(uv, dtype=torch.float32, device=dev)
        uv_faces = faces if uv_faces is None else torch.as_tensor(uv_faces, device=dev).long()
        tex = torch.as_tensor(texture, device=dev)
        tex = tex.float() / 255.0 if tex.dtype == torch.uint8 else tex.float()
        pix_uv, _ = r.interpolate(uv.unsqueeze(0), rast, uv_faces)
        color = sample_texture(tex[..., :3], pix_uv[0]).unsqueeze(0)
    elif vertex_colors is not None:
        color, _ = r.interpolate(torch.as_tensor(vertex_colors, device=dev).float().unsqueeze(0), rast, faces)
    elif color_fn is not None:
        idx = torch.nonzero(mask.reshape(-1)).squeeze(1)  # query the field only where visible
        vals = color_fn(position.reshape(-1, 3)[idx], normals.reshape(-1, 3)[idx])
        color = vals.new_zeros(height * width, vals.shape[-1]).index_put((idx,), vals).reshape(1, height, width, -1)
    else:
        color = torch.ones_like(position)

    if bg_color is None:
        bg = torch.zeros(3, device=dev)
    else:
        bg = torch.as_tensor(bg_color, dtype=torch.float32, device=dev)
    bg = bg.expand(1, height, width, 3) if bg.dim() <= 1 else bg.reshape(1, height, width, 3)
    rgb = torch.where(mask, color[..., :3], bg)
    # Colour and coverage antialiased in one pass: the blend weights move the silhouette.
    rgba = r.antialias(torch.cat([rgb.float(), mask.float()], -1).contiguous(), rast, clip.unsqueeze(0), faces)
    rgb, alpha = rgba[..., :3], rgba[..., 3:4]

    def img(t):  # drop the batch axis; OpenGL's bottom row first -> image top row first
        return torch.flip(t[0], dims=[0])

    return dict(
        rgb=img(rgb),
        alpha=img(alpha),
        depth=img(depth * mask),
        normals=img(normals),
        mask=img(mask),
        position=img(position),
    )
