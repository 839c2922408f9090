"""The speed switches of ``cfg.perf``, applied from outside the method's code.

Each switch leaves what is optimised unchanged (tests/test_perf.py compares losses and
gradients with the plain path on the CPU); ``benchmarks/iteration_speed.py`` times them.
"""
from __future__ import annotations

import torch


def configure_backends(perf, device: torch.device) -> None:
    """Process-wide numerics switches: TF32 (CUDA only; the CPU ignores them)."""
    if perf.tf32 and torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def _compile(module: torch.nn.Module, perf, **kwargs) -> None:
    # In place (nn.Module.compile): the state-dict keys and attributes stay those of the module.
    module.compile(backend=perf.compile_backend, **kwargs)


def optimise_priors(priors, perf) -> None:
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


def optimise_field(field: torch.nn.Module, perf) -> None:
    """torch.compile the field's MLP (the NeRF's ``mlp``, the mesh's ``color_net``); its batch
    changes every iteration, so dynamic shapes and no CUDA graphs. The hash grid stays as it
    is (tcnn's fused kernel on CUDA, the custom autograd function on the CPU)."""
    for name in ("mlp", "color_net"):
        mlp = getattr(field, name, None)
        if perf.compile and mlp is not None and not getattr(mlp, "_perf_applied", False):
            _compile(mlp, perf, dynamic=True)
            mlp._perf_applied = True


class TargetCache:
    """Reference-view targets resized once per render size and kept on the device; only the
    random background is composited per iteration (the same formula as ``Case.targets``)."""

    def __init__(self, case, device: torch.device):
        self.case, self.device, self._by_size = case, torch.device(device), {}

    def targets(self, size: int, bg: torch.Tensor) -> dict[str, torch.Tensor]:
        if size not in self._by_size:
            black = self.case.targets(size, torch.zeros(3))  # rgb * mask + 0 * (1 - mask)
            self._by_size[size] = {k: v.to(self.device) for k, v in black.items()}
        cached = self._by_size[size]
        out = dict(cached)
        out["rgb"] = cached["rgb"] + bg.to(self.device).view(1, 1, 3) * (1 - cached["mask"])
        return out


def host_values(rows: list[dict]) -> None:
    """Replace the device scalars in ``rows`` (in place) by floats, with one transfer for all."""
    keys = [(i, k) for i, row in enumerate(rows) for k, v in row.items() if isinstance(v, torch.Tensor)]
    if not keys:
        return
    values = torch.stack([rows[i][k].float().reshape(()) for i, k in keys]).tolist()
    for (i, k), v in zip(keys, values):
        rows[i][k] = v
