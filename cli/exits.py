"""Exit codes of the `semsearch` command and the one table from exceptions to them (docs/API.md).

Expected failures (a missing file, model or collection, a bad setting) end in one line on stderr
and their code; `--log-level DEBUG` adds the traceback. Any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

OK = 0
FAILED = 1  # the job could not be done
USAGE = 2  # what argparse exits with on a bad command line
INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C

EPILOG = """\
exit codes:
  0    success
  1    the job failed: a missing or unreadable input, model or collection, an encoder that does
       not match the collection, a collection busy past the lock timeout, a verify check below
       its threshold
  2    usage: an unknown command or flag, a bad value or combination of flags, a bad filter,
       an invalid SEMSEARCH_* variable, a missing or invalid settings file
  130  interrupted (Ctrl-C); `serve` instead shuts down gracefully and exits 0
"""


class UsageError(Exception):
    """A flag value or combination a command refuses before it starts its job (exit 2)."""


def classify(exc: Exception) -> tuple[int, str] | None:
    """`(exit code, one-line message)` for an expected failure; None for a bug."""
    refused = (
        UsageError,
        *_loaded("semsearch.index.errors", "FilterError", "InvalidArgument"),
        *_loaded("semsearch.service.config_file", "ConfigFileError"),
    )
    if isinstance(exc, refused):
        return USAGE, _one_line(exc)
    if isinstance(exc, _loaded("pydantic", "ValidationError")):  # before ValueError: it is one
        return USAGE, _settings_message(exc)
    if isinstance(exc, ImportError):
        # A missing optional dependency (the message says what to install) fails the job; a
        # name missing inside semsearch itself is a bug and keeps its traceback.
        if (exc.name or "").split(".")[0] == "semsearch":
            return None
        return FAILED, _one_line(exc)
    expected = (
        OSError,
        ValueError,
        *_loaded("semsearch.index.errors", "CollectionError"),
        *_loaded("semsearch.encoder.onnx.accuracy", "AccuracyReportError"),
        *_loaded("ray.exceptions", "RayError"),  # an actor of `index build --ray` died
    )
    if isinstance(exc, expected):
        return FAILED, _one_line(exc)
    return None


def _loaded(module: str, *names: str) -> tuple[type, ...]:
    """These exception classes if `module` was imported; else none (so none was raised)."""
    found = sys.modules.get(module)
    return tuple(getattr(found, name) for name in names) if found is not None else ()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _settings_message(exc: ValidationError) -> str:
    """pydantic's multi-line report as one line naming each variable (`SEMSEARCH_PORT`)."""
    from semsearch.cli.arguments import env_name

    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        parts.append(f"{env_name(field)} (or its flag): {error['msg']}")
    return "invalid setting: " + "; ".join(parts)
