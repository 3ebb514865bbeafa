"""Running the service on a free 127.0.0.1 port: `semsearch serve` as a subprocess (CLI and deploy
tests), or an app object under uvicorn on a thread (real HTTP, models shared with the test)."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

REPO = Path(__file__).resolve().parents[1]
CLIENT_KEY = "test-key-for-the-clients"  # the API key of the client tests' server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, alive: Callable[[], None] = lambda: None, timeout: float = 60) -> None:
    """Poll GET /ready until 200; `alive()` raises when the server is gone."""
    deadline = time.monotonic() + timeout
    while True:
        alive()
        try:
            if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{base} never became ready"
        time.sleep(0.2)


@contextmanager
def running_server(
    command: list[str],
    port: int,
    env: dict[str, str],
    timeout: float = 180,
    log: Path | None = None,
) -> Iterator[str]:
    """Start `command`, wait until GET /ready answers 200, yield the base URL, then stop it.
    Its output (stdout and stderr) goes to `log`, readable once the block has ended."""
    with tempfile.TemporaryDirectory() as scratch:
        log = log or Path(scratch) / "server.log"
        with log.open("w") as out:
            server = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
            )

        def alive() -> None:
            if server.poll() is not None:
                output = log.read_text()
                raise AssertionError(f"the server exited with {server.returncode}:\n{output}")

        try:
            wait_ready(f"http://127.0.0.1:{port}", alive, timeout)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


@contextmanager
def serve_in_thread(app, wait: bool = True) -> Iterator[str]:
    """Serve `app` (its lifespan included) with uvicorn on a thread; yield the base URL once
    GET /ready answers 200 (`wait=False`: once uvicorn listens)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        if wait:
            wait_ready(base)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=60)
