"""A bounded async HTTP load generator for servers on this machine (127.0.0.1 only), and the
harness around them: start as subprocesses, wait for `/ready`, account CPU per thread, end.

`concurrency` workers each own one keep-alive HTTP/1.1 connection and send the prepared JSON bodies
one after another, closed-loop: a worker sends its next request when the previous answer is in.
The run stops by itself after `requests` requests or `time_limit` seconds, whichever comes first;
requests in flight at the deadline are awaited. Latency runs from just before the request is
written to the last byte of the response body.

Two clients: "raw" (default) writes prebuilt request bytes on an asyncio stream and reads the
response by its Content-Length (or chunks); "httpx" uses one `httpx.AsyncClient` per worker. On 2
shared cores the client's own CPU matters: against a trivial server here httpx spent 1.2-1.5 ms
of CPU per request and the raw client 0.04-0.1 ms, so at several hundred requests/s httpx alone
takes most of a core from the servers under test.

    result = asyncio.run(run_load(url, bodies, concurrency=8, requests=512, time_limit=10.0))
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ALLOWED_HOSTS = ("127.0.0.1",)


@dataclass
class LoadResult:
    concurrency: int
    sentences_per_request: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: int = 0
    first_error: str = ""

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def sentences_per_s(self) -> float:
        return self.requests_per_s * self.sentences_per_request

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile (0-100) of the latencies, in milliseconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
        return ordered[rank] * 1000


def check_local(url: str) -> None:
    """Refuse any target but this machine's loopback address."""
    host = urlsplit(url).hostname
    if host not in ALLOWED_HOSTS:
        raise ValueError(f"the load generator only targets {ALLOWED_HOSTS}, not {host!r} ({url})")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response: Content-Length or chunked."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        return status, await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
        raise ValueError(f"response without Content-Length or chunks: {head[:200]!r}")
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append((await reader.readexactly(size + 2))[:-2])  # data, then CRLF
    await reader.readuntil(b"\r\n")  # the last chunk's (empty) trailer
    return status, b"".join(parts)


async def _raw_worker(
    url: str,
    bodies: itertools.cycle[bytes],
    budget: list[int],
    deadline: float,
    result: LoadResult,
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            body = next(bodies)
            start = time.perf_counter()
            writer.write(b"%s%d\r\n\r\n%s" % (head, len(body), body))
            try:
                status, payload = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                _record_error(result, repr(exc))
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            elapsed = time.perf_counter() - start
            if status == 200:
                result.latencies.append(elapsed)
            else:
                _record_error(result, f"HTTP {status}: {payload[:200]!r}")
    finally:
        writer.close()


async def _httpx_worker(
    url: str,
    bodies: itertools.cycle[bytes],
    budget: list[int],
    deadline: float,
    result: LoadResult,
) -> None:
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(limits=limits, timeout=60.0, trust_env=False) as client:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            body = next(bodies)
            start = time.perf_counter()
            try:
                response = await client.post(url, content=body, headers=headers)
                await response.aread()
            except httpx.HTTPError as exc:
                _record_error(result, repr(exc))
                continue
            elapsed = time.perf_counter() - start
            if response.status_code == 200:
                result.latencies.append(elapsed)
            else:
                _record_error(result, f"HTTP {response.status_code}: {response.text[:200]}")


def _record_error(result: LoadResult, message: str) -> None:
    result.errors += 1
    if not result.first_error:
        result.first_error = message


async def run_load(
    url: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    requests: int,
    time_limit: float,
    sentences_per_request: int = 1,
    client: str = "raw",
) -> LoadResult:
    """Send up to `requests` POSTs of `bodies` (cycled) with `concurrency` workers."""
    check_local(url)
    if concurrency < 1 or requests < 1 or time_limit <= 0 or not bodies:
        raise ValueError(
            f"need concurrency >= 1, requests >= 1, time_limit > 0 and bodies; got "
            f"{concurrency}, {requests}, {time_limit}, {len(bodies)} bodies"
        )
    result = LoadResult(concurrency=concurrency, sentences_per_request=sentences_per_request)
    cycle = itertools.cycle(bodies)
    budget = [requests]  # shared by the workers: one event loop, no lock needed
    start = time.perf_counter()
    deadline = start + time_limit
    worker = {"raw": _raw_worker, "httpx": _httpx_worker}[client]
    workers = [worker(url, cycle, budget, deadline, result) for _ in range(concurrency)]
    await asyncio.wait_for(asyncio.gather(*workers), timeout=time_limit + 120)
    result.seconds = time.perf_counter() - start
    return result


# --- the servers under load: started, watched and ended here -------------------------------------


class Processes:
    """Every child started here; `close()` ends each one's whole process group."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start(
        self, cmd: list[str], log: Path, env: dict[str, str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: its children end with it
            )
        self.children.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.children.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    proc: subprocess.Popen[bytes],
    base_url: str,
    log: Path,
    timeout: float = 300.0,
    probe: str = "/ready",
) -> None:
    """Poll `GET <probe>` until 200 (ours: `/ready`, once the models are loaded; other servers
    name their readiness route); fail early if the process exits."""
    check_local(base_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(proc.args)} exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"{base_url}{probe}", timeout=2.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{base_url} not ready after {timeout:.0f}s; see {log}")


_TICK = os.sysconf("SC_CLK_TCK")


def _stat_cpu(stat_file: Path) -> float:
    stat = stat_file.read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; [11], [12]: utime, stime
    return (int(fields[11]) + int(fields[12])) / _TICK


def process_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds used so far by a process (all its threads, ended ones too) and by its main
    thread (a Python server's event loop)."""
    return _stat_cpu(Path(f"/proc/{pid}/stat")), _stat_cpu(Path(f"/proc/{pid}/task/{pid}/stat"))
