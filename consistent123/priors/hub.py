"""One way to load pretrained weights from a hub id or a local folder.

Every ``from_pretrained`` / open_clip load in the project goes through ``load_pretrained`` so
that missing weights on an offline machine give the same one-line error: which model, which
config key chooses it, and how to fetch it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from consistent123.errors import ModelUnavailableError

FETCH_HINT = "run `consistent123 fetch-models` on a connected machine (fills the Hugging Face cache{cache}) or set {key} to a local folder"


def is_local(source: str) -> bool:
    """A source is a local path when it looks like one or exists; anything else is a hub id."""
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().exists()


def _hint(config_key: str, cache_dir: str | None) -> str:
    cache = f" at {cache_dir}" if cache_dir else ""
    return FETCH_HINT.format(cache=cache, key=config_key)


def load_pretrained(
    loader: Callable[..., Any], source: str, what: str, config_key: str, cache_dir: str | None = None, **kwargs
) -> Any:
    """Call ``loader(source, cache_dir=cache_dir, **kwargs)``; missing weights -> ModelUnavailableError."""
    if is_local(source):
        path = Path(source).expanduser()
        if not path.exists():
            raise ModelUnavailableError(
                f"{what}: local weights {str(path)!r} not found ({config_key}); {_hint(config_key, cache_dir)}"
            )
        source = str(path)
    try:
        return loader(source, cache_dir=cache_dir, **kwargs)
    except ModelUnavailableError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        # huggingface_hub raises OSError subclasses (LocalEntryNotFoundError, RepositoryNotFoundError,
        # offline mode) and ValueError for malformed ids; open_clip raises RuntimeError for unknown
        # pretrained tags. Anything else is a real bug and propagates unchanged.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelUnavailableError(
            f"{what}: cannot load {source!r} ({config_key}): {first[:200]}; {_hint(config_key, cache_dir)}"
        ) from exc
