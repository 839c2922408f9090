"""Shading modes shared by the volume renderer and the mesh rasteriser (spec §2).

As in stable-dreamfusion / Magic123 (which Consistent123's code builds on):

* ``albedo``:       rgb = albedo
* ``lambertian``:   rgb = albedo * (ambient + (1 - ambient) * max(0, n . l))
* ``textureless``:  the lambertian term alone (albedo = 1), so geometry must explain shading
* ``normal``:       rgb = (n + 1) / 2 (visualisation)

The light is a direction (unit vector from the surface towards the light), sampled around
the camera position so the visible side is lit ("avoid dark faces").
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F

from consistent123.config import NeRFConfig
from consistent123.render.cameras import Camera, orbit_position

MODES = ("albedo", "lambertian", "textureless", "normal")


def needs_normals(mode: str) -> bool:
    return mode != "albedo"


def shade(
    albedo: Optional[torch.Tensor],
    normals: Optional[torch.Tensor],
    mode: str = "albedo",
    ambient: float = 1.0,
    light_dir: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Colour [..., 3] from albedo [..., 3] and unit normals [..., 3] (normals unused for albedo)."""
    if mode not in MODES:
        raise ValueError(f"unknown shading mode {mode!r}; expected one of {MODES}")
    if mode == "albedo":
        return albedo
    if normals is None:
        raise ValueError(f"shading mode {mode!r} needs normals")
    if mode == "normal":
        return (normals + 1.0) / 2.0
    if light_dir is None:
        raise ValueError(f"shading mode {mode!r} needs a light direction")
    light = F.normalize(torch.as_tensor(light_dir, dtype=normals.dtype, device=normals.device).reshape(3), dim=0)
    lambert = ambient + (1.0 - ambient) * (normals @ light).clamp(min=0.0)  # [...]
    if mode == "textureless":
        return lambert.unsqueeze(-1).expand(*lambert.shape, 3)
    return albedo * lambert.unsqueeze(-1)


def light_around_camera(camera: Camera, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """R's light: normalise(camera position + N(0, I)), so the light stays on the viewer's side."""
    noise = torch.randn(3, generator=generator, device="cpu")  # host generator, host camera position
    return F.normalize(orbit_position(camera.polar, camera.azimuth, camera.radius) + noise, dim=0)


def sample_shading(
    nerf_cfg: NeRFConfig,
    generator: Optional[torch.Generator] = None,
    camera: Optional[Camera] = None,
    modes: Optional[Mapping[str, float]] = None,
) -> tuple[str, float, torch.Tensor]:
    """(mode, ambient, light_dir) for one novel training view.

    As R's train_step: ambient uniform in ``nerf_cfg.ambient_range``, then the mode drawn with
    the probabilities of ``nerf_cfg.shading`` (or ``modes``; mode -> weight, normalised); pure
    albedo has ambient 1. The light is sampled around ``camera`` as R does, or uniformly on
    the sphere when no camera is given.
    """
    weights = dict(modes if modes is not None else nerf_cfg.shading)
    names = [m for m, w in weights.items() if w > 0]
    if not names:
        raise ValueError("nerf.shading: no shading mode has a positive probability")
    lo, hi = nerf_cfg.ambient_range
    ambient = float(lo + (hi - lo) * torch.rand(1, generator=generator, device="cpu"))  # host generator
    cdf = torch.tensor([weights[m] for m in names], dtype=torch.float64).cumsum(0)
    u = float(torch.rand(1, generator=generator, dtype=torch.float64, device="cpu")) * float(cdf[-1])
    mode = names[min(int(torch.searchsorted(cdf, torch.tensor([u], dtype=torch.float64), right=True)), len(names) - 1)]
    if mode == "albedo":
        ambient = 1.0
    if camera is not None:
        light = light_around_camera(camera, generator)
    else:
        light = F.normalize(torch.randn(3, generator=generator, device="cpu"), dim=0)
    return mode, ambient, light
