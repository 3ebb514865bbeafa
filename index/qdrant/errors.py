"""Qdrant's failures as the exceptions `index/` raises (index/errors.py), so the service maps
them to HTTP statuses in its one table: unreachable, overloaded or failing servers are Busy
(503, retrying may work); a request Qdrant refuses (strict mode wanting a payload index, a bad
collection name) is InvalidArgument (422), with Qdrant's words; a missing collection NotFound.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from semsearch.index.errors import Busy, CollectionError, InvalidArgument, NotFound

_SHOWN_BYTES = 300


class QdrantUnavailable(Busy):
    """The Qdrant server did not answer, timed out, or failed (429, 5xx); retrying may work."""


def _said(exc: UnexpectedResponse) -> str:
    return exc.content[:_SHOWN_BYTES].decode("utf-8", "replace")


@contextmanager
def qdrant_errors(where: str) -> Iterator[None]:
    """Translate the Qdrant client's exceptions raised inside; `where` names the collection and
    its server (`'docs' at http://...`)."""
    try:
        yield
    except ResponseHandlingException as exc:
        raise QdrantUnavailable(
            f"the Qdrant collection {where}: no answer ({exc.source!r})"
        ) from exc
    except UnexpectedResponse as exc:
        status = exc.status_code or 0
        if status == 429 or status >= 500:
            raise QdrantUnavailable(
                f"the Qdrant collection {where}: Qdrant answered {status}: {_said(exc)}"
            ) from exc
        if status == 404:
            raise NotFound(f"the Qdrant collection {where}: not found ({_said(exc)})") from exc
        if status in (401, 403):
            raise CollectionError(
                f"the Qdrant collection {where}: Qdrant refused the API key ({status}); check "
                "the key given"
            ) from exc
        raise InvalidArgument(
            f"the Qdrant collection {where}: Qdrant refused the request ({status}): {_said(exc)}"
        ) from exc
