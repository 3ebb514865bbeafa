"""`semsearch verify`: the parity report against the reference implementations.

Needs the references (the `test` extra: transformers, sentence-transformers); exit 1 when a check
falls below its threshold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from semsearch.cli.arguments import positive_int
from semsearch.cli.exits import FAILED, OK
from semsearch.service.settings import BACKENDS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    what = (
        "parity report on real text: the tokenizer and each encoder backend against "
        "sentence-transformers, the decoder against transformers; needs the 'test' extra"
    )
    p = subparsers.add_parser("verify", help=what, description=what)
    p.add_argument(
        "--texts",
        type=positive_int,
        default=500,
        help="real texts per check (default: %(default)s)",
    )
    p.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="encoder backend to check, repeatable (default: all)",
    )
    p.add_argument(
        "--no-decoder", action="store_true", help="skip the decoder checks (default: run them)"
    )
    p.add_argument("--json", type=Path, help="also write the report as JSON here (default: none)")
    p.set_defaults(run=run, prog=p.prog)


def run(args: argparse.Namespace) -> int:
    from semsearch.evaluation.verify import format_report, run_verify, write_json
    from semsearch.service.settings import Settings

    settings = Settings()
    checks = run_verify(
        texts=args.texts,
        backends=args.backend or list(BACKENDS),
        decoder=not args.no_decoder,
        thresholds=settings.onnx_options().thresholds,  # int8 judged as serving judges it
        gguf=settings.gguf_path,
    )
    print(format_report(checks))
    if args.json is not None:
        write_json(checks, args.json)
    failed = [c.name for c in checks if not c.passed]
    if failed:
        print(f"{args.prog}: FAILED: {', '.join(failed)}", file=sys.stderr)
    return FAILED if failed else OK
