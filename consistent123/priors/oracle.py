"""The oracle prior: an ideal denoiser that knows the true object (the known-answer benchmark).

It fills either prior's role behind the same interface (``set_reference``/``set_prompt`` and
``sds(rgb, cams, t_range, generator)``) and runs the same ``score_distillation`` (same t draw,
noise, w(t), guidance, NaN guard and gradient scales). Only the noise prediction differs: for
the noisy image x_t = sqrt(ab) x + sqrt(1 - ab) eps it returns

    eps_hat = (x_t - sqrt(ab) x_gt) / sqrt(1 - ab)

so the denoised estimate x0_hat = (x_t - sqrt(1 - ab) eps_hat) / sqrt(ab) is exactly x_gt, the
ground truth rendered from the view's camera. Conditional and unconditional predictions are
the same (an ideal denoiser needs no guidance), so the guidance scale changes nothing.

Pixel space, not latent: x = 2 rgb - 1 at the prior's resolution. An ideal denoiser in the
latent space of a VAE needs a VAE whose latents decode to the truth; the only VAEs here have
random weights, and a real one cannot be downloaded. In pixel space the known answer is exact.

3D role (Zero-1-to-3's place): it is handed what Zero-1-to-3 is handed, the reference image and
camera and, per view, the relative pose [d_polar, sin d_az, cos d_az, d_radius] of
``zero123_embedding``; it rebuilds the absolute camera from those alone (Zero-1-to-3 has no
field-of-view input, so the reference's is used), so any slip in the pose convention renders
the truth from the wrong place. The pose is applied to the TRUE reference camera of the
render when the harness knows it (``oracle.reference_elevation``): a perfect Zero-1-to-3 sees
the photo as it was taken, whatever elevation the pipeline assumed. 2D role (Stable Diffusion's place): the rendered view and the
novel camera, nothing else.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from consistent123.config import Config, OracleConfig
from consistent123.priors.base import resize
from consistent123.priors.sampling import ddim_sample
from consistent123.priors.sds import score_distillation
from consistent123.render.cameras import Camera, zero123_embedding


def noise_levels(oracle_cfg: OracleConfig, num_train_timesteps: int) -> torch.Tensor:
    """alphas_cumprod of the DDPM schedule the real priors were trained with (config ``oracle``)."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=oracle_cfg.beta_start,
        beta_end=oracle_cfg.beta_end,
        beta_schedule=oracle_cfg.beta_schedule,
    )
    return scheduler.alphas_cumprod.float()


def ideal_noise(
    noisy: torch.Tensor, target: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """The eps whose one-step estimate x0_hat is ``target`` (the ideal denoiser's prediction)."""
    ab = alphas_cumprod.to(noisy.device)[t.to(noisy.device)].view(-1, *([1] * (noisy.dim() - 1)))
    return (noisy.float() - ab.sqrt() * target.float()) / (1.0 - ab).sqrt()


def predicted_x0(noisy: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - ab) eps) / sqrt(ab): what a denoiser's eps says the clean image is."""
    ab = alphas_cumprod.to(noisy.device)[t.to(noisy.device)].view(-1, *([1] * (noisy.dim() - 1)))
    return (noisy.float() - (1.0 - ab).sqrt() * eps.float()) / ab.sqrt()


def camera_from_pose(pose: torch.Tensor, reference: Camera, flip_azimuth: bool = False) -> Camera:
    """The absolute camera from Zero-1-to-3's relative pose and the reference camera (inverse of
    ``zero123_embedding``; the field of view is the reference's, as Zero-1-to-3 assumes)."""
    d_polar, sin_az, cos_az, d_radius = (float(v) for v in pose)
    d_az = math.degrees(math.atan2(sin_az, cos_az))
    if flip_azimuth:
        d_az = -d_az
    return Camera(
        reference.polar + math.degrees(d_polar), reference.azimuth + d_az, reference.radius + d_radius, reference.fovy
    )


class GroundTruth:
    """A coloured mesh in the scene's frame, rendered on white like the trainer's novel views."""

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, device, backend: str = "auto"):
        self.device = torch.device(device)
        self.verts, self.faces = verts.to(self.device).float(), faces.to(self.device).long()
        self.colours = colours.to(self.device).float()
        self.backend = backend

    @classmethod
    def from_file(cls, path: str | Path, device, backend: str = "auto") -> "GroundTruth":
        from consistent123.meshes import load_mesh

        mesh = load_mesh(path)
        colours = mesh_vertex_colours(mesh)
        if colours is None:
            from consistent123.errors import InputError

            raise InputError(
                f"{path}: the oracle's ground truth needs vertex colours (write it with `consistent123 known-answer`)"
            )
        return cls(
            torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32),
            torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64),
            torch.as_tensor(colours),
            device,
            backend,
        )

    @torch.no_grad()
    def render(self, cams: Sequence[Camera], size: int) -> torch.Tensor:
        """[B, 3, size, size] in [0, 1] on white."""
        from consistent123.render.rasterize import render_mesh

        out = [
            render_mesh(
                self.verts,
                self.faces,
                cam,
                size,
                size,
                vertex_colors=self.colours,
                bg_color=(1.0, 1.0, 1.0),
                backend=self.backend,
            )["rgb"]
            for cam in cams
        ]
        return torch.stack(out).permute(0, 3, 1, 2).clamp(0, 1)


