"""The `semsearch` command line: builds the parser from one module per command and runs one.

Each command module registers its parser (`add_parser`) and imports what its job needs (torch,
uvicorn, the evaluation package) inside its handler, so `semsearch --help` loads none of them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from semsearch import __version__
from semsearch.cli import embed, export, generate, index, search, serve, verify
from semsearch.cli.exits import EPILOG, INTERRUPTED, classify

log = logging.getLogger(__name__)

COMMANDS = (serve, embed, index, search, generate, export, verify)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DESCRIPTION = """\
Self-hosted embeddings, vector search and retrieval-augmented generation. `python -m semsearch`
is the same command. Settings come from flags, then SEMSEARCH_* environment variables, then the
settings file (TOML: `serve --config FILE` or SEMSEARCH_CONFIG), then defaults; files live under
SEMSEARCH_DATA_DIR (models under SEMSEARCH_MODELS_DIR).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semsearch",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO",
        help="logging threshold; DEBUG also prints a failure's traceback (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def quiet_loggers(log_level: str) -> None:
    """Below DEBUG, drop what other libraries log that is no news to the user (also in each
    worker process of `serve --workers`)."""
    if log_level != "DEBUG":
        # faiss reports at INFO which CPU build it loaded: ten lines on every run that opens a
        # collection.
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (docs/API.md). argparse exits 2 on a bad command
    line by raising SystemExit itself."""
    # libgomp's threads spin-wait at every sync point by default; on shared cores that makes
    # torch 10-40x slower when another process runs (measured in bench/bench_encoder.py). It must
    # be set before torch is imported, which no command has done yet at this point.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_loggers(args.log_level)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            raise  # a bug: keep the traceback
        code, message = failure
        log.debug("%s failed", args.prog, exc_info=exc)
        print(f"{args.prog}: error: {message}", file=sys.stderr)
        return code
