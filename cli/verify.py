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

# The shipped corpus holds 38,129 texts; a check draws n paragraphs and n/10 long texts built from
# 40 paragraphs each, so past this the corpus would run out (a usage error, not a failed job).
MAX_TEXTS = 5000


def probe_count(text: str) -> int:
    value = positive_int(text)
    if value > MAX_TEXTS:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_TEXTS} texts, got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    what = (
        "parity report on real text: the tokenizer and each encoder backend against "
        "sentence-transformers, the decoder against transformers; needs the 'test' extra"
    )
    p = subparsers.add_parser("verify", help=what, description=what)
    p.add_argument(
        "--texts",
        type=probe_count,
        default=500,
        help=f"real texts per check, at most {MAX_TEXTS} (default: %(default)s)",
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
