"""Atomic file writes: a killed job never leaves a half file that looks finished.

Every failure to write becomes one :class:`OutputError` naming the final path and the cause
("no space left on device writing OUT/checkpoints/last.pt"), and files get the user's umask
(``mkstemp`` alone would leave them 0600, unreadable by a colleague or a shared ``mlflow ui``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# Below this much free space a failed write is reported as a full disk: some writers (torch's
# zip writer, ffmpeg) say only "unexpected pos ..." or "broken pipe" when the disk fills.
FULL_DISK_BYTES = 1 << 20
PARTIAL = ".partial-"  # in every temporary name, so a killed writer's leftovers can be found


def remove_partial_files(folder: str | Path) -> int:
    """Delete what killed writers left under ``folder`` (call only while holding its lock)."""
    n = 0
    for p in sorted(Path(folder).rglob(f".*{PARTIAL}*"), reverse=True):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += 1
    return n


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _apply_umask(path: str | Path, mode: int) -> None:
    os.chmod(path, mode & ~current_umask())


def describe_os_error(exc: OSError, path: str | Path | None = None, action: str = "writing") -> str:
    """``no space left on device writing /x/last.pt`` from an OSError."""
    cause = (exc.strerror or exc.__class__.__name__).lower()
    where = path if path is not None else (exc.filename or "?")
    return f"{cause} {action} {where}"


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < FULL_DISK_BYTES
    except OSError:
        return False


def output_error(exc: BaseException, path: str | Path):
    """The OutputError for a failed write of ``path``, or None if the failure is not about the disk."""
    from consistent123.errors import OutputError

    if isinstance(exc, OSError):
        return OutputError(describe_os_error(exc, path))
    if isinstance(exc, Exception) and _disk_full(Path(path).parent):
        return OutputError(f"no space left on device writing {path}")
    return None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{PARTIAL}", suffix=path.suffix or ".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        _apply_umask(tmp_path, 0o666)
        yield tmp_path
        os.replace(tmp_path, path)
    except Exception as exc:
        translated = output_error(exc, path)  # judged before the temporary file frees its space
        if translated is None:
            raise
        raise translated from exc
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | Path, data, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=False) + "\n")


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a whole folder under a temporary name and rename it into place at the end."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{PARTIAL}", dir=path.parent))
        _apply_umask(tmp, 0o777)
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except Exception as exc:
        translated = output_error(exc, path)
        if translated is None:
            raise
        raise translated from exc
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_files(folder: str | Path, names: tuple[str, ...]) -> Iterator[Path]:
    """Write a set of files together: yield a staging folder, move ``names`` into ``folder`` at the end.

    Nothing reaches ``folder`` unless every file was written (a full disk fails in staging); the
    last name is moved last, so its presence means the set is complete (an old set loses it first).
    """
    folder = Path(folder)
    staging = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".staging{PARTIAL}", dir=folder))
        yield staging
        missing = [n for n in names if not (staging / n).is_file()]
        if missing:
            raise RuntimeError(f"atomic_files: {missing} not written")
        (folder / names[-1]).unlink(missing_ok=True)
        for name in names:
            _apply_umask(staging / name, 0o666)
            os.replace(staging / name, folder / name)
    except Exception as exc:
        # Name the file the user asked for, not its staging copy.
        target = folder
        if (
            isinstance(exc, OSError)
            and exc.filename
            and staging is not None
            and str(exc.filename).startswith(str(staging))
        ):
            target = folder / Path(exc.filename).name
        translated = output_error(exc, target)
        if translated is None:
            raise
        raise translated from exc
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written there (before any model loads)."""
    from consistent123.errors import OutputError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, folder)) from None
    return folder


def read_json(path: str | Path, what: str):
    """Parse a JSON file; unreadable or malformed -> one InputError line naming it as ``what``."""
    from consistent123.errors import InputError

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable {what} ({exc.__class__.__name__})") from None


def move_aside(path: str | Path, why: str) -> Path:
    """Rename a state file that cannot be read to ``NAME.corrupt-<UTC time>`` (kept for a post
    mortem, out of the way of the rerun) and say so in one warning line naming both."""
    import logging
    import time

    from consistent123.errors import OutputError

    path = Path(path)
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    try:
        os.replace(path, aside)
    except OSError as exc:
        raise OutputError(
            f"{path} cannot be read ({why}) nor moved aside: {describe_os_error(exc, aside, 'moving to')}"
        ) from None
    logging.getLogger(__name__).warning("%s cannot be read (%s): moved aside to %s", path, why, aside.name)
    return aside


def first_line(exc: BaseException) -> str:
    """An exception as ``Type: its first line`` (for one-line messages)."""
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
