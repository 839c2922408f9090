"""What a run really used: pretrained or random-weight models, read from the loaded files.

A model folder counts as random-weight exactly when the tiny-models manifest that built it
lists it (``consistent123.priors.standins``); a hub id is pretrained. Every loaded part carries
``origin``; ``loaded_models_record`` turns a run's parts into its record and MLflow tags.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from consistent123.priors.standins.constants import MANIFEST

RANDOM, REAL, NO_PRIORS, UNKNOWN, ORACLE = "random", "real", "none", "unknown", "oracle"

log = logging.getLogger(__name__)

# The stand-ins this process has loaded ({"random-weight": [...], "oracle": [...]}), so a command
# says so on its first line of work and again on its last (consistent123.cli).
_STAND_INS: dict[str, list[str]] = {}
STAND_IN_NOTE = "outputs exercise the pipeline and are not the method's results"


def note_stand_in(kind: str, what: str, where: str = "") -> None:
    """Record that a random-weight or oracle model was loaded; the first one of the process is
    announced at once (one warning line), the rest join the summary at the end."""
    first = not _STAND_INS
    names = _STAND_INS.setdefault(kind, [])
    if what not in names:
        names.append(what)
    if first:
        log.warning("%s model loaded (%s%s): %s", kind.upper(), what, f" from {where}" if where else "", STAND_IN_NOTE)


def forget_stand_ins() -> None:
    _STAND_INS.clear()


def stand_ins_loaded() -> dict[str, list[str]]:
    return {kind: list(names) for kind, names in _STAND_INS.items()}


def stand_ins_summary() -> str | None:
    """One line naming every stand-in this process loaded, or None when it loaded none."""
    if not _STAND_INS:
        return None
    parts = "; ".join(f"{kind.upper()}: {', '.join(names)}" for kind, names in _STAND_INS.items())
    return f"this command used stand-in models ({parts}): {STAND_IN_NOTE}"


def origin(source: str) -> dict[str, str]:
    """{"source", "weights": "random" | "pretrained"} of one model, from its files."""
    return {"source": str(source), "weights": "random" if is_random_weight(source) else "pretrained"}


def with_origin(model, source: str):
    model.origin = origin(source)
    if model.origin["weights"] == RANDOM:
        note_stand_in("random-weight", Path(source).name, str(Path(source).parent))
    return model


def origin_of(model) -> dict[str, str] | None:
    """The origin recorded at load; a CLIP loaded outside the registry is read from its source."""
    if model is None:
        return None
    found = getattr(model, "origin", None)
    if found is None and isinstance(getattr(model, "name", None), str):
        found = origin(model.name)
    return found


def priors_kind(origins) -> str:
    """ "oracle" when the ground truth answered for a prior (whatever else was loaded: the oracle
    decides what the run measures), "random" when any model has random weights, "real" when all
    are pretrained, "none" without models."""
    weights = [o["weights"] for o in origins if o]
    if not weights:
        return NO_PRIORS
    if ORACLE in weights:
        return ORACLE
    return RANDOM if RANDOM in weights else REAL


def evaluation_kind(run_kind: str, metric_kind: str) -> str:
    """A scored run's kind: an oracle run stays "oracle" (the truth answered, whatever scored it);
    random when the run's priors or the metric models are random-weight; a run without priors
    ("none") or without a record ("unknown") keeps that; else real."""
    if run_kind == ORACLE:
        return ORACLE
    if RANDOM in (run_kind, metric_kind):
        return RANDOM
    return run_kind if run_kind != REAL else metric_kind


def loaded_models_record(models: dict) -> dict:
    """What a run really used: {"priors": kind, "models": {key: origin}, "tags": {MLflow tags}}.

    ``models`` maps a name to a loaded model or None (not needed by this run). Tags: ``priors``
    (random | real | none) and ``model.<name>`` = its source, "(random weights)" appended.
    """
    origins = {name: origin_of(m) for name, m in models.items() if m is not None}
    kind = priors_kind(origins.values())
    tags = {"priors": kind}
    tags.update(
        {
            f"model.{name}": o["source"]
            + {RANDOM: " (random weights)", ORACLE: " (ground truth)"}.get(o["weights"], "")
            for name, o in origins.items()
        }
    )
    return {"priors": kind, "models": origins, "tags": tags}


def is_random_weight(source: str | Path) -> bool:
    """True when ``source`` is a model folder listed in a tiny-models manifest beside it.

    Read from the files actually loaded, not from any config name: a folder counts as a random-
    weight model exactly when the manifest that built it (``DIR/tiny_models.json``) lists it.
    """
    path = Path(source).expanduser()
    if not path.exists():
        return False  # a hub id: the real weights
    path = path.resolve()
    for root in (path.parent, path.parent.parent):
        try:
            listed = json.loads((root / MANIFEST).read_text()).get("models", {})
        except (OSError, ValueError):
            continue
        if any((root / rel).resolve() in (path, *path.parents) for rel in listed.values()):
            return True
    return False
