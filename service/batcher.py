"""Dynamic batching: requests from concurrent clients packed into one model call.

Follows TEI's `core/src/queue.rs` and `infer.rs`: requests arrive already tokenized, wait in a
bounded queue (a full queue refuses with 429), and a single worker thread takes them in arrival
order until a token budget or a request count is reached, waiting at most `max_wait_ms` for
company once the first has arrived. Requests whose caller has gone away are skipped. The model runs
on that worker thread, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from semsearch.service.errors import Overloaded

log = logging.getLogger(__name__)

# One tokenized input; its length is what it costs in the token budget.
E = TypeVar("E", bound=Sized)


@dataclass
class _Request(Generic[E]):
    encodings: Sequence[E]
    tokens: int
    future: asyncio.Future[np.ndarray]
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)

    def abandoned(self) -> bool:
        return self.future.done()  # cancelled by a disconnect, or already failed


@dataclass(frozen=True)
class BatchStats:
    """What one model call did; handed to an observer (metrics) after each batch."""

    requests: int
    inputs: int
    tokens: int
    queue_depth: int
    seconds: float
    queue_waits: tuple[float, ...] = ()  # per request: seconds from submit to the batch's start


class Batcher(Generic[E]):
    """Feeds `run_batch` on its own thread: one packed batch of encodings (any order) in, their
    (n, dim) float32 rows in the same order out."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[E]], np.ndarray],
        *,
        max_batch_tokens: int,
        max_batch_requests: int,
        max_wait_ms: float,
        max_queue_requests: int,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_requests = max_batch_requests
        self.max_wait = max_wait_ms / 1000
        self.max_queue_requests = max_queue_requests
        self._on_batch = on_batch
        self._queue: deque[_Request[E]] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._worker = threading.Thread(target=self._work, name="semsearch-batcher", daemon=True)
        self._worker.start()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def submit(self, encodings: Sequence[E]) -> np.ndarray:
        """Queue one request's encodings; resolves to its rows in the given order."""
        loop = asyncio.get_running_loop()
        request = _Request(
            encodings=encodings,
            tokens=sum(len(e) for e in encodings),
            future=loop.create_future(),
            loop=loop,
        )
        with self._cond:
            if self._stopped:
                raise RuntimeError("the batcher is stopped")
            if len(self._queue) >= self.max_queue_requests:
                raise Overloaded(
                    f"the embedding queue is full ({self.max_queue_requests} requests); retry later"
                )
            self._queue.append(request)
            self._cond.notify()
        return await request.future

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._worker.join(timeout=10)

    # --- worker thread ---------------------------------------------------------------------

    def _take_batch(self) -> list[_Request[E]] | None:
        """Block for the first request, then gather more until a budget or the deadline."""
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            deadline = time.perf_counter() + self.max_wait
            batch: list[_Request[E]] = []
            tokens = 0
            while True:
                while self._queue:
                    head = self._queue[0]
                    if head.abandoned():
                        self._queue.popleft()
                        continue
                    full = len(batch) >= self.max_batch_requests or (
                        batch and tokens + head.tokens > self.max_batch_tokens
                    )
                    if full:
                        return batch
                    batch.append(self._queue.popleft())
                    tokens += head.tokens
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._stopped:
                    return batch
                self._cond.wait(timeout=remaining)

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            batch = [r for r in batch if not r.abandoned()]
            if batch:
                self._run(batch)

    def _run(self, batch: list[_Request[E]]) -> None:
        flat = [enc for request in batch for enc in request.encodings]
        started = time.perf_counter()
        try:
            rows = self._run_batch(flat)
        except Exception as exc:  # delivered to every waiting caller; the service maps it
            log.exception("a batch of %d inputs failed", len(flat))
            for request in batch:
                request.loop.call_soon_threadsafe(_set_exception, request.future, exc)
            return
        elapsed = time.perf_counter() - started
        start = 0
        for request in batch:
            part = rows[start : start + len(request.encodings)]
            start += len(request.encodings)
            request.loop.call_soon_threadsafe(_set_result, request.future, part)
        if self._on_batch is not None:
            self._on_batch(
                BatchStats(
                    requests=len(batch),
                    inputs=len(flat),
                    tokens=sum(r.tokens for r in batch),
                    queue_depth=len(self._queue),
                    seconds=elapsed,
                    queue_waits=tuple(started - r.enqueued for r in batch),
                )
            )


def _set_result(future: asyncio.Future[np.ndarray], value: np.ndarray) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[np.ndarray], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
