"""Peak GPU memory of each training phase, projected on any device (no GPU needed).

Per phase (stage 1: NeRF with Zero-1-to-3; stage 2: NeRF with both priors; mesh: DMTet with
both priors) the projection adds up what stays allocated through an iteration:

* prior weights: the frozen parts resident in that phase, in the priors' GPU dtype, counted
  from the full-size architectures built on ``torch.device("meta")`` (nothing allocated);
* field weights (parameters and buffers, e.g. the DMTet tet grid), gradients and optimiser
  state of the field being trained (fp32, the optimiser's own state after one step; in the NeRF
  phases also the moving average of its weights, train.ema_decay);
* activations: every tensor autograd saves for the backward of one novel-view iteration
  (render, then each prior's VAE encoder, through which SDS flows back) or of a reference-view
  iteration (render at the reference size), whichever is larger; counted with
  ``torch.autograd.graph.saved_tensors_hooks``, each storage once, floating-point tensors at
  the size of the dtype they have on the GPU (the autocast dtype for the field, the prior dtype
  for the VAEs). The VAE encoders run on meta tensors; the render runs for real on the device
  given (the CPU: the torch hash grid and rasteriser, which save more than tiny-cuda-nn).

Not counted: transients that are freed within the iteration (the UNets run without gradient;
their intermediate activations, cuDNN workspaces), the CUDA context (~0.5 GB) and allocator
fragmentation. ``preflight`` therefore compares against free memory with ``perf.memory_margin_gb``.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch

log = logging.getLogger(__name__)
PHASES = ("stage1", "stage2", "mesh")
PARTS = ("prior weights", "field weights", "gradients", "optimiser", "activations")
GB = 1e9


class SavedTensors:
    """Bytes of the tensors autograd saves inside the ``with`` block, each storage counted once;
    floating-point tensors at ``float_dtype``'s size when given (their dtype on the GPU)."""

    def __init__(self, float_dtype: Optional[torch.dtype] = None):
        self.float_dtype = float_dtype
        self.bytes = 0
        self._seen: set = set()
        self._keep: list = []  # meta tensors are keyed by identity: keep them alive meanwhile

    def _pack(self, t: torch.Tensor):
        if t.device.type == "meta":
            key, nbytes = ("meta", id(t)), t.numel() * t.element_size()
            self._keep.append(t)
        else:
            storage = t.untyped_storage()
            key, nbytes = ("real", storage.data_ptr()), storage.nbytes()
        if key not in self._seen:
            self._seen.add(key)
            if self.float_dtype is not None and t.is_floating_point():
                nbytes = nbytes * self.float_dtype.itemsize // t.element_size()
            self.bytes += nbytes
        return t

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        self._keep.clear()


def module_bytes(module: torch.nn.Module, float_dtype: Optional[torch.dtype] = None) -> int:
    """Parameters and buffers of ``module``; floating-point ones at ``float_dtype``'s size."""
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        size = float_dtype.itemsize if (float_dtype is not None and t.is_floating_point()) else t.element_size()
        total += t.numel() * size
    return total


# ---------------------------------------------------------------- the priors (meta device)
@dataclass
class MetaPriors:
    """The full-size prior parts on the meta device, grouped by the role they play."""

    zero123: dict
    stable_diffusion: dict
    clip_judge: torch.nn.Module

    @classmethod
    def build(cls) -> "MetaPriors":
        from consistent123.priors.standins import full_size

        return cls(
            full_size.zero123_components("meta"),
            full_size.stable_diffusion_components("meta"),
            full_size.clip_judge("meta").model,
        )

    def resident(self, phase: str, free_encoders: bool) -> dict[str, torch.nn.Module]:
        """The frozen modules held on the GPU during ``phase``. The authors keep every part for
        the whole run; ``free_encoders`` drops the image and text encoders once their embeddings
        are cached (before the first iteration) and the CLIP judge once stage 1 is over."""
        parts = {f"zero123.{k}": self.zero123[k] for k in ("unet", "vae", "cc_projection")}
        if not free_encoders:
            parts["zero123.image_encoder"] = self.zero123["image_encoder"]
        if phase != "stage1":
            parts |= {f"sd.{k}": self.stable_diffusion[k] for k in ("unet", "vae")}
            if not free_encoders:
                parts["sd.text_encoder"] = self.stable_diffusion["text_encoder"]
        if phase == "stage1" or not free_encoders:
            parts["clip_judge"] = self.clip_judge
        return parts


def vae_encoder_activations(vae, resolution: int, dtype: torch.dtype) -> int:
    """Saved bytes of one differentiable VAE encode of a [1,3,R,R] image (SDS's backward path)."""
    with SavedTensors(dtype) as saved:
        x = torch.zeros(1, 3, resolution, resolution, device="meta", dtype=torch.float32, requires_grad=True)
        vae.encode(x * 2.0 - 1.0).latent_dist.mode()
    return saved.bytes


