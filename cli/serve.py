"""`semsearch serve`: the HTTP service under uvicorn.

One worker (the default) serves the app from this process. `--workers N` has uvicorn start N
worker processes that share the port; each builds the app from the settings resolved here (handed
over in its environment: `service/settings.py`'s `worker_environment`) and loads its own models.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from semsearch.cli.arguments import (
    add_encoder_flags,
    add_index_dir_flag,
    port,
    positive_int,
    setting_help,
    settings_from,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from semsearch.service.settings import Settings

_FLAGS = (
    "config", "host", "port", "workers", "log_format", "index_dir", "backend", "model_dir",
    "threads",
)  # fmt: skip
WORKER_FACTORY = "semsearch.cli.serve:worker_app"  # what each worker process imports and calls
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
        "--workers",
        type=positive_int,
        metavar="N",
        help=setting_help("worker processes on the port, each loading its own models", "workers"),
    )
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

    from semsearch.service.logs import configure_logging
    from semsearch.service.settings import worker_environment

    # Ours and uvicorn's lines in one format (its loggers propagate to the root's handler); each
    # request's access line comes from the app (service/access.py), so uvicorn's is off.
    configure_logging(settings.log_format, args.log_level)
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_level": args.log_level.lower(),
        "log_config": None,
        "access_log": False,
        "limit_concurrency": settings.max_connections,  # per worker process
    }
    # uvicorn shuts down gracefully on Ctrl-C (then returns: exit 0) and on SIGTERM (then ends
    # the process by that signal again); with workers, it stops them first.
    if settings.workers == 1:
        uvicorn.run(_app(settings), **options)
    else:
        # The workers are spawned (fresh interpreters): the settings travel in their environment.
        os.environ.update(worker_environment(settings, args.log_level))
        uvicorn.run(WORKER_FACTORY, factory=True, workers=settings.workers, **options)
    return 0


def worker_app() -> FastAPI:
    """uvicorn's app factory in each worker process of `--workers N`: logging as the parent
    set it up, then the app over the parent's settings."""
    from semsearch.cli.main import quiet_loggers
    from semsearch.service.logs import configure_logging
    from semsearch.service.settings import worker_settings

    settings, log_level = worker_settings()
    configure_logging(settings.log_format, log_level)
    quiet_loggers(log_level)
    return _app(settings)


def _app(settings: Settings) -> FastAPI:
    from semsearch.service.app import create_app

    # Tokenizer threads hold the GIL for Python's default 5 ms at a time; handing it back sooner
    # keeps the event loop (and /health) responsive while they run (bench/bench_health.py).
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    return create_app(settings)
