"""The MLflow tracking store: where it is, whether it can be read or written, and its first use.

The first use of a local store (SQLite file or ``mlruns`` folder) is serialised by a file lock
beside it, so parallel jobs can create it together; a server serialises on its own.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlparse

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def resolve_uri(uri: str | None, create: bool = True) -> str:
    """The environment wins over the config, so a cluster can point every job at a server.

    ``create=False`` (readers such as ``tables``) leaves the file system untouched.
    """
    uri = os.environ.get(TRACKING_URI_ENV) or uri or "sqlite:///results/mlflow.db"
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if create:
            db.parent.mkdir(parents=True, exist_ok=True)
        # Absolute, so jobs started from other working directories reach the same file.
        uri = "sqlite:///" + str(db.resolve())
    return uri


def local_store_path(uri: str) -> Optional[Path]:
    """The SQLite file or ``mlruns`` folder of a local store; None for a server."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "" and uri != "databricks":  # MLflow reads a bare path as a file store
        return Path(uri)
    return None


def check_store_exists(uri: str) -> None:
    """For readers: a local store that is not there is a mistyped URI, not an empty experiment."""
    from consistent123.errors import TrackingError

    path = local_store_path(uri)
    if path is not None and not path.exists():
        raise TrackingError(f"tracking URI {uri}: {path} does not exist (nothing has been logged there)")


def is_server(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https")


def check_server_answers(uri: str, timeout_s: float = 10.0) -> None:
    """A tracking server that does not answer its ``/health`` fails here in one line naming the
    URI, before any training (MLflow's own client would retry for minutes, then fail deep inside)."""
    import requests

    from consistent123.errors import TrackingError

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout_s).raise_for_status()
    except requests.RequestException as exc:
        why = exc.__class__.__name__
        raise TrackingError(
            f"tracking store {uri} (a server) does not answer within {timeout_s:g} s ({why}): start it or set tracking.uri"
        ) from None


def check_store_writable(uri: str, timeout_s: float = 10.0) -> None:
    """For writers: a read-only local store fails here in one line, not deep inside SQLAlchemy;
    a tracking server that does not answer, too."""
    from consistent123.errors import TrackingError

    path = local_store_path(uri)
    if path is None:
        if is_server(uri):
            check_server_answers(uri, timeout_s)
        return
    # SQLite also writes a journal beside the database, so its folder must be writable too.
    for p in (path, path.parent) if path.exists() else (path.parent,):
        if p.exists() and not os.access(p, os.W_OK):
            what = "is read-only" if p == path else f"is in a read-only folder ({p})"
            raise TrackingError(f"tracking store {path} {what}: runs cannot be logged")


@contextmanager
def bounded_requests(timeout_s: float) -> Iterator[None]:
    """HTTP calls to a tracking server within the block: one try each, ``timeout_s`` each.

    MLflow's defaults (7 retries, backoff factor 2, 120 s a request) make an unreachable server
    answer after about four minutes; a check before starting should answer in seconds."""
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(timeout_s)))}
    before = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_sqlite_file(uri: str, timeout_s: float) -> None:
    """An SQLite store that is there is a database whose pages are all readable (a truncated or
    overwritten file fails here in one line, not halfway through a run or as an empty table).
    ``quick_check`` reads every page once: milliseconds for a store of a few hundred runs."""
    import sqlite3

    from consistent123.errors import TrackingError

    path = local_store_path(uri) if uri.startswith("sqlite:///") else None
    if path is None or not path.is_file():
        return
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s)
        ) as db:
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.Error as exc:
        raise TrackingError(f"tracking store {path} cannot be read as an SQLite database ({exc})") from None
    if verdict != "ok":
        raise TrackingError(f"tracking store {path} is corrupt (SQLite quick_check: {verdict})")


def check_store(uri: str, timeout_s: float, write: bool = True) -> None:
    """The store answers (a server within ``timeout_s``; a database that is one) and, for a
    writer, can be written: one ``TrackingError`` line otherwise. Called before a command makes
    anything, so a store that cannot take the run costs no folder and no model load."""
    from consistent123.errors import TrackingError

    if write:
        check_store_writable(uri, timeout_s)
    else:
        check_store_exists(uri)
    check_sqlite_file(uri, timeout_s)
    try:
        with bounded_requests(timeout_s):
            client_for(uri, create=write).search_experiments(max_results=1)
    except Exception as exc:
        if isinstance(exc, TrackingError):
            raise
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
        server = local_store_path(uri) is None
        hint = f" (within tracking.connect_timeout_s={timeout_s:g} s, no retries)" if server else ""
        raise TrackingError(f"tracking store {uri} does not answer{hint}: {first}") from None


_READY: set[str] = set()  # stores this process has already opened (created if new)


@contextmanager
def _first_use(uri: str, create: bool) -> Iterator[None]:
    from consistent123.locks import store_lock

    path = local_store_path(uri)
    if path is None or uri in _READY:
        yield
        return
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    with store_lock(f"{path}.lock", required=create):
        yield


# MLflow retries a request to a server 7 times with exponential backoff (minutes in all); a
# lost server would stall training that long at every flush. A job retries 3 times in ~15 s
# and keeps its metrics instead (consistent123.tracking.run); the environment still wins.
SERVER_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def client_for(uri: str, create: bool = True):
    """A client whose store exists: building it the first time (schema migration of a new
    SQLite file) happens under the store's lock, so concurrent first writers cannot collide."""
    from mlflow.tracking import MlflowClient

    if is_server(uri):
        for key, value in SERVER_RETRIES.items():
            os.environ.setdefault(key, value)

    with _first_use(uri, create):
        client = MlflowClient(tracking_uri=uri)  # opens, and if new creates, the store
    _READY.add(uri)
    return client


def _artifact_root(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return None  # a server decides its own artifact store


# MLflow 3's UI opens an experiment on the page of its kind; without this tag it may guess
# "GenAI" (a traces overview, empty here). The Python library offers no constant for it; the
# tag and the value are those of mlflow's own UI code (ExperimentKind.CUSTOM_MODEL_DEVELOPMENT).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def ensure_experiment(uri: str | None, name: str) -> str:
    """Create the database and the experiment once (call before parallel jobs start), marked as a
    model-training experiment so the UI opens on its runs."""
    uri = resolve_uri(uri)
    client = client_for(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        with creating(uri):
            exp = client.get_experiment_by_name(name)  # created by another process while we waited
            if exp is None:
                try:
                    return client.create_experiment(
                        name, artifact_location=_artifact_root(uri), tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
                    )
                except Exception as exc:
                    # A server has no lock file: a job on another node may have created it first.
                    if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                        raise
                    exp = client.get_experiment_by_name(name)
    # An experiment made before the tag, or one whose kind the UI only guessed ("..._inferred");
    # a kind a user chose is kept.
    if exp.tags.get(EXPERIMENT_KIND_TAG, "_inferred").endswith("_inferred"):
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


@contextmanager
def creating(uri: str) -> Iterator[None]:
    """Check-then-create under the store's lock (a server serialises on its own)."""
    from consistent123.locks import store_lock

    path = local_store_path(uri)
    if path is None:
        yield
        return
    with store_lock(f"{path}.lock"):
        yield