# ---------------------------------------------------------------- the field (real, any device)
def _field_costs(field: torch.nn.Module, train_cfg, averaged: bool = False) -> dict[str, int]:
    """Field weights, gradients and optimiser state (the optimiser's own, after one step; with
    ``averaged`` also the moving average of the parameters, train.ema_decay)."""
    from consistent123.training.optimiser import make_optimizer

    trainable = [p for p in field.parameters() if p.requires_grad]
    optimizer = make_optimizer(field, train_cfg)
    for p in trainable:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    state = sum(
        t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)
    )
    for p in trainable:
        p.grad = None
    if averaged and train_cfg.ema_decay is not None:
        state += sum(p.numel() * p.element_size() for p in field.parameters())  # torch_ema's shadow copy
    return {
        "field weights": module_bytes(field),
        "gradients": sum(p.numel() * p.element_size() for p in trainable),
        "optimiser": state,
    }


def _render_activations(field, cfg, size: int, device, autocast_dtype: Optional[torch.dtype]) -> int:
    """Saved bytes of one render of ``field`` (worst shading: lambertian needs normals)."""
    from consistent123.render.cameras import Camera

    cam = Camera(cfg.cameras.ref_polar, cfg.cameras.ref_azimuth + 45.0, cfg.cameras.ref_radius, cfg.cameras.ref_fovy)
    normal_perturb = cfg.loss.normal_perturb if cfg.loss.lambda_normal_smooth_3d > 0 else 0.0
    cast = (
        torch.autocast(torch.device(device).type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    gen = torch.Generator(device=device).manual_seed(0)
    with SavedTensors(autocast_dtype) as saved, cast:
        out = field.render(
            cam,
            size,
            ("lambertian", 0.1, None),
            torch.ones(3, device=device),
            generator=gen,
            normal_perturb=normal_perturb,
        )
        out["rgb"].float().mean()
    return saved.bytes


@dataclass
class Projection:
    """Bytes per phase and part, and the switch set they were projected for."""

    switches: dict
    parts: dict = field(default_factory=dict)  # phase -> part -> bytes
    notes: list = field(default_factory=list)

    def peak(self, phase: Optional[str] = None) -> int:
        if phase is None:
            return max(self.peak(p) for p in self.parts)
        return sum(self.parts[phase].values())

    def table(self) -> str:
        head = f"{'phase':7s}" + "".join(f" {p:>14s}" for p in PARTS) + f" {'total':>8s}"
        rows = [head]
        for phase, parts in self.parts.items():
            rows.append(
                f"{phase:7s}" + "".join(f" {parts[p] / GB:14.2f}" for p in PARTS) + f" {self.peak(phase) / GB:8.2f}"
            )
        return "\n".join(rows)


def gpu_dtypes(cfg) -> tuple[torch.dtype, Optional[torch.dtype]]:
    """(priors' dtype, the field's autocast dtype) of a run of ``cfg`` on a CUDA device."""
    from consistent123.backends import prior_dtype

    return prior_dtype(cfg, torch.device("cuda")), torch.float16 if cfg.train.mixed_precision else None


def _fitted(count, size: int, fit: Optional[tuple[int, int]]) -> int:
    """``count(size)``, or with ``fit`` = (s1, s2) the line through ``count`` at s1² and s2²
    pixels evaluated at size² (saved tensors are per sample, per pixel, or independent of the
    image size: linear in the pixel count), so that a CPU need not render at the full size."""
    if fit is None or size <= max(fit):
        return count(size)
    (p1, c1), (p2, c2) = ((s * s, count(s)) for s in fit)
    return round(c1 + (c2 - c1) * (size * size - p1) / (p2 - p1))


def field_costs(cfg, device="cpu", phases=PHASES, fit: Optional[tuple[int, int]] = None) -> dict[str, dict[str, int]]:
    """Per phase: the field's weights, gradients, optimiser state and the saved activations of
    a novel-view and a reference-view render (the part of the projection that costs time; the
    memory switches leave it unchanged, so it is computed once for all of them). ``fit``: count
    the renders at these two sizes and extrapolate in pixels (``_fitted``)."""
    from consistent123.fields.dmtet import DMTetField
    from consistent123.fields.nerf import NeRFField

    device = torch.device(device)
    _, autocast_dtype = gpu_dtypes(cfg)
    # the torch backends wherever it runs (their saved tensors are what is counted)
    hashgrid = cfg.hashgrid.model_copy(update={"backend": "torch"})
    # The unseen fill's grid (a few MB, freed before training) does not count: off here.
    dmtet_cfg = cfg.dmtet.model_copy(
        update={"rasteriser_backend": "torch", "marching_backend": "torch", "unseen_fill": False}
    )
    torch.manual_seed(0)
    nerf = NeRFField(cfg.nerf, hashgrid).to(device)
    if cfg.nerf.sampler == "march":
        # A fresh grid counts every cell occupied: a marched ray would then evaluate all of its
        # max_steps candidates, a case no iteration meets (the trainer updates the grid before the
        # first render). Counted with the grid that first render sees (the density blob's cells);
        # the occupied volume, and with it this part, grows with the object.
        nerf.occupancy.update(nerf, torch.Generator().manual_seed(0))
    out = {}
    for phase in phases:
        if phase == "stage2" and "stage1" in out:
            out[phase] = dict(out["stage1"])  # the same NeRF; only the priors differ
            continue
        f = nerf if phase != "mesh" else DMTetField.from_nerf(nerf, dmtet_cfg, hashgrid, cfg.cameras)

        def count(size, f=f):
            return _render_activations(f, cfg, size, device, autocast_dtype)

        novel = _fitted(count, f.render_size(reference=False), fit)
        reference = _fitted(count, f.render_size(reference=True), fit)
        costs = _field_costs(f, cfg.train, averaged=phase != "mesh")
        out[phase] = {**costs, "novel render": novel, "reference render": reference}
        log.info("projected %s: field counted", phase)
    return out


def project(cfg, device="cpu", priors: Optional[MetaPriors] = None, fields: Optional[dict] = None) -> Projection:
    """The projection for a run of ``cfg`` on a CUDA device, computed on ``device`` (``fields``:
    ``field_costs`` of the same field configuration, reused)."""
    priors = priors or MetaPriors.build()
    fields = fields or field_costs(cfg, device)
    prior_dtype, _ = gpu_dtypes(cfg)
    free = cfg.perf.free_encoders
    proj = Projection({"prior_dtype": str(prior_dtype).replace("torch.", ""), "free_encoders": free})
    vae = {
        "zero123": vae_encoder_activations(priors.zero123["vae"], cfg.sds.zero123_resolution, prior_dtype),
        "sd": vae_encoder_activations(priors.stable_diffusion["vae"], cfg.sds.sd_resolution, prior_dtype),
    }
    for phase, f in fields.items():
        weights = sum(module_bytes(m, prior_dtype) for m in priors.resident(phase, free).values())
        novel = f["novel render"] + vae["zero123"] + (vae["sd"] if phase != "stage1" else 0)
        activations = max(novel, f["reference render"])
        proj.parts[phase] = {"prior weights": weights, **{k: f[k] for k in PARTS[1:4]}, "activations": activations}
    return proj


# ---------------------------------------------------------------- the switch sets, and the check
# Tried in this order until one fits: as configured, then each memory switch added to it.
CANDIDATES = (
    ("as configured", []),
    ("perf.free_encoders=true", ["perf.free_encoders=true"]),
    ("perf.prior_dtype=float16", ["perf.prior_dtype=float16"]),
    ("perf.prior_dtype=float16 perf.free_encoders=true", ["perf.prior_dtype=float16", "perf.free_encoders=true"]),
)


def candidates(cfg) -> dict:
    """label -> config for each switch set of ``CANDIDATES`` applied to ``cfg``, leaving out
    those that change nothing the projection depends on (e.g. fp16 where it already is)."""
    from consistent123.config import config_from_dict

    base = cfg.model_dump(mode="json")
    out, seen = {}, set()
    for label, extra in CANDIDATES:
        variant = config_from_dict(base, extra)
        key = (gpu_dtypes(variant)[0], variant.perf.free_encoders)
        if key not in seen:
            seen.add(key)
            out[label] = variant
    return out


def advise(peaks: dict[str, int], free_bytes: int, margin_bytes: int = 0) -> tuple[bool, str]:
    """(does the configured run fit, one line) from the projected peak of each switch set (the
    first key is the configuration as it stands) and the device's free memory."""
    label, first = next(iter(peaks.items()))
    budget = free_bytes - margin_bytes
    if first <= budget:
        return True, f"projected peak {first / GB:.1f} GB fits the {free_bytes / GB:.1f} GB free ({label})"
    for name, peak in list(peaks.items())[1:]:
        if peak <= budget:
            return False, (
                f"projected peak {first / GB:.1f} GB exceeds the {free_bytes / GB:.1f} GB free "
                f"(margin {margin_bytes / GB:.1f} GB); {name} would fit ({peak / GB:.1f} GB)"
            )
    best = min(peaks, key=peaks.get)
    return False, (
        f"projected peak {first / GB:.1f} GB exceeds the {free_bytes / GB:.1f} GB free "
        f"(margin {margin_bytes / GB:.1f} GB); no memory switch fits (smallest: {best}, {peaks[best] / GB:.1f} GB)"
    )


def preflight(cfg, device) -> Optional[str]:
    """On a CUDA device: project the run (and the switch sets that save memory), compare with
    the free memory and log one line (a warning when it does not fit). None elsewhere."""
    device = torch.device(device)
    if device.type != "cuda" or not cfg.perf.memory_preflight:
        return None
    if cfg.models.tiny_models_dir() is not None or cfg.models.prior_3d == "oracle" or not cfg.train.use_priors:
        return None  # projected for the full-size priors only (every Zero-1-to-3 variant shares the UNet)
    free, _ = torch.cuda.mem_get_info(device)
    priors = MetaPriors.build()
    fields = field_costs(cfg, device)
    torch.cuda.empty_cache()
    peaks = {label: project(variant, device, priors, fields).peak() for label, variant in candidates(cfg).items()}
    fits, line = advise(peaks, free, int(cfg.perf.memory_margin_gb * GB))
    (log.info if fits else log.warning)("memory pre-flight: %s", line)
    return line
