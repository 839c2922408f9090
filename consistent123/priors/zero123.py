"""The 3D prior: Zero-1-to-3 (XL) in diffusers format, SDS for novel views (spec §4, P Eq. 4).

Conditioning (as in Zero-1-to-3's ldm code, stable-dreamfusion and threestudio):
  * cross-attention: cc_projection( CLIP image embedding of the reference ⊕
    [Δpolar (rad), sin Δazimuth, cos Δazimuth, Δradius] ), one token;
  * concat: the reference latent ``vae.encode(2·ref − 1).mode()`` (NOT multiplied by the VAE
    scaling factor, as Zero-1-to-3 was trained), concatenated to the noisy latent -> 8 channels;
  * unconditional branch for guidance: both conditionings zeroed.
The camera vector comes from ``render.cameras.CAMERA_LAYOUTS`` only: Zero-1-to-3's
``zero123_embedding`` or Stable Zero123's ``stable_zero123_embedding`` (the variant's layout,
consistent123/priors/variants.py).

A repo is a folder / hub id with unet, vae, image_encoder, feature_extractor, scheduler and
the camera projection, stored as a diffusers-style folder (``clip_camera_projection/`` in
ashawkey/bennyguo's repos, ``cc_projection/`` in kxic's) holding a single Linear. It is read
into a plain ``nn.Linear`` (dims from the weights); no remote code, no pickles.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from consistent123.backends import prior_dtype
from consistent123.config import Config
from consistent123.priors import hub
from consistent123.priors.base import LatentSDSPrior, frozen, load_scheduler, resize
from consistent123.priors.sampling import ddim_sample
from consistent123.render.cameras import CAMERA_LAYOUTS, Camera, orbit_position

PROJECTION_FOLDERS = ("clip_camera_projection", "cc_projection")


# ---------------------------------------------------------------- loading
def _repo_file(source: str, subfolder: str, filename: str, cache_dir: Optional[str]) -> Optional[Path]:
    """A file of a local folder or hub repo; None when the repo does not have it."""
    if hub.is_local(source):
        path = Path(source) / subfolder / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(source, filename, subfolder=subfolder or None, cache_dir=cache_dir))
    except LocalEntryNotFoundError:
        raise  # offline and not cached: the caller reports it
    except EntryNotFoundError:
        return None


def _projection_folders(source: str, cache_dir: Optional[str]) -> list[str]:
    """The projection's folder name, from model_index.json when the repo has one."""
    index = _repo_file(source, "", "model_index.json", cache_dir)
    if index is not None:
        names = [k for k in json.loads(index.read_text()) if k in PROJECTION_FOLDERS]
        if names:
            return names
    return list(PROJECTION_FOLDERS)


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects


def load_camera_projection(
    source: str, cache_dir: Optional[str] = None, variant: Optional[str] = None
) -> torch.nn.Linear:
    """cc_projection as an ``nn.Linear(embedding_dim + 4, embedding_dim)`` (772 -> 768 for the real one)."""
    stem = "diffusion_pytorch_model" + (f".{variant}" if variant else "")
    for folder in _projection_folders(source, cache_dir):
        for filename in (f"{stem}.safetensors", f"{stem}.bin"):
            path = _repo_file(source, folder, filename, cache_dir)
            if path is None:
                continue
            state = _read_state_dict(path)
            weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
            biases = [v for k, v in state.items() if k.endswith("bias") and v.dim() == 1]
            if len(weights) != 1 or len(biases) != 1:
                raise ValueError(
                    f"{path}: expected one Linear layer in the camera projection, found keys {sorted(state)}"
                )
            out_dim, in_dim = weights[0].shape
            linear = torch.nn.Linear(in_dim, out_dim)
            linear.load_state_dict({"weight": weights[0].float(), "bias": biases[0].float()})
            return linear
    raise FileNotFoundError(
        f"no camera projection weights ({'/'.join(PROJECTION_FOLDERS)}/{stem}.safetensors) in {source}"
    )


