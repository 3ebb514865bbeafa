"""Prometheus metrics named `semsearch_*`, one registry per app so test apps share no counters,
with the client library's process (`process_*`), platform (`python_info`) and garbage collector
(`python_gc_*`) collectors in it too."""

from __future__ import annotations

import time

from fastapi import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from semsearch.service.batcher import BatchStats
from semsearch.service.generation import GenerationStats
from semsearch.service.response_status import ResponseStatus

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # CPU seconds, resident memory, open files, start time
        PlatformCollector(registry=r)
        GCCollector(registry=r)  # registers nothing off CPython
        self.requests = Counter(
            "semsearch_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "semsearch_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_inputs = Histogram(
            "semsearch_batch_size", "inputs per model call", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_requests = Histogram(
            "semsearch_batch_requests",
            "requests packed into one model call",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "semsearch_batch_duration_seconds",
            "model time per batch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "semsearch_queue_depth", "requests waiting for the encoder", registry=r
        )
        self.queue_wait = Histogram(
            "semsearch_queue_wait_seconds",
            "time an embedding request waits in the batcher's queue before its batch starts",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "semsearch_tokens",
            "tokens processed, by model (encoder, decoder)",
            ["model"],
            registry=r,
        )
        self.index_documents = Gauge(
            "semsearch_index_documents", "documents in the collection", registry=r
        )
        self.first_token = Histogram(
            "semsearch_time_to_first_token_seconds",
            "from a generation's admission (its slot taken) to its first token",
            buckets=_FIRST_TOKEN_BUCKETS,
            registry=r,
        )
        # Decode speed as two counters (as llama.cpp's server exports it): their rates' ratio is
        # tokens per second over any window, however long each generation was.
        self.prompt_tokens = Counter(
            "semsearch_prompt_tokens", "prompt tokens of generations", registry=r
        )
        self.cached_prompt_tokens = Counter(
            "semsearch_cached_prompt_tokens",
            "prompt tokens whose keys and values came from the decoder's prefix cache",
            registry=r,
        )
        self.decode_tokens = Counter(
            "semsearch_decode_tokens",
            "tokens generated after each generation's first (which prefill produces)",
            registry=r,
        )
        self.decode_seconds = Counter(
            "semsearch_decode_seconds",
            "time from each generation's first token to its last",
            registry=r,
        )

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_inputs.observe(stats.inputs)
        self.batch_requests.observe(stats.requests)
        self.batch_seconds.observe(stats.seconds)
        self.queue_depth.set(stats.queue_depth)
        self.tokens.labels(model="encoder").inc(stats.tokens)
        for wait in stats.queue_waits:
            self.queue_wait.observe(wait)

    def observe_generation(self, stats: GenerationStats) -> None:
        usage = stats.usage
        self.tokens.labels(model="decoder").inc(
            usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        )
        self.prompt_tokens.inc(usage.get("prompt_tokens", 0))
        self.cached_prompt_tokens.inc(usage.get("cached_tokens", 0))
        if stats.first_token_s is not None:
            self.first_token.observe(stats.first_token_s)
        self.decode_tokens.inc(stats.decode_tokens)
        self.decode_seconds.inc(stats.decode_s)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Plain ASGI middleware (not `@app.middleware("http")`, which costs far more per request):
    counts and times each request under its route's path template (`/documents/{doc_id}`, so ids
    don't explode the label set), which Starlette leaves in the scope once it has routed."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        response = ResponseStatus(send)
        try:
            async with response.watching():
                await self.app(scope, receive, response.send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route=route, status=str(response.value)).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)
