"""Volume rendering of a density/albedo field, batch-vectorised, differentiable.

Per view: rays from ``cameras.get_rays`` -> ray/AABB intersection with ``[-bound, bound]^3``
-> ``num_steps`` stratified samples -> (optional) ``upsample_steps`` importance samples drawn
from the coarse weights, or (``nerf.sampler: march``) R's CUDA marcher's fixed steps of
2 sqrt(3) / max_steps with its early stop at ``transmittance_threshold`` -> samples in
unoccupied cells of the field's occupancy grid are dropped before the field is called (they
cost nothing and contribute zero density) -> per sample shading (``render/shading.py``) ->
alpha compositing.

A field is anything with ``bound``, ``forward(x) -> (sigma, albedo)``, ``density(x)``,
``normals(x)`` (only for shaded modes) and optionally ``occupancy`` (an ``OccupancyGrid``) and
``cfg`` (a ``NeRFConfig`` giving the step counts and ``min_near``).

``depth`` is the Euclidean distance from the camera centre along the (unit) ray, composited
with the weights (what R uses for its depth loss), not the view-space z.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from consistent123.render.cameras import Camera, get_rays, orbit_position
from consistent123.render.shading import needs_normals, shade

DEFAULT_STEPS = 64
DEFAULT_UPSAMPLE = 32
DEFAULT_MIN_NEAR = 0.01


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, bound: float, min_near: float = 0.0):
    """Slab test against the cube [-bound, bound]^3: (near [R], far [R], hit [R])."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0 = (-bound - origins) * inv
    t1 = (bound - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp(min=min_near)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far, far > near


@torch.no_grad()
def sample_pdf(
    bins: torch.Tensor, weights: torch.Tensor, n: int, deterministic: bool, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Inverse-CDF samples [R, n] from piecewise-constant pdfs (weights [R, B]) over bins [R, B+1]."""
    weights = weights + 1e-5  # rays with no mass fall back to uniform
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(-1)], -1)
    if deterministic:
        u = torch.linspace(0.5 / n, 1 - 0.5 / n, n, device=bins.device).expand(bins.shape[0], n)
    else:
        u = torch.rand(bins.shape[0], n, generator=generator, device=_draw_device(generator)).to(bins.device)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True)
    below = (idx - 1).clamp(min=0)
    above = idx.clamp(max=cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(1, below), cdf.gather(1, above)
    bin_lo, bin_hi = bins.gather(1, below), bins.gather(1, above)
    span = torch.where(cdf_hi - cdf_lo < 1e-5, torch.ones_like(cdf_lo), cdf_hi - cdf_lo)
    return bin_lo + (u - cdf_lo) / span * (bin_hi - bin_lo)


def composite_weights(
    sigma: torch.Tensor, t: torch.Tensor, last_delta: torch.Tensor, transmittance_threshold: float = 0.0
) -> torch.Tensor:
    """Standard quadrature: w_i = (1 - exp(-sigma_i delta_i)) prod_{j<i} exp(-sigma_j delta_j).

    ``transmittance_threshold`` > 0 stops each ray as R's CUDA compositing does: a sample whose
    incoming transmittance is already below it gets no weight (and no gradient)."""
    deltas = torch.cat([t[:, 1:] - t[:, :-1], last_delta.unsqueeze(-1)], -1)
    alpha = 1.0 - torch.exp(-sigma * deltas)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-15], -1), -1)[:, :-1]
    if transmittance_threshold > 0:
        trans = trans * (trans.detach() >= transmittance_threshold)
    return alpha * trans


def march_steps(
    near: torch.Tensor,
    far: torch.Tensor,
    max_steps: int,
    perturb: bool,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """R's CUDA ray marching (``-O``, raymarching ``march_rays_train`` with dt_gamma 0): from each
    ray's near point on, a fixed step dt = 2 sqrt(3) / max_steps (so a ray through the unit
    bound's diagonal takes max_steps of them), the start moved by dt * U[0, 1) per ray when
    ``perturb``. Returns (t [R, K], inside [R, K] = t < far, dt [R]), K = max_steps."""
    device = near.device
    dt = 2.0 * 3.0**0.5 / max_steps
    start = (
        torch.rand(near.shape[0], generator=generator, device=_draw_device(generator)).to(device)
        if perturb
        else torch.zeros_like(near)
    )
    t = near.unsqueeze(-1) + (start.unsqueeze(-1) + torch.arange(max_steps, device=device)) * dt
    return t, t < far.unsqueeze(-1), torch.full_like(near, dt)


def _draw_device(generator: Optional[torch.Generator]) -> torch.device:
    """Random samples are drawn where their generator lives (a CUDA generator: no host copy)."""
    return generator.device if generator is not None else torch.device("cpu")


def _scatter_samples(mask: torch.Tensor, values: torch.Tensor, width: int = 0) -> torch.Tensor:
    """Dense [R, S(, width)] tensor with ``values`` at ``mask`` and zeros elsewhere (differentiable)."""
    shape = mask.shape + ((width,) if width else ())
    full = values.new_zeros(shape)
    m = mask.unsqueeze(-1).expand(shape) if width else mask
    return full.masked_scatter(m, values)


def _field_device(field) -> torch.device:
    for p in field.parameters() if hasattr(field, "parameters") else []:
        return p.device
    return torch.device("cpu")


def render_nerf(
    field,
    cam: Camera,
    height: int,
    width: Optional[int] = None,
    shading: tuple = ("albedo", 1.0, None),
    bg_color: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    perturb: bool = True,
    num_steps: Optional[int] = None,
    upsample_steps: Optional[int] = None,
    use_occupancy: bool = True,
    need_normals: Optional[bool] = None,
    ray_noise: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    normal_perturb: float = 0.0,
    rows: Optional[tuple[int, int]] = None,
) -> dict:
    """Render one view of ``field`` (with ``rows`` = (first, end): only that band of its rows,
    so a large view can be rendered a band at a time).

    ``shading`` = (mode, ambient, light_dir); light_dir None = a headlight at the camera.
    ``bg_color`` [3] or one colour per pixel [H, W, 3] is composited behind (None: black, i.e.
    premultiplied colour). ``need_normals`` (default: only when the shading mode uses them) adds
    composited normals and the per-sample orientation term. ``ray_noise`` = (origin offset [3],
    direction offset [3]) is added to every ray (R's known_view_noise_scale). ``normal_perturb``
    > 0 also returns the normals at the samples moved by ``normal_perturb * N(0, I)`` (drawn
    from ``generator``) for the 3D normal smoothness.

    Returns rgb [H, W, 3], opacity [H, W, 1], depth [H, W, 1] (distance along the ray), normals
    [H, W, 3] (composited world-space normals; zeros when not computed) and with normals
    normal_image [H, W, 3] (sum_i sg(w_i) (n_i + 1) / 2, R's normal image), orient [H, W]
    (sum_i w_i max(0, n_i . d)^2 with w detached, R's orientation term; None without
    normals), and for the hit rays in packed form: ray_ids [R'], t [R', S], weights [R', S];
    per evaluated sample: sample_weights [M], and with normals sample_normals [M, 3],
    orient_samples [M] (sg(w) relu(n . d)^2, R's orientation term) and normals_perturbed
    [M, 3] (or None); num_samples (field evaluations in the differentiable pass) and
    num_candidates (samples before empty-space skipping).
    """
    width = width or height
    cfg = getattr(field, "cfg", None)
    num_steps = num_steps if num_steps is not None else getattr(cfg, "num_steps", DEFAULT_STEPS)
    upsample_steps = upsample_steps if upsample_steps is not None else getattr(cfg, "upsample_steps", DEFAULT_UPSAMPLE)
    min_near = getattr(cfg, "min_near", DEFAULT_MIN_NEAR)
    mode, ambient, light = shading
    with_normals = needs_normals(mode) if need_normals is None else (need_normals or needs_normals(mode))
    device = _field_device(field)
    bound = float(field.bound)
    occupancy = getattr(field, "occupancy", None) if use_occupancy else None
    if light is None:
        light = F.normalize(orbit_position(cam.polar, cam.azimuth, cam.radius), dim=0)
    light = torch.as_tensor(light, dtype=torch.float32).to(device)

    origins, dirs = get_rays(cam, height, width, rows)
    if rows is not None:
        height = rows[1] - rows[0]  # every image below is the band's
    origins, dirs = origins.reshape(-1, 3).to(device), dirs.reshape(-1, 3).to(device)
    if ray_noise is not None:  # R adds the noise to the unit directions without renormalising
        origins = origins + ray_noise[0].to(device, origins.dtype).reshape(1, 3)
        dirs = dirs + ray_noise[1].to(device, dirs.dtype).reshape(1, 3)
    n_rays = origins.shape[0]
    near, far, hit = ray_aabb(origins, dirs, bound, min_near)
    ray_ids = torch.nonzero(hit).flatten()
    o, d, near, far = origins[ray_ids], dirs[ray_ids], near[ray_ids], far[ray_ids]
    marching = getattr(cfg, "sampler", "stratified") == "march"
    inside = None  # march: which fixed steps lie before the ray leaves the bound
    stop = 0.0
    if marching:
        t, inside, step = march_steps(near, far, cfg.max_steps, perturb, generator)
        upsample_steps, stop = 0, cfg.transmittance_threshold
    else:
        step = (far - near) / num_steps
        # Stratified samples: one per equal bin, jittered inside it during training.
        offsets = (
            torch.rand(ray_ids.numel(), num_steps, generator=generator, device=_draw_device(generator)).to(device)
            if perturb
            else torch.full((ray_ids.numel(), num_steps), 0.5, device=device)
        )
        t = near.unsqueeze(-1) + (torch.arange(num_steps, device=device) + offsets) * step.unsqueeze(-1)

    def points(tv):
        return (o.unsqueeze(1) + tv.unsqueeze(-1) * d.unsqueeze(1)).clamp(-bound, bound)

    def occupied(x):
        if occupancy is None:
            return torch.ones(x.shape[:-1], dtype=torch.bool, device=device)
        return occupancy.occupied_at(x)

    num_candidates = t.numel()
    if upsample_steps > 0 and ray_ids.numel():
        with torch.no_grad():
            x = points(t)
            mask = occupied(x)
            sigma = _scatter_samples(mask, field.density(x[mask]).float())
            w = composite_weights(sigma, t, step)
            mids = 0.5 * (t[:, 1:] + t[:, :-1])
            bins = torch.cat([near.unsqueeze(-1), mids, far.unsqueeze(-1)], -1)
            t_new = sample_pdf(bins, w, upsample_steps, deterministic=not perturb, generator=generator)
            t = torch.sort(torch.cat([t, t_new], -1), -1).values
        num_candidates += t_new.numel()

    x = points(t)
    mask = occupied(x) if inside is None else occupied(x) & inside
    xs = x[mask]
    sigma_s, albedo_s = field(xs)
    normals_s = normals_perturbed = None
    if with_normals and normal_perturb > 0:  # one batched call for both sets of normals
        jitter = torch.randn(xs.shape, generator=generator, device=_draw_device(generator)).to(device) * normal_perturb
        normals_s, normals_perturbed = field.normals(torch.cat([xs, xs + jitter])).split(xs.shape[0])
    elif with_normals:
        normals_s = field.normals(xs)
    colour_s = shade(albedo_s, normals_s, mode, ambient, light)
    sigma = _scatter_samples(mask, sigma_s.float())
    weights = composite_weights(sigma, t, step, stop)
    w_s = weights[mask].unsqueeze(-1)  # weights of the evaluated samples, same order as xs

    def per_ray(values_s, w=w_s):
        # sum over a ray's evaluated samples of w * value, as a dense [R', C] tensor
        return _scatter_samples(mask, w * values_s, values_s.shape[-1]).sum(1)

    rgb_h = per_ray(colour_s)
    opacity_h = weights.sum(1, keepdim=True)
    depth_h = (weights * t).sum(1, keepdim=True)

    def to_image(values_h, channels):
        full = values_h.new_zeros(n_rays, channels)
        return full.index_copy(0, ray_ids, values_h)

    rgb = to_image(rgb_h, 3)
    opacity = to_image(opacity_h, 1)
    if bg_color is not None:
        rgb = rgb + (1.0 - opacity) * torch.as_tensor(bg_color, dtype=rgb.dtype).to(device).reshape(-1, 3)
    out = {
        "rgb": rgb.reshape(height, width, 3),
        "opacity": opacity.reshape(height, width, 1),
        "depth": to_image(depth_h, 1).reshape(height, width, 1),
        "normals": torch.zeros(height, width, 3, device=device),
        "ray_ids": ray_ids,
        "t": t,
        "weights": weights,
        "sample_weights": w_s[:, 0],
        "sample_normals": normals_s,
        "orient_samples": None,
        "normals_perturbed": normals_perturbed,
        "num_samples": int(mask.sum()),
        "num_candidates": num_candidates,
    }
    if with_normals:
        out["normals"] = to_image(per_ray(normals_s), 3).reshape(height, width, 3)
        # R's normal image (nerf/renderer.py, CUDA rays): (n + 1) / 2 composited with the weights
        # stopped, in [0, 1]; its 2D smoothness moves the normals, not the opacity.
        out["normal_image"] = to_image(per_ray((normals_s + 1) / 2, w_s.detach()), 3).reshape(height, width, 3)
        facing = (normals_s * d.unsqueeze(1).expand(-1, t.shape[1], -1)[mask]).sum(-1)
        out["orient_samples"] = w_s[:, 0].detach() * facing.clamp(min=0) ** 2
    return out
