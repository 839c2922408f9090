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


def prior_switches(perf: PerfConfig) -> set[str]:
    """The switches ``perf`` asks for on each latent prior (what ``optimise_priors`` applies)."""
    return {name for name in ("channels_last", "compile") if getattr(perf, name)}


def field_switches(perf: PerfConfig) -> set[str]:
    return {"compile"} if perf.compile else set()


def _applied(module) -> set[str]:
    # The switches already applied to a module, kept on it: priors are shared between trainers
    # (the benchmark builds eager then optimised trainers on the same priors), so each switch
    # is applied by the first trainer that asks for it, never marked done by one that did not.
    if not hasattr(module, "_perf_applied"):
        module._perf_applied = set()
    return module._perf_applied


def optimise_priors(priors, perf: PerfConfig) -> dict[str, set[str]]:
    """channels_last and torch.compile for the frozen UNets and VAEs of both latent priors.
    Returns, per prior present, the switches in effect on it."""
    out = {}
    for name in ("zero123", "stable_diffusion"):
        prior = getattr(priors, name)
        if prior is None:
            continue
        done = _applied(prior)
        if perf.channels_last and "channels_last" not in done:
            prior.unet.to(memory_format=torch.channels_last)
            prior.vae.to(memory_format=torch.channels_last)
            done.add("channels_last")
        if perf.compile and "compile" not in done:
            # Fixed shapes every iteration (batch 2 for guidance): CUDA graphs apply.
            _compile(prior.unet, perf, mode=perf.compile_mode)
            done.add("compile")
        out[name] = set(done)
    return out


def optimise_field(field: torch.nn.Module, perf: PerfConfig) -> dict[str, set[str]]:
    """torch.compile the field's MLP (the NeRF's ``mlp``, the mesh's ``color_net``); its batch
    changes every iteration, so dynamic shapes and no CUDA graphs. The hash grid stays as it
    is (tcnn's fused kernel on CUDA, the custom autograd function on the CPU). Returns, per
    MLP present, the switches in effect on it."""
    out = {}
    for name in ("mlp", "color_net"):
        mlp = getattr(field, name, None)
        if mlp is None:
            continue
        done = _applied(mlp)
        if perf.compile and "compile" not in done:
            _compile(mlp, perf, dynamic=True)
            done.add("compile")
        out[name] = set(done)
    return out


def applied_switches(priors, field) -> dict[str, set[str]]:
    """Per latent prior and MLP of ``field`` present, the switches in effect on it."""
    parts = {"zero123": priors.zero123, "stable_diffusion": priors.stable_diffusion}
    parts |= {name: getattr(field, name, None) for name in ("mlp", "color_net")}
    return {name: set(getattr(m, "_perf_applied", set())) for name, m in parts.items() if m is not None}


def missing_switches(applied: dict[str, set[str]], perf: PerfConfig) -> list[str]:
    """What ``perf`` asks for that ``applied`` (``applied_switches``) lacks, one line per part."""
    want = {"zero123": prior_switches(perf), "stable_diffusion": prior_switches(perf)}
    want |= {"mlp": field_switches(perf), "color_net": field_switches(perf)}
    return [f"{part}: {sorted(want[part] - got)}" for part, got in applied.items() if want[part] - got]


class TargetCache:
    """Reference-view targets at a render size, composited on the iteration's background (a
    colour [3] or one per pixel [H, W, 3]; the same formula as ``Case.targets``). With ``keep``
    (``perf.cache_targets``) the resized images stay on the device and only the compositing is
    redone per iteration; without it they are resized and copied over every time."""

    def __init__(self, case, device: torch.device, rule: str, keep: bool = True):
        self.case, self.device, self.keep, self._by_size = case, torch.device(device), keep, {}
        self.rule = rule  # loss.reference_targets

    def _on_black(self, size: int) -> dict[str, torch.Tensor]:
        if size in self._by_size:
            return self._by_size[size]
        black = self.case.targets(size, torch.zeros(3), self.rule)  # rgb * mask + 0 * (1 - mask)
        black = {k: v.to(self.device) for k, v in black.items()}
        if self.keep:
            self._by_size[size] = black
        return black

    def targets(self, size: int, bg: torch.Tensor) -> dict[str, torch.Tensor]:
        black = self._on_black(size)
        out = dict(black)
        out["rgb"] = black["rgb"] + bg.to(self.device).expand_as(black["rgb"]) * (1 - black["mask"])
        return out


def release_encoders(trainer, perf: PerfConfig) -> None:
    """``perf.free_encoders``: cache the reference image's and the prompt's embeddings, then drop
    the encoders that made them (never called again in a run)."""
    if not perf.free_encoders:
        return
    trainer._prepare_priors()
    for prior, name in ((trainer.priors.zero123, "image_encoder"), (trainer.priors.stable_diffusion, "text_encoder")):
        if prior is not None and getattr(prior, name, None) is not None:
            setattr(prior, name, None)
    if trainer.device.type == "cuda":
        torch.cuda.empty_cache()


def host_values(rows: list[dict]) -> None:
    """Replace the device scalars in ``rows`` (in place) by floats, with one transfer for all."""
    keys = [(i, k) for i, row in enumerate(rows) for k, v in row.items() if isinstance(v, torch.Tensor)]
    if not keys:
        return
    values = torch.stack([rows[i][k].float().reshape(()) for i, k in keys]).tolist()
    for (i, k), v in zip(keys, values):
        rows[i][k] = v
