"""The `semsearch` command line: one console script, one subcommand per job (API.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from semsearch.cli.index import add_index_commands, add_search_command
from semsearch.service.settings import BACKENDS, Settings


def _settings_from(args: argparse.Namespace, *names: str) -> Settings:
    """Flags that were given override SEMSEARCH_* variables, which override defaults."""
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return Settings(**given)


# --- serve -------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from semsearch.service.app import create_app

    settings = _settings_from(args, "host", "port", "index_dir", "backend", "model_dir", "threads")
    app = create_app(settings)
    # Tokenizer threads hold the GIL for Python's default 5 ms at a time; handing it back sooner
    # keeps the event loop (and /health) responsive while they run (bench/bench_health.py).
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        limit_concurrency=settings.max_connections,
    )
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

    from semsearch.service.encoders import load_configured_embedder

    texts = list(read_texts(args.input, args.text_field))
    embedder = load_configured_embedder(
        backend=args.backend, model_dir=args.model_dir, threads=args.threads
    )
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
    p.add_argument("--backend", choices=BACKENDS, help="default: SEMSEARCH_BACKEND, onnx-int8")
    p.add_argument("--model-dir", type=Path)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int)
    p.add_argument("--text-field", default="text", help="JSONL field holding the text")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_embed)


# --- export ------------------------------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    from semsearch.encoder.onnx.accuracy import Thresholds
    from semsearch.evaluation.export import run_export, run_search

    settings = Settings()
    out = args.out or settings.onnx_dir
    if args.search:
        print(run_search(out, model_dir=args.model_dir, threads=args.threads))
        return 0
    thresholds = Thresholds(
        settings.int8_min_cosine, settings.int8_mean_cosine, settings.int8_top10_agreement
    )
    written = run_export(
        out, args.model_dir, quantize=args.quantize, threads=args.threads, thresholds=thresholds
    )
    for path in written:
        print(f"wrote {path} (+ {path.name}.accuracy.json)", file=sys.stderr)
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export the encoder to ONNX (fp32, fused, int8) with accuracy reports"
    )
    p.add_argument("--quantize", choices=["int8"], help="also write the int8 artifact")
    p.add_argument("--out", type=Path, help="artifact directory (default: models/onnx)")
    p.add_argument("--model-dir", type=Path, help="sentence-transformers model directory")
    p.add_argument("--threads", type=int, help="threads for the measurements")
    p.add_argument(
        "--search", action="store_true", help="measure the quantization variants (README table)"
    )
    p.set_defaults(func=_export)


# --- verify ------------------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    from semsearch.evaluation.verify import format_report, run_verify, write_json

    checks = run_verify(
        texts=args.texts, backends=args.backend or list(BACKENDS), decoder=not args.no_decoder
    )
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
    p.add_argument("--backend", action="append", choices=BACKENDS, help="repeatable (default: all)")
    p.add_argument("--no-decoder", action="store_true", help="skip the decoder checks")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.set_defaults(func=_verify)


# --- generate ----------------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
    from semsearch.decoder import load_generator

    generator = load_generator(gguf_path=args.gguf, threads=args.threads, weights=args.weights)
    if args.chat:
        prompt = generator.apply_chat_template([{"role": "user", "content": args.prompt}])
    else:
        prompt = args.prompt
    events = generator.stream(
        generator.tokenizer.encode(prompt),
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
    )
    parts: list[str] = []
    usage: dict[str, int] = {}
    for event in events:
        if args.stream:
            print(event.text, end="", flush=True)
        parts.append(event.text)
        if event.finish_reason is not None:
            usage = event.usage or {}
    if not args.stream:
        print("".join(parts), end="")
    print()
    print(
        f"[{usage.get('completion_tokens', 0)} tokens, prompt {usage.get('prompt_tokens', 0)}]",
        file=sys.stderr,
    )
    return 0


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="run the bundled decoder on a prompt")
    p.add_argument("prompt")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int)
    p.add_argument("--stream", action="store_true", help="print tokens as they come")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    p.add_argument("--weights", choices=("fp32", "int8", "int4"), default="fp32")
    p.add_argument("--gguf", type=Path, help="GGUF file (default: the bundled SmolLM2)")
    p.add_argument("--threads", type=int)
    p.set_defaults(func=_generate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semsearch", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING...")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = (_add_serve, _add_embed, _add_export, _add_verify, _add_generate)
    for add in (*commands, add_index_commands, add_search_command):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # libgomp's threads spin-wait at every sync point by default; on shared cores that makes
    # torch 10-40x slower when another process runs (measured in bench/bench_encoder.py). It must
    # be set before torch is imported, which no command has done yet at this point.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
