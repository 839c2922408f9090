"""Which implementation runs each accelerated part of a run: one rule, one error type.

Three parts have a pure-PyTorch implementation (any device, the reference) and may have a
CUDA library behind the same interface:

============== ======================== ================ ======================
part           config key               CUDA library     imported as
============== ======================== ================ ======================
hash grid      hashgrid.backend         tinycudann       ``tinycudann``
rasteriser     dmtet.rasteriser_backend nvdiffrast       ``nvdiffrast.torch``
marching tets  dmtet.marching_backend   (none: torch)    --
============== ======================== ================ ======================

The rule, the same for every part:

* ``torch`` is always the pure-PyTorch implementation.
* ``auto`` is the CUDA library when the run's device (``train.device``) is a CUDA device and
  the library loads; otherwise ``torch``. On a CUDA device the fallback is logged as a warning
  with the reason (not installed, or installed but failing to load, e.g. tinycudann's
  ``EnvironmentError`` when no build matches the GPU), because it makes the run several times
  slower.
* Naming the CUDA library explicitly and not getting it is a ``BackendError``, one line with
  the reason.

Loading is tried once per process; every exception a broken build raises (ImportError,
OSError/EnvironmentError, RuntimeError...) counts as "does not load", never as a crash.

kaolin's marching tetrahedra is not offered: kaolin's releases refuse torch newer than the one
they were built for (the current one stops at torch 2.12.1, this project pins 2.14.1) and PyPI
only has a placeholder; docs/gpu.md gives the details.
"""

from __future__ import annotations

import functools
import importlib
import logging
from dataclasses import asdict, dataclass
from typing import Optional

import torch

from consistent123.config import Config
from consistent123.errors import ConfigError

log = logging.getLogger(__name__)


class BackendError(ConfigError):
    """A backend that was asked for by name cannot run here (one line, with the reason)."""


@dataclass(frozen=True)
class Part:
    key: str  # the config key that chooses it
    cuda: Optional[str]  # the CUDA library's backend name, None when there is none
    module: Optional[str]  # what to import to know the library loads


PARTS = {
    "hashgrid": Part("hashgrid.backend", "tcnn", "tinycudann"),
    "rasteriser": Part("dmtet.rasteriser_backend", "nvdiffrast", "nvdiffrast.torch"),
    "marching_tets": Part("dmtet.marching_backend", None, None),
}


def choices(part: str) -> tuple[str, ...]:
    spec = PARTS[part]
    return ("auto", "torch") + ((spec.cuda,) if spec.cuda else ())


@functools.cache
def load_failure(module: str) -> Optional[str]:
    """None when ``module`` imports; otherwise why not (one line)."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return f"{module.split('.')[0]} is not installed"
        return f"{module} is installed but fails to load ({exc.__class__.__name__}: {exc})"
    except Exception as exc:  # a build for another GPU/CUDA: EnvironmentError, OSError, RuntimeError...
        return f"{module} is installed but fails to load ({exc.__class__.__name__}: {exc})"
    return None


def unavailable(part: str, device) -> Optional[str]:
    """None when ``part``'s CUDA library can run on ``device``; otherwise why not."""
    spec = PARTS[part]
    device = torch.device(device)
    if spec.cuda is None:
        return "no CUDA implementation is offered"
    if device.type != "cuda":
        return f"the run's device is {device}"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    return load_failure(spec.module)


def resolve(part: str, requested: str, device) -> str:
    """The backend name ``part`` uses on ``device`` when the config asks for ``requested``."""
    spec = PARTS[part]
    if requested not in choices(part):
        raise BackendError(f"{spec.key}={requested!r}: expected one of {', '.join(choices(part))}")
    if requested == "torch" or spec.cuda is None:
        return "torch"
    reason = unavailable(part, device)
    if reason is None:
        return spec.cuda
    if requested == spec.cuda:
        raise BackendError(
            f"{spec.key}={spec.cuda}: not usable here ({reason}); install it as docs/gpu.md "
            f"describes or set {spec.key}=auto"
        )
    if torch.device(device).type == "cuda":
        log.warning(
            "%s=auto: %s unusable (%s); falling back to the pure-PyTorch backend, which is slower",
            spec.key,
            spec.cuda,
            reason,
        )
    return "torch"


def default_device() -> torch.device:
    """Where modules are built when no device is named (CPU unless the default was changed)."""
    return torch.get_default_device()


@dataclass(frozen=True)
class Backends:
    """What one run uses: device, the three backends, and the numeric precisions."""

    device: str
    hashgrid: str
    rasteriser: str
    marching_tets: str
    priors_dtype: str  # the diffusion priors (fp16 on CUDA when models.half_precision_on_gpu)
    field_dtype: str  # hash tables and MLPs of the fields
    fallbacks: str = ""  # on a CUDA device: which "auto" part fell back to torch, and why

    def params(self) -> dict[str, str]:
        """MLflow params (``backend.*``)."""
        return {f"backend.{k}": str(v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self).items())

    def apply(self, cfg: Config):
        """``cfg`` with each ``auto`` replaced by the chosen backend (the fields read these)."""
        return cfg.model_copy(
            update={
                "hashgrid": cfg.hashgrid.model_copy(update={"backend": self.hashgrid}),
                "dmtet": cfg.dmtet.model_copy(
                    update={"rasteriser_backend": self.rasteriser, "marching_backend": self.marching_tets}
                ),
            }
        )


def resolve_all(cfg: Config, device) -> Backends:
    """The backends of a run of ``cfg`` on ``device`` (``train.device`` resolved)."""
    device = torch.device(device)
    requested = {
        "hashgrid": cfg.hashgrid.backend,
        "rasteriser": cfg.dmtet.rasteriser_backend,
        "marching_tets": cfg.dmtet.marching_backend,
    }
    chosen = {part: resolve(part, name, device) for part, name in requested.items()}
    fallbacks = [
        f"{part}: {unavailable(part, device)}"
        for part, name in requested.items()
        if device.type == "cuda" and name == "auto" and PARTS[part].cuda and chosen[part] == "torch"
    ]
    return Backends(
        device=str(device),
        **chosen,
        priors_dtype=str(prior_dtype(cfg, device)).replace("torch.", ""),
        field_dtype="float32",
        fallbacks="; ".join(fallbacks),
    )


def prior_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """The priors' precision: fp16 on CUDA when configured (spec §7); fp32 everywhere else; ``perf.prior_dtype`` overrides."""
    choice = getattr(getattr(cfg, "perf", None), "prior_dtype", "auto")
    if choice != "auto":
        return getattr(torch, choice)
    return torch.float16 if torch.device(device).type == "cuda" and cfg.models.half_precision_on_gpu else torch.float32
