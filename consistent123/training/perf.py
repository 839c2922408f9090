"""The speed switches of ``cfg.perf``, applied from outside the method's code.

Each switch leaves what is optimised unchanged (tests/integration/test_perf.py compares losses and
gradients with the plain path on the CPU); ``perf/iteration_speed.py`` times them.
"""

from __future__ import annotations

import torch

from consistent123.config import PerfConfig


def configure_backends(perf: PerfConfig, device: torch.device) -> None:
    """Process-wide numerics switches: TF32 (CUDA only; the CPU ignores them)."""
    if perf.tf32 and torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def _compile(module: torch.nn.Module, perf: PerfConfig, **kwargs) -> None:
    # In place (nn.Module.compile): the state-dict keys and attributes stay those of the module.
    module.compile(backend=perf.compile_backend, **kwargs)


def optimise_priors(priors, perf: PerfConfig) -> None:
    """channels_last and torch.compile for the frozen UNets and VAEs of both latent priors."""
    for prior in (priors.zero123, priors.stable_diffusion):
        if prior is None or getattr(prior, "_perf_applied", False):
            continue
        if perf.channels_last:
            prior.unet.to(memory_format=torch.channels_last)
            prior.vae.to(memory_format=torch.channels_last)
        if perf.compile:
            # Fixed shapes every iteration (batch 2 for guidance): CUDA graphs apply.
            _compile(prior.unet, perf, mode=perf.compile_mode)
        prior._perf_applied = True


def optimise_field(field: torch.nn.Module, perf: PerfConfig) -> None:
    """torch.compile the field's MLP (the NeRF's ``mlp``, the mesh's ``color_net``); its batch
    changes every iteration, so dynamic shapes and no CUDA graphs. The hash grid stays as it
    is (tcnn's fused kernel on CUDA, the custom autograd function on the CPU)."""
    for name in ("mlp", "color_net"):
        mlp = getattr(field, name, None)
        if perf.compile and mlp is not None and not getattr(mlp, "_perf_applied", False):
            _compile(mlp, perf, dynamic=True)
            mlp._perf_applied = True


class TargetCache:
    """Reference-view targets at a render size, composited on the iteration's background (a
    colour [3] or one per pixel [H, W, 3]; the same formula as ``Case.targets``). With ``keep``
    (``perf.cache_targets``) the resized images stay on the device and only the compositing is
    redone per iteration; without it they are resized and copied over every time."""

    def __init__(self, case, device: torch.device, keep: bool = True):
        self.case, self.device, self.keep, self._by_size = case, torch.device(device), keep, {}

    def _on_black(self, size: int) -> dict[str, torch.Tensor]:
        if size in self._by_size:
            return self._by_size[size]
        black = self.case.targets(size, torch.zeros(3))  # rgb * mask + 0 * (1 - mask)
        black = {k: v.to(self.device) for k, v in black.items()}
        if self.keep:
            self._by_size[size] = black
        return black

    def targets(self, size: int, bg: torch.Tensor) -> dict[str, torch.Tensor]:
        black = self._on_black(size)
        out = dict(black)
        out["rgb"] = black["rgb"] + bg.to(self.device).expand_as(black["rgb"]) * (1 - black["mask"])
        return out


def host_values(rows: list[dict]) -> None:
    """Replace the device scalars in ``rows`` (in place) by floats, with one transfer for all."""
    keys = [(i, k) for i, row in enumerate(rows) for k, v in row.items() if isinstance(v, torch.Tensor)]
    if not keys:
        return
    values = torch.stack([rows[i][k].float().reshape(()) for i, k in keys]).tolist()
    for (i, k), v in zip(keys, values):
        rows[i][k] = v
