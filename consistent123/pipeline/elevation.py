"""The input view's elevation of one run: known, configured, or estimated once (and kept).

Order: a known elevation the case records (``consistent123 preprocess --elevation``), then
``cameras.ref_elevation`` when it is a number (the paper's 0 by default), then ``auto``: the
estimate of consistent123.priors.elevation with the loaded 3D prior, written to the case's
elevation.json under that prior's name, so a resumed or repeated run reuses it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from consistent123.case import ELEVATION, given_elevation, load_case, read_elevation_record
from consistent123.config import Config, config_from_dict
from consistent123.errors import ConfigError
from consistent123.io import atomic_write_json
from consistent123.locks import store_lock

log = logging.getLogger(__name__)


def check_elevation_known(case_dir: str | Path, cfg: Config) -> None:
    """Stable Zero123 without an elevation (given, set, or auto) stops here in one line, before any model loads."""
    from consistent123.priors.variants import variant_of

    variant = variant_of(cfg)
    explicit = "ref_elevation" in cfg.cameras.model_fields_set
    if variant.needs_elevation and not explicit and given_elevation(case_dir) is None:
        raise ConfigError(
            f"models.prior_3d={variant.name} needs the input view's elevation: set cameras.ref_elevation "
            f"(degrees or auto) or record it with `consistent123 preprocess --elevation DEG`"
        )


def _prior_key(cfg: Config, prior) -> str:
    return f"{cfg.models.prior_3d}:{getattr(prior, 'name', type(prior).__name__)}"


def resolve_input_elevation(case_dir: str | Path, cfg: Config, prior: Optional[object]) -> tuple[Config, dict]:
    """(the run's config with a numeric ``cameras.ref_elevation``, the record of where it came from)."""
    case_dir = Path(case_dir)
    given = given_elevation(case_dir)
    setting = cfg.cameras.ref_elevation
    if given is not None:
        if setting not in ("auto", given) and "ref_elevation" in cfg.cameras.model_fields_set:
            log.warning("%s records elevation %g; cameras.ref_elevation=%s is not used", case_dir, given, setting)
        record = {"elevation": given, "source": "given"}
    elif setting != "auto":
        record = {"elevation": float(setting), "source": "config"}
    else:
        record = _estimate_once(case_dir, cfg, prior)
    resolved = config_from_dict(cfg.model_dump(mode="json"), [f"cameras.ref_elevation={record['elevation']}"])
    return resolved, record


def _estimate_once(case_dir: Path, cfg: Config, prior: Optional[object]) -> dict:
    from consistent123.priors.elevation import estimate_elevation
    from consistent123.priors.variants import variant_of

    if prior is None or not hasattr(prior, "generate"):
        raise ConfigError("cameras.ref_elevation=auto needs the 3D prior (train.use_priors=true)")
    key = _prior_key(cfg, prior)
    settings = cfg.elevation.model_dump(mode="json")
    with store_lock(case_dir / ".elevation.lock"):  # runs of one case wait for the first estimate
        stored = read_elevation_record(case_dir)
        earlier = stored.get("auto", {}).get(key)
        if earlier and earlier.get("settings") == settings:
            log.info("%s: input elevation %.1f deg (estimated earlier with %s)", case_dir, earlier["elevation"], key)
            return {
                "elevation": earlier["elevation"],
                "source": "auto",
                "prior": key,
                "prior_evaluations": earlier["prior_evaluations"],
                "reused": True,
            }
        case = load_case(case_dir)
        estimate = estimate_elevation(
            prior, case.rgba, cfg.cameras, cfg.elevation, needs_elevation=variant_of(cfg).needs_elevation
        )
        entry = {**estimate.as_dict(), "settings": settings}
        stored.setdefault("given", None)
        stored.setdefault("auto", {})[key] = entry
        atomic_write_json(case_dir / ELEVATION, stored)
    log.info(
        "%s: input elevation %.1f deg estimated with %s (%d prior evaluations)",
        case_dir,
        estimate.elevation,
        key,
        estimate.prior_evaluations,
    )
    return {
        "elevation": estimate.elevation,
        "source": "auto",
        "prior": key,
        "prior_evaluations": estimate.prior_evaluations,
    }
