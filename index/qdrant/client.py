"""Connecting: a Qdrant server (`url`, `api_key`) or qdrant-client's in-process mode
(`location=":memory:"`, or `path=` a directory), for tests and small single-process use.

In-process mode is not thread-safe and keeps its state in Python objects, so every call into an
in-process client holds one lock (`Connection.serial`), whichever handle makes it; a server
needs none.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from qdrant_client import QdrantClient

from semsearch.index.errors import InvalidArgument

_IN_PROCESS = threading.RLock()


@dataclass
class Connection:
    client: QdrantClient
    where: str  # for messages and info(): the url, ":memory:" or the path
    in_process: bool
    owned: bool  # made here, so closed with the collection

    def serial(self) -> AbstractContextManager[object]:
        return _IN_PROCESS if self.in_process else nullcontext()

    def close(self) -> None:
        if self.owned:
            self.client.close()


def _is_in_process(client: QdrantClient) -> bool:
    inner = getattr(client, "_client", None)  # QdrantLocal or QdrantRemote
    return type(inner).__name__ == "QdrantLocal"


def connect(
    url: str | None = None,
    api_key: str | None = None,
    location: str | None = None,
    path: str | Path | None = None,
    client: QdrantClient | None = None,
    timeout_s: float | None = None,
) -> Connection:
    """A connection from exactly one of `url`, `location`, `path` or an open `client`."""
    given = [
        name
        for name, v in (("url", url), ("location", location), ("path", path), ("client", client))
        if v is not None
    ]
    if len(given) != 1:
        raise InvalidArgument(
            'the Qdrant store needs exactly one of url (a server), location (":memory:" for '
            f"in-process), path (an in-process directory) or client; got {given or 'none'}"
        )
    if client is not None:
        return Connection(client, "a given client", _is_in_process(client), owned=False)
    timeout = None if timeout_s is None else max(1, round(timeout_s))
    if url is not None:
        made = QdrantClient(url=url, api_key=api_key, timeout=timeout)
        return Connection(made, url, in_process=False, owned=True)
    if location is not None:
        made = QdrantClient(location=location, api_key=api_key, timeout=timeout)
        return Connection(made, location, _is_in_process(made), owned=True)
    # In-process with a directory: our lock serializes the service's threads, so SQLite may be
    # used from any of them.
    made = QdrantClient(path=str(path), force_disable_check_same_thread=True)
    return Connection(made, str(path), in_process=True, owned=True)