def _load_components(source: str, cache_dir: Optional[str] = None, dtype=torch.float32, variant: Optional[str] = None):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    kw = dict(cache_dir=cache_dir)
    return dict(
        unet=UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype, variant=variant, **kw),
        vae=AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype, variant=variant, **kw),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(
            source, subfolder="image_encoder", variant=variant, **kw
        ),
        feature_extractor=CLIPImageProcessor.from_pretrained(source, subfolder="feature_extractor", **kw),
        scheduler=load_scheduler(source, cache_dir=cache_dir),
        cc_projection=load_camera_projection(source, cache_dir=cache_dir, variant=variant),
    )


def _crop_size(feature_extractor) -> tuple[int, int]:
    """(height, width) the CLIP image encoder expects (dict, SizeDict or int across versions)."""
    crop = feature_extractor.crop_size
    if isinstance(crop, int):
        return crop, crop
    get = (lambda k: crop[k]) if isinstance(crop, dict) else (lambda k: getattr(crop, k))
    return int(get("height")), int(get("width"))


# ---------------------------------------------------------------- the angle scaling of R
def view_angle(cam: Camera, reference: Camera) -> float:
    """Angle (degrees) between the directions from the object centre to the two cameras."""
    a = orbit_position(cam.polar, cam.azimuth, 1.0)
    b = orbit_position(reference.polar, reference.azimuth, 1.0)
    return math.degrees(math.acos(max(-1.0, min(1.0, float(torch.dot(a, b))))))


def angle_grad_scale(cams: Sequence[Camera], reference: Camera) -> torch.Tensor:
    """stable-dreamfusion's ``zero123_grad_scale='angle'`` with one reference view:
    scale = angle(view, reference) / 180, so views near the known one get little 3D-prior push.

    The angle is the true one between the two viewing directions; R computes its angle on
    (radius, polar, azimuth) vectors instead, which only approximates it."""
    return torch.tensor([view_angle(c, reference) / 180.0 for c in cams], dtype=torch.float32)


