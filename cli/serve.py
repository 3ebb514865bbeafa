"""`semsearch serve`: the HTTP service under uvicorn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from semsearch.cli.arguments import (
    add_encoder_flags,
    add_index_dir_flag,
    port,
    setting_help,
    settings_from,
)

_FLAGS = ("config", "host", "port", "log_format", "index_dir", "backend", "model_dir", "threads")
DESCRIPTION = """\
Run the HTTP service (uvicorn). Settings come from these flags, then SEMSEARCH_* environment
variables, then the settings file (--config or SEMSEARCH_CONFIG: TOML, one key per setting, named
as its variable without the prefix, in lower case), then defaults.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the HTTP service (uvicorn); settings from flags, SEMSEARCH_*, a settings file",
        description=DESCRIPTION,
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=setting_help(
            "TOML settings file, ranked below flags and SEMSEARCH_* variables", "config", "none"
        ),
    )
    p.add_argument("--host", help=setting_help("bind address", "host"))
    p.add_argument("--port", type=port, help=setting_help("port", "port"))
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        help=setting_help("log lines; json: one object per line, one access line per request",
                          "log_format"),
    )  # fmt: skip
    add_index_dir_flag(p)
    add_encoder_flags(p)
    p.set_defaults(run=run, prog=p.prog)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, *_FLAGS)  # a bad SEMSEARCH_* value fails before any import
    import uvicorn

    from semsearch.service.app import create_app
    from semsearch.service.logs import configure_logging

    # Ours and uvicorn's lines in one format (its loggers propagate to the root's handler); each
    # request's access line comes from the app (service/access.py), so uvicorn's is off.
    configure_logging(settings.log_format, args.log_level)
    app = create_app(settings)
    # Tokenizer threads hold the GIL for Python's default 5 ms at a time; handing it back sooner
    # keeps the event loop (and /health) responsive while they run (bench/bench_health.py).
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    # uvicorn shuts down gracefully on Ctrl-C (then returns: exit 0) and on SIGTERM (then ends
    # the process by that signal again).
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        log_config=None,
        access_log=False,
        limit_concurrency=settings.max_connections,
    )
    return 0
