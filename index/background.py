"""One maintenance thread per collection: index rebuilds and snapshots off the request path.

A job asked for while it is queued or running is not queued again: the caller that made it due
re-asks on its next write if it is still due then. Jobs run one at a time, in the order asked. In
inline mode (`threaded=False`, for batch builds and deterministic tests) nothing runs until the
owner calls `run_pending()`, in its own thread, after releasing its locks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, name: str, run: Callable[[str], None], threaded: bool = True) -> None:
        self.name = name
        self.threaded = threaded
        self._run = run
        self._cond = threading.Condition()
        self._due: list[str] = []
        self._running: str | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def request(self, job: str) -> None:
        """Queue `job` unless it is queued or running already (safe with any lock held)."""
        with self._cond:
            if self._closed or job in self._due or job == self._running:
                return
            self._due.append(job)
            if self.threaded:
                if self._thread is None:  # started lazily: most read-only handles never need it
                    self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                    self._thread.start()
                self._cond.notify_all()

    @property
    def busy(self) -> bool:
        with self._cond:
            return bool(self._due) or self._running is not None

    def run_pending(self) -> None:
        """Inline mode: run the queued jobs now, in this thread. Threaded mode: nothing."""
        if self.threaded:
            return
        while (job := self._take()) is not None:
            self._run_one(job)

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Until nothing is queued or running; False if `timeout_s` passed first."""
        if not self.threaded:
            self.run_pending()
            return True
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._due or self._running is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Finish the queued work, then stop the thread; later requests are ignored."""
        self.wait_idle()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _take(self) -> str | None:
        with self._cond:
            if not self._due:
                return None
            self._running = self._due.pop(0)
            return self._running

    def _run_one(self, job: str) -> None:
        try:
            self._run(job)
        except Exception:  # logged, not raised: the write that asked for it is already durable
            log.exception("%s: background %s failed; it is retried when next due", self.name, job)
        finally:
            with self._cond:
                self._running = None
                self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._due and not self._closed:
                    self._cond.wait()
                if not self._due:
                    return  # closed and drained
            job = self._take()
            if job is not None:
                self._run_one(job)