# ---------------------------------------------------------------- the 3D prior
class Zero123Prior(LatentSDSPrior):
    """Image- and camera-conditioned SDS: ``set_reference`` once, ``sds`` for novel views."""

    def __init__(self, components: dict, cfg: Config, device, dtype: torch.dtype, name: str, layout: str = "zero123"):
        super().__init__(
            components, device, dtype, name, cfg.sds.zero123_resolution, cfg.sds.guidance_scale_3d, cfg.sds.grad_clip
        )
        self.image_encoder = frozen(components["image_encoder"], self.device, dtype)
        self.cc_projection = frozen(components["cc_projection"], self.device, dtype)
        fe = components["feature_extractor"]
        self.clip_size = _crop_size(fe)
        self.clip_mean = torch.tensor(fe.image_mean, device=self.device).view(1, 3, 1, 1)
        self.clip_std = torch.tensor(fe.image_std, device=self.device).view(1, 3, 1, 1)
        self.grad_scale_mode = cfg.sds.zero123_grad_scale
        self.layout = layout
        self.camera_vector = CAMERA_LAYOUTS[layout]
        self.reference_camera: Optional[Camera] = None
        self.image_embedding: Optional[torch.Tensor] = None  # [1, 1, D]
        self.reference_latent: Optional[torch.Tensor] = None  # [1, 4, h, w], unscaled

    @classmethod
    def from_config(cls, cfg: Config, device, source: Optional[str] = None) -> "Zero123Prior":
        from consistent123.priors.variants import prior_3d_source, variant_of

        source = source or prior_3d_source(cfg)
        dtype = prior_dtype(cfg, device)
        parts = hub.load_pretrained(
            _load_components,
            source,
            f"Zero-1-to-3 {source}",
            "models.zero123",
            cache_dir=cfg.models.cache_dir,
            dtype=dtype,
            variant=getattr(cfg.models, "zero123_variant", None),
        )
        return cls(parts, cfg, device, dtype, source, variant_of(cfg).layout)

    @torch.no_grad()
    def encode_image(self, rgb: torch.Tensor) -> torch.Tensor:
        """CLIP image embedding (projected, unnormalised as Zero-1-to-3 uses it): [B, 1, D]."""
        x = F.interpolate(rgb.float(), self.clip_size, mode="bicubic", align_corners=False, antialias=True)
        x = (x.clamp(0, 1) - self.clip_mean) / self.clip_std
        return self.image_encoder(pixel_values=x.to(self.dtype)).image_embeds.unsqueeze(1)

    @torch.no_grad()
    def set_reference(self, rgb: torch.Tensor, ref_cam: Camera) -> None:
        """The conditioning image (reference view, [1,3,H,W] in [0,1]) and its camera."""
        rgb = resize(rgb.to(self.device, torch.float32), self.resolution)
        self.image_embedding = self.encode_image(rgb)
        self.reference_latent = self.vae.encode(rgb.to(self.dtype) * 2.0 - 1.0).latent_dist.mode()
        self.reference_camera = ref_cam

    def camera_conditioning(self, cams: Sequence[Camera]) -> torch.Tensor:
        """cc_projection(image embedding ⊕ camera) for each view: [B, 1, D]."""
        pose = torch.stack([self.camera_vector(c, self.reference_camera) for c in cams]).to(self.device, self.dtype)
        emb = self.image_embedding.expand(len(cams), -1, -1)
        return self.cc_projection(torch.cat([emb, pose[:, None, :]], dim=-1))

    @torch.no_grad()
    def predict_noise(
        self, noisy: torch.Tensor, t: torch.Tensor, cams: Sequence[Camera]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_uncond, eps_cond) in one UNet call; unconditional = both conditionings zeroed."""
        cond = self.camera_conditioning(cams)
        ref = self.reference_latent.expand(len(cams), -1, -1, -1)
        x = torch.cat([torch.cat([noisy, torch.zeros_like(ref)], 1), torch.cat([noisy, ref], 1)]).to(self.dtype)
        eps = self.unet(x, torch.cat([t, t]), encoder_hidden_states=torch.cat([torch.zeros_like(cond), cond])).sample
        return eps.chunk(2)

    def grad_scale(self, cams: Sequence[Camera]) -> Optional[torch.Tensor]:
        if self.grad_scale_mode == "angle":
            return angle_grad_scale(cams, self.reference_camera).to(self.device)
        return None

    @torch.no_grad()
    def generate(self, cams: Sequence[Camera], steps: int, guidance_scale: float, generator: torch.Generator):
        """Novel views [B,3,H,W] in [0,1] of the reference seen from ``cams`` (DDIM, eta 0)."""
        if self.reference_latent is None:
            raise RuntimeError("Zero123Prior.generate called before set_reference")
        size = self.resolution // 8
        latents = ddim_sample(
            lambda x, t: self.predict_noise(x.to(self.dtype), t, cams),
            (len(cams), 4, size, size),
            self.alphas_cumprod,
            steps,
            guidance_scale,
            generator,
            self.device,
        )
        rgb = self.vae.decode((latents / self.vae.config.scaling_factor).to(self.dtype)).sample
        return ((rgb.float() + 1.0) / 2.0).clamp(0, 1)

    def sds(
        self, rgb: torch.Tensor, cams: list[Camera], t_range, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict]:
        """SDS loss of views ``rgb`` [B,3,H,W] in [0,1] seen from ``cams``; gradient flows to ``rgb``."""
        if self.reference_latent is None:
            raise RuntimeError("Zero123Prior.sds called before set_reference")
        if len(cams) != rgb.shape[0]:
            raise ValueError(f"{rgb.shape[0]} images but {len(cams)} cameras")
        scale = self.grad_scale(cams)
        loss, info = self.distil(rgb, lambda noisy, t: self.predict_noise(noisy, t, cams), generator, t_range, scale)
        if scale is not None:
            info["grad_scale"] = scale
        return loss, info
