"""The one table from exceptions to HTTP responses, and the two error envelopes of API.md.

Native routes answer `{"error": msg, "error_type": kind}`; `/v1/*` routes answer OpenAI's
`{"error": {"message", "type", "param", "code"}}`. Library code raises its own exception types;
this module alone decides which status each becomes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from semsearch import index
from semsearch.service.request_id import request_id

log = logging.getLogger(__name__)

_MAX_VALIDATION_ERRORS = 10  # a 422 lists this many problems, then counts the rest
_RETRY_AFTER_S = "1"  # for 429 and 503: the condition is usually gone within a second


class ApiError(Exception):
    """An error the service answers with a specific status; `kind` is API.md's `error_type`."""

    status: int = 500
    kind: str = "Backend"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ValidationFailed(ApiError):
    status, kind = 422, "Validation"


class Unsupported(ApiError):
    """A well-formed request asking for something this server cannot do (`n: 2`, `tools`)."""

    status, kind = 400, "Validation"


class PayloadTooLarge(ApiError):
    status, kind = 413, "Validation"


class Overloaded(ApiError):
    status, kind = 429, "Overloaded"


class NotFound(ApiError):
    status, kind = 404, "NotFound"


class Conflict(ApiError):
    status, kind = 409, "Validation"


class Unauthorized(ApiError):
    status, kind = 401, "Unauthorized"


class RequestTimeout(ApiError):
    status, kind = 408, "Validation"


class Unhealthy(ApiError):
    status, kind = 503, "Unhealthy"


class Busy(ApiError):
    """Temporarily unable (another process holds the collection, a query ran out of time)."""

    status, kind = 503, "Overloaded"


class BackendFailed(ApiError):
    status, kind = 500, "Backend"


# Library exceptions that are the caller's fault. Extended as packages add their own types;
# anything not listed is a 500 whose cause is logged.
_LIBRARY_ERRORS: list[tuple[type[Exception], type[ApiError]]] = [
    (index.NotFound, NotFound),
    (index.FingerprintMismatch, Conflict),
    (index.ReadOnlyError, Conflict),
    (index.Busy, Busy),
    (index.FormatError, Conflict),
    # The library's ValueErrors that name a caller's mistake. Any other ValueError is a bug here,
    # a 500 (its text in the log only); request text is read inside `input_errors()`.
    (index.FilterError, ValidationFailed),
    (index.InvalidDocument, ValidationFailed),
    (index.InvalidArgument, ValidationFailed),
    (index.DimensionMismatch, ValidationFailed),
]

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    408: "invalid_request_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


def to_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, index.Busy):
        # Its message names the collection's directory: for the log, not for the client.
        log.warning("collection busy: %s", exc)
        if isinstance(exc, index.QueryTimeout):
            what = "a query ran out of time; retry later (SEMSEARCH_QUERY_TIMEOUT_S)"
        elif isinstance(exc, index.LockTimeout):
            what = "another process is writing to the collection; retry later"
            what += " (SEMSEARCH_LOCK_TIMEOUT_S)"
        else:  # the Qdrant store did not answer, or answered 429 or 5xx
            what = "the vector store did not answer; retry later"
        return Busy(what)
    if isinstance(exc, index.FormatError):
        # Its message names files or a Qdrant server: for the log, not for the client.
        log.warning("collection unreadable: %s", exc)
        return Conflict(
            "the collection's stored data is not in a form this server reads (the server log "
            "has the details)"
        )
    for library_type, api_type in _LIBRARY_ERRORS:
        if isinstance(exc, library_type):
            return api_type(str(exc))
    # The cause goes to the log (with the request id), never to the client: it can name files,
    # settings or code that an unauthenticated caller has no business seeing.
    return BackendFailed("internal error; the server log has the details under this request id")


def error_body(path: str, error: ApiError, rid: str = "") -> dict[str, object]:
    """The envelope for `path`: OpenAI's on `/v1/*`, the native one elsewhere; both name the
    request id at the top level."""
    if path.startswith("/v1/"):
        body: dict[str, object] = {
            "error": {
                "message": error.message,
                "type": _OPENAI_TYPES.get(error.status, "server_error"),
                "param": error.param,
                "code": error.kind.lower(),
            }
        }
    else:
        body = {"error": error.message, "error_type": error.kind}
    if rid:
        body["request_id"] = rid
    return body


def error_headers(status: int) -> dict[str, str]:
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if status in (429, 503):
        return {"Retry-After": _RETRY_AFTER_S}
    return {}


def error_status(path: str, error: ApiError) -> int:
    """The status `error` is sent with: OpenAI's dialect has no 422, a malformed `/v1/*` request
    is a 400 there (`invalid_request_error` either way)."""
    if error.status == 422 and path.startswith("/v1/"):
        return 400
    return error.status


def error_response(request: Request, error: ApiError) -> JSONResponse:
    rid = request_id(request.scope)
    # The header is set here too: a 500 is sent by Starlette's outermost middleware, past ours.
    headers = {**error_headers(error.status), **({"x-request-id": rid} if rid else {})}
    status = error_status(request.url.path, error)
    return JSONResponse(
        error_body(request.url.path, error, rid), status_code=status, headers=headers
    )


@contextmanager
def input_errors() -> Iterator[None]:
    """Around code that reads a request's own text (tokenizers, the chat template): a ValueError
    there is about that text (a lone surrogate, a bad role), so a 422 with its message."""
    try:
        yield
    except ValueError as exc:  # UnicodeEncodeError included
        raise ValidationFailed(str(exc)[:300]) from exc


async def send_error(scope: Scope, send: Send, error: ApiError) -> None:
    """Answer `error` from ASGI middleware, before any route (or FastAPI) has seen the request."""
    rid = request_id(scope)
    payload = json.dumps(error_body(scope.get("path", ""), error, rid)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    headers += [(k.lower().encode(), v.encode()) for k, v in error_headers(error.status).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _describe_validation(exc: RequestValidationError) -> tuple[str, str | None]:
    """The first few problems, each as `field.path: message`; a body with 400k bad items must
    not make a 400k-part answer."""
    errors = exc.errors()
    parts, param = [], None
    for err in errors[:_MAX_VALIDATION_ERRORS]:
        loc = [str(p)[:64] for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        param = param or where
        parts.append(f"{where}: {str(err.get('msg', 'invalid'))[:200]}")
    if len(errors) > _MAX_VALIDATION_ERRORS:
        parts.append(f"and {len(errors) - _MAX_VALIDATION_ERRORS} more problems")
    return "; ".join(parts) or "invalid request", param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _describe_validation(exc)
        return error_response(request, ValidationFailed(message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
            # FastAPI's body parser failed on JSON that json.loads refuses past its syntax
            # checks (an integer of more than 4,300 digits, nesting deeper than the recursion
            # limit): malformed input, as everywhere else.
            reason = f"the body is not usable JSON: {str(exc.__cause__)[:200]}"
            return error_response(request, ValidationFailed(reason))
        kind = {401: Unauthorized, 404: NotFound, 413: PayloadTooLarge, 429: Overloaded}
        error = kind.get(exc.status_code, ValidationFailed)(str(exc.detail))
        error.status = exc.status_code
        return error_response(request, error)

    async def _library(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, to_api_error(exc))

    # Registered per type (not only under `Exception`) so Starlette treats them as handled
    # rather than as server errors it logs and re-raises.
    for library_type, _ in _LIBRARY_ERRORS:
        app.add_exception_handler(library_type, _library)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled error on %s (request id %s)",
            request.url.path,
            request_id(request.scope),
            exc_info=exc,
        )
        return error_response(request, to_api_error(exc))
