"""The input view's elevation, estimated with the loaded 3D prior (``cameras.ref_elevation: auto``).

The prior generates a few views of the photo at known relative poses (same polar and radius,
azimuth offsets ``elevation.view_azimuths``), as One-2-3-45 does. Every candidate elevation e
turns those relative poses into absolute cameras (the input at polar ``ref_polar - e``); the
candidate kept is the one under which the silhouettes are most coherent (Hernandez, Schmitt &
Cipolla, PAMI 2007): the fraction of silhouette pixels whose ray meets the visual hull of the
other silhouettes. At the true elevation every such ray meets the object itself, so the score
is 1 up to pixel error; under a wrong one the cones miss each other. An azimuth turn is about
the world's up axis, which the input camera sees tilted by e: that is what makes the generated
views depend on e. Only the prior's own views and the photo's mask are used.

A layout whose camera vector holds the input polar (Stable Zero123) is run twice: first with
the input taken as level, then with the first estimate (a fixed-point step), doubling the cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from consistent123.config import CamerasConfig, ElevationConfig
from consistent123.images import on_white
from consistent123.render.cameras import Camera, get_rays, project


@dataclass
class ElevationEstimate:
    elevation: float  # degrees above the equator
    prior_evaluations: int  # denoiser calls, one per generated view per DDIM step (a CFG pair counts once)
    candidates: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "elevation": self.elevation,
            "prior_evaluations": self.prior_evaluations,
            "candidates": self.candidates,
            "scores": self.scores,
        }


def silhouette(rgb: torch.Tensor, size: int, white_threshold: float) -> torch.Tensor:
    """bool [size, size]: pixels of a view generated on white whose darkest channel is below the threshold."""
    small = F.interpolate(rgb[None].float(), (size, size), mode="area")[0]
    return small.min(0).values < white_threshold


def alpha_silhouette(alpha: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(alpha[None, None].float(), (size, size), mode="area")[0, 0] > 0.5


def _inside(mask: torch.Tensor, pix: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Whether projected points (pixel coordinates, view depth) fall inside ``mask``."""
    size = mask.shape[0]
    col, row = pix[..., 0].floor().long(), pix[..., 1].floor().long()
    ok = (col >= 0) & (col < size) & (row >= 0) & (row < size) & (depth > 0)
    return ok & mask[row.clamp(0, size - 1), col.clamp(0, size - 1)]


def coherence(masks: list[torch.Tensor], cams: list[Camera], rays: list[torch.Tensor], depths: torch.Tensor) -> float:
    """Mean over views of the fraction of silhouette rays that meet the other silhouettes' hull."""
    size = masks[0].shape[0]
    fractions = []
    for i, cam in enumerate(cams):
        origins, dirs = get_rays(cam, size)
        pick = rays[i]
        o, d = origins.reshape(-1, 3)[pick], dirs.reshape(-1, 3)[pick]
        points = (o[:, None, :] + d[:, None, :] * depths[None, :, None]).reshape(-1, 3)
        inside = torch.ones(points.shape[0], dtype=torch.bool)
        for j, other in enumerate(cams):
            if j != i:
                pix, z = project(points, other, size)
                inside &= _inside(masks[j], pix, z)
        fractions.append(inside.view(len(pick), -1).any(1).float().mean().item())
    return float(np.mean(fractions))


def _candidates(low: float, high: float, step: float) -> list[float]:
    return [float(v) for v in np.round(np.arange(low, high + step / 2, step), 6)]


def best_elevation(
    masks: list[torch.Tensor], offsets: list[float], cams_cfg: CamerasConfig, el_cfg: ElevationConfig
) -> tuple[float, list[float], list[float]]:
    """Coarse then fine scan of candidate elevations; (best, candidates, scores). ``masks[0]`` is the input's."""
    gen = torch.Generator().manual_seed(el_cfg.seed)
    rays = []
    for mask in masks:
        where = mask.flatten().nonzero()[:, 0]
        keep = torch.randperm(len(where), generator=gen, device="cpu")[: el_cfg.max_rays]
        rays.append(where[keep])
    r = cams_cfg.ref_radius
    depths = torch.linspace(r - 1.0, r + 1.0, el_cfg.ray_samples)  # the scene's bound is 1 around the origin

    def score(e: float) -> float:
        polar = cams_cfg.ref_polar - e
        cams = [Camera(polar, cams_cfg.ref_azimuth + a, r, cams_cfg.ref_fovy) for a in [0.0, *offsets]]
        return coherence(masks, cams, rays, depths)

    tried: dict[float, float] = {}
    low, high = el_cfg.search_range
    for e in _candidates(low, high, el_cfg.coarse_step):
        tried[e] = score(e)
    coarse = max(tried, key=lambda e: (tried[e], -abs(e)))
    fine_low, fine_high = max(low, coarse - el_cfg.coarse_step), min(high, coarse + el_cfg.coarse_step)
    for e in _candidates(fine_low, fine_high, el_cfg.fine_step):
        if e not in tried:
            tried[e] = score(e)
    best = max(tried, key=lambda e: (tried[e], -abs(e - coarse)))
    order = sorted(tried)
    return best, order, [tried[e] for e in order]


@torch.no_grad()
def estimate_elevation(
    prior, rgba: torch.Tensor, cams_cfg: CamerasConfig, el_cfg: ElevationConfig, needs_elevation: bool = False
) -> ElevationEstimate:
    """The input elevation of the photo ``rgba`` [4, S, S] (straight alpha) with the 3D ``prior``
    (its ``set_reference`` and ``generate``); the prior's reference is left at the estimate."""
    rgb = on_white(rgba.float(), channel_axis=0)[None]
    input_mask = alpha_silhouette(rgba[3], el_cfg.mask_size)
    offsets = list(el_cfg.view_azimuths)
    r, fovy, az0 = cams_cfg.ref_radius, cams_cfg.ref_fovy, cams_cfg.ref_azimuth
    elevation, evaluations, candidates, scores = 0.0, 0, [], []
    for _ in range(2 if needs_elevation else 1):
        polar = cams_cfg.ref_polar - elevation  # the first pass takes the input as level
        prior.set_reference(rgb, Camera(polar, az0, r, fovy))
        cams = [Camera(polar, az0 + a, r, fovy) for a in offsets]
        generator = torch.Generator().manual_seed(el_cfg.seed)
        views = prior.generate(cams, el_cfg.sampling_steps, el_cfg.sampling_guidance, generator).cpu()
        evaluations += len(cams) * el_cfg.sampling_steps
        masks = [input_mask] + [silhouette(v, el_cfg.mask_size, el_cfg.white_threshold) for v in views]
        elevation, candidates, scores = best_elevation(masks, offsets, cams_cfg, el_cfg)
    prior.set_reference(rgb, Camera(cams_cfg.ref_polar - elevation, az0, r, fovy))
    return ElevationEstimate(elevation, evaluations, candidates, scores)
