"""The server's log lines: readable text, or one JSON object per line for log collectors.

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message`, every field a call passed as
`extra=` (the access line's request id, route, status...), and `exception` with the traceback
when there is one. `semsearch serve` installs one handler on the root logger and lets uvicorn's
loggers propagate to it, so its lines come out in the same format.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record came from `extra=`. uvicorn adds
# `color_message` (its message with terminal colours) to its own lines: not a field.
_STANDARD = frozenset(
    {*logging.LogRecord("", 0, "", 0, "", None, None).__dict__, "message", "asctime"}
) | {"color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # One line whatever the message holds (json escapes newlines); str() what JSON cannot say.
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(log_format: Literal["text", "json"], level: int | str) -> None:
    """One handler on the root logger (stderr) in this format, replacing any there."""
    handler = logging.StreamHandler()
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)
