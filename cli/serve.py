"""`semsearch serve`: the HTTP service under uvicorn."""

from __future__ import annotations

import argparse
import sys

from semsearch.cli.arguments import (
    add_encoder_flags,
    add_index_dir_flag,
    port,
    setting_help,
    settings_from,
)

_FLAGS = ("host", "port", "index_dir", "backend", "model_dir", "threads")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    what = "run the HTTP service (uvicorn); every other setting from its SEMSEARCH_* variable"
    p = subparsers.add_parser("serve", help=what, description=what)
    p.add_argument("--host", help=setting_help("bind address", "host"))
    p.add_argument("--port", type=port, help=setting_help("port", "port"))
    add_index_dir_flag(p)
    add_encoder_flags(p)
    p.set_defaults(run=run, prog=p.prog)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, *_FLAGS)  # a bad SEMSEARCH_* value fails before any import
    import uvicorn

    from semsearch.service.app import create_app

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
        limit_concurrency=settings.max_connections,
    )
    return 0
