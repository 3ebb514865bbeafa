"""The `semsearch` command line: one console script, one subcommand per job (API.md)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from service.cli_index import add_index_commands, add_search_command
from service.settings import BACKENDS, Settings


def _settings_from(args: argparse.Namespace, *names: str) -> Settings:
    """Flags that were given override SEMSEARCH_* variables, which override defaults."""
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return Settings(**given)


# --- serve -------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app

    settings = _settings_from(args, "host", "port", "index_dir", "backend", "model_dir", "threads")
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level.lower())
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (uvicorn)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--index-dir", type=Path, help="collection directory")
    p.add_argument("--backend", choices=BACKENDS, help="encoder backend")
    p.add_argument("--model-dir", type=Path, help="sentence-transformers model directory")
    p.add_argument("--threads", type=int, help="model threads (default: the runtime's)")
    p.set_defaults(func=_serve)


# --- embed -------------------------------------------------------------------------------------


def read_texts(path: Path, text_field: str = "text") -> Iterator[str]:
    """One text per line, or JSONL objects with a `text` field (by extension .jsonl / .ndjson)."""
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not is_jsonl:
                yield line
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
                raise SystemExit(
                    f"{path}:{line_no}: expected an object with a string {text_field!r}"
                )
            yield row[text_field]


def _embed(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from encoder import load_embedder

    texts = list(read_texts(args.input, args.text_field))
    embedder = load_embedder(model_dir=args.model_dir, backend=args.backend, threads=args.threads)
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    step = args.batch_size * 8  # chunks for the progress bar; encode() batches within each
    with tqdm(total=len(texts), unit="text", desc="embedding", disable=args.quiet) as bar:
        for start in range(0, len(texts), step):
            chunk = texts[start : start + step]
            out[start : start + len(chunk)] = embedder.encode(chunk, batch_size=args.batch_size)
            bar.update(len(chunk))
    np.save(args.output, out)
    print(f"wrote {out.shape[0]} x {out.shape[1]} float32 to {args.output}", file=sys.stderr)
    return 0


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed a file of texts into a .npy")
    p.add_argument("--input", type=Path, required=True, help="text file (one per line) or .jsonl")
    p.add_argument("--output", type=Path, required=True, help="output .npy (float32, input order)")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument("--model-dir", type=Path)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int)
    p.add_argument("--text-field", default="text", help="JSONL field holding the text")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_embed)


# --- verify ------------------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    from service.verify import format_report, run_verify, write_json

    checks = run_verify(texts=args.texts, backends=args.backend or ["torch"])
    print(format_report(checks))
    if args.json is not None:
        write_json(checks, args.json)
    failed = [c.name for c in checks if not c.passed]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="parity report against the reference implementations")
    p.add_argument("--texts", type=int, default=500, help="real texts per check")
    p.add_argument("--backend", action="append", choices=BACKENDS, help="repeatable")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.set_defaults(func=_verify)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semsearch", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING...")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_serve, _add_embed, _add_verify, add_index_commands, add_search_command):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
