"""Locks: one writer across processes, open handles versus a reindex, readers xor a writer.

Three flock-based locks live beside (or in) a collection directory:

- `write.lock` (`writer_lock`): exclusive, one writer at a time across processes. Request paths
  pass a timeout and get `LockTimeout` (the service answers 503 + Retry-After) instead of hanging
  behind another process's snapshot or build; `None` waits forever (batch tools).
- `open.lock` (`hold_open` / `exclusive_open`): every open `Collection` holds it shared for its
  whole lifetime; a reindex takes it exclusively, so it refuses to swap directories under a
  server whose SQLite handles would keep pointing at the old files.
- a parent-level `.<name>.swap.lock` (`swap_lock`): serializes a directory swap with the crash
  recovery of one (index/persistence.py).

flock belongs to an open file description, so two descriptors on the same file exclude each other
even inside one process; the OS drops a lock when its holder dies, even by kill -9.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from semsearch.index.errors import LockTimeout

LOCKFILE = "write.lock"
OPEN_LOCKFILE = "open.lock"
_FIRST_SLEEP_S = 0.001
_MAX_SLEEP_S = 0.05


def _acquire(fd: int, kind: int, timeout_s: float | None, what: str) -> None:
    """flock `fd`; with a timeout, poll without blocking (flock itself has no timeout)."""
    if timeout_s is None:
        fcntl.flock(fd, kind)
        return
    deadline = time.monotonic() + timeout_s
    sleep = _FIRST_SLEEP_S
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(f"{what} (waited {timeout_s:g} s); retry later") from None
            time.sleep(min(sleep, left))
            sleep = min(sleep * 2, _MAX_SLEEP_S)


@contextmanager
def file_lock(path: Path, timeout_s: float | None, what: str) -> Iterator[None]:
    """Exclusive flock on `path` (created if missing); `LockTimeout(what...)` past the timeout."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, fcntl.LOCK_EX, timeout_s, what)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def writer_lock(directory: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Exclusive across processes; `None` waits forever, else `LockTimeout` after `timeout_s`."""
    what = (
        f"another process holds the writer lock of {directory} (a snapshot, an index build or "
        "a reindex)"
    )
    with file_lock(directory / LOCKFILE, timeout_s, what):
        yield


def swap_lock_path(target: Path) -> Path:
    """The lock serializing swaps of `target`; beside it, since `target` itself gets renamed."""
    return target.with_name(f".{target.name}.swap.lock")


@contextmanager
def swap_lock(target: Path, timeout_s: float | None = None) -> Iterator[None]:
    what = f"another process is swapping {target} with a reindexed copy"
    with file_lock(swap_lock_path(target), timeout_s, what):
        yield


@contextmanager
def swap_settled(target: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Inside, no swap of `target` is running. Shares the swap lock, creating nothing: for
    read-only callers (no lock file means no swap ever ran)."""
    try:
        fd = os.open(swap_lock_path(target), os.O_RDONLY)
    except OSError:
        fd = None
    if fd is None:
        yield
        return
    try:
        _acquire(fd, fcntl.LOCK_SH, timeout_s, f"another process is swapping {target}")
        yield
    finally:
        os.close(fd)


class OpenHold:
    """A held `open.lock` (shared by open handles, exclusive for a reindex); `release()` drops."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd
        self._mutex = threading.Lock()

    def release(self) -> None:
        with self._mutex:
            if self._fd is not None:
                os.close(self._fd)  # closing the last descriptor drops the flock
                self._fd = None


def _is_current(fd: int, path: Path) -> bool:
    """Is `fd` still the file at `path`? A swap may have put another directory there since."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _hold(directory: Path, kind: int, timeout_s: float | None, what: str) -> OpenHold | None:
    """Lock `directory/open.lock` as it is now (rechecked after waiting: a reindex may have
    swapped the directory meanwhile). None when the directory itself has gone."""
    path = directory / OPEN_LOCKFILE
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            return None
        except OSError:
            if kind != fcntl.LOCK_SH:
                raise
            return OpenHold(None)  # a read-only mount: nobody can write or swap it anyway
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _acquire(fd, kind, left, what)
            if _is_current(fd, path):
                return OpenHold(fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # we locked a file a swap has since replaced: try the one there now


def hold_open(directory: Path, timeout_s: float | None = None) -> OpenHold | None:
    """Share `directory/open.lock` for an open handle's lifetime (see the module docstring)."""
    what = f"{directory} is being reindexed by another process"
    return _hold(directory, fcntl.LOCK_SH, timeout_s, what)


@contextmanager
def exclusive_open(directory: Path, timeout_s: float | None = None) -> Iterator[None]:
    """No other handle may have `directory` open meanwhile; `LockTimeout` when one stays open."""
    what = (
        f"{directory} is open in another process (a running server, a search or an index build); "
        "stop it first: its open files would keep pointing at the old copy"
    )
    hold = _hold(directory, fcntl.LOCK_EX, timeout_s, what)
    if hold is None:
        raise FileNotFoundError(f"no collection directory {directory}")
    try:
        yield
    finally:
        hold.release()


class RWLock:
    """Readers share, a writer is alone; waiting writers go first so searches cannot starve them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
