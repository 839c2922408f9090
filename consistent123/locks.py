"""File locks held by the kernel: released the moment their process dies, so never stale.

``folder_lock`` keeps a second writer out of an output folder (it fails at once and names
the process holding it); ``store_lock`` serialises the first use of an MLflow store, whose
creation (schema migration) is not safe when several processes do it at the same time.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from consistent123.errors import BusyError, OutputError
from consistent123.io import describe_os_error

FOLDER_LOCK = ".lock"


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from None


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process"


@contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder/.lock`` exclusively for the block; a live holder -> one BusyError line."""
    folder = Path(folder)
    path = folder / FOLDER_LOCK
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, folder)) from None
    fd = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(f"{folder} is being written by {_holder(fd)}; wait for it to finish or stop it") from None
        try:  # who holds it, for the message a second writer prints (a full disk only loses this)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv[1:3])})\n".encode(), 0)
        except OSError:
            pass
        yield path
    finally:
        os.close(fd)  # closing drops the lock; the file stays (unlinking it would race a waiter)


@contextmanager
def store_lock(path: str | Path, required: bool = True) -> Iterator[None]:
    """Block until ``path`` (beside the store) is locked. ``required=False``: a reader in a
    read-only folder goes on without it (it creates nothing, so it needs no lock)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if required:
            raise OutputError(describe_os_error(exc, path)) from None
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