def mesh_vertex_colours(mesh) -> Optional[np.ndarray]:
    """float32 [V, 3] in [0, 1] from a mesh's vertex colours or texture; None when it has neither."""
    visual = mesh.visual
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        visual = visual.to_color()  # the texture sampled at each vertex's uv
        kind = visual.kind
    if kind in ("vertex", "face"):
        return np.asarray(visual.vertex_colors, dtype=np.float32)[:, :3] / 255.0
    return None


class OraclePrior:
    """One role of the oracle; ``role`` is "3d" (Zero-1-to-3's inputs) or "2d" (Stable Diffusion's + camera)."""

    def __init__(self, truth: GroundTruth, cfg: Config, role: str, device):
        if role not in ("3d", "2d"):
            raise ValueError(f"oracle role must be '3d' or '2d', got {role!r}")
        self.truth, self.role, self.device = truth, role, torch.device(device)
        self.name = f"oracle-{role}"
        # What answered, for the run's provenance (consistent123.priors.provenance): the truth.
        mesh = Path(cfg.oracle.mesh).name if cfg.oracle.mesh else "the given ground truth"
        self.origin = {"source": f"oracle:{mesh}", "weights": "oracle"}
        self.num_train_timesteps = cfg.sds.num_train_timesteps
        self.alphas_cumprod = noise_levels(cfg.oracle, self.num_train_timesteps).to(self.device)
        sds = cfg.sds
        self.resolution = sds.zero123_resolution if role == "3d" else sds.sd_resolution
        self.guidance_scale = sds.guidance_scale_3d if role == "3d" else sds.guidance_scale_2d
        self.grad_clip = sds.grad_clip
        self.grad_scale_mode = sds.zero123_grad_scale if role == "3d" else "none"
        self.flip_azimuth = cfg.oracle.flip_azimuth
        self.true_elevation = cfg.oracle.reference_elevation
        self.level_polar = cfg.cameras.ref_polar
        self.reference_camera: Optional[Camera] = None  # as handed over by the pipeline
        self.true_reference: Optional[Camera] = None  # where the photo was really taken from

    @classmethod
    def from_config(cls, cfg: Config, device, role: str) -> "OraclePrior":
        if not cfg.oracle.mesh:
            from consistent123.errors import ConfigError

            raise ConfigError("oracle.mesh: the oracle prior needs a ground-truth mesh")
        return cls(GroundTruth.from_file(cfg.oracle.mesh, device), cfg, role, device)

    # the two set-up calls of the real priors
    def set_reference(self, rgb: torch.Tensor, ref_cam: Camera) -> None:
        self.reference_camera = ref_cam  # the image itself is not needed: the oracle knows the object
        self.true_reference = ref_cam
        if self.true_elevation is not None:
            self.true_reference = Camera(
                self.level_polar - self.true_elevation, ref_cam.azimuth, ref_cam.radius, ref_cam.fovy
            )

    def set_prompt(self, text: str) -> None:
        pass  # the caption adds nothing the oracle does not know

    def target_cameras(self, cams: Sequence[Camera]) -> list[Camera]:
        """The cameras the truth is rendered from: rebuilt from the relative pose (3D) or as given (2D)."""
        if self.role == "2d":
            return list(cams)
        if self.reference_camera is None:
            raise RuntimeError("oracle 3D prior: sds called before set_reference")
        return [
            camera_from_pose(zero123_embedding(c, self.reference_camera), self.true_reference, self.flip_azimuth)
            for c in cams
        ]

    def grad_scale(self, cams: Sequence[Camera]) -> Optional[torch.Tensor]:
        if self.grad_scale_mode == "angle":
            from consistent123.priors.zero123 import angle_grad_scale

            return angle_grad_scale(cams, self.reference_camera).to(self.device)
        return None

    @torch.no_grad()
    def generate(self, cams: Sequence[Camera], steps: int, guidance_scale: float, generator: torch.Generator):
        """Views [B,3,H,W] in [0,1] by the same DDIM loop as Zero-1-to-3's: with the ideal noise
        every clean estimate is the truth, so the sample is the truth's render from ``cams``."""
        target = self.truth.render(self.target_cameras(cams), self.resolution).to(self.device) * 2.0 - 1.0

        def predict(noisy, t):
            eps = ideal_noise(noisy, target, t, self.alphas_cumprod)
            return eps, eps

        x = ddim_sample(
            predict, tuple(target.shape), self.alphas_cumprod, steps, guidance_scale, generator, self.device
        )
        return ((x + 1.0) / 2.0).clamp(0, 1)

    def sds(
        self, rgb: torch.Tensor, cams: Sequence[Camera], t_range, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]:
        """SDS loss of views ``rgb`` [B,3,H,W] in [0,1] seen from ``cams``; gradient flows to ``rgb``."""
        if len(cams) != rgb.shape[0]:
            raise ValueError(f"{rgb.shape[0]} images but {len(cams)} cameras")
        target = self.truth.render(self.target_cameras(cams), self.resolution).to(self.device) * 2.0 - 1.0
        x = resize(rgb.to(self.device), self.resolution) * 2.0 - 1.0

        def predict(noisy, t):
            eps = ideal_noise(noisy, target, t, self.alphas_cumprod)
            return eps, eps

        scale = self.grad_scale(cams)
        loss, info = score_distillation(
            x,
            predict,
            self.alphas_cumprod,
            t_range,
            self.guidance_scale,
            generator,
            grad_scale=scale,
            grad_clip=self.grad_clip,
            num_train_timesteps=self.num_train_timesteps,
        )
        info["target"] = target.detach()
        if scale is not None:
            info["grad_scale"] = scale.cpu()
        return loss, info
