"""`semsearch embed`: a file of texts to a float32 `.npy`, one row per text in input order."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from semsearch.cli.arguments import add_encoder_flags, load_embedder, positive_int

JSONL_SUFFIXES = (".jsonl", ".ndjson")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    what = "embed a file of texts into a float32 .npy (rows in input order)"
    p = subparsers.add_parser("embed", help=what, description=what)
    p.add_argument(
        "--input",
        type=Path,
        required=True,
        help="a text file, one text per line; .jsonl/.ndjson: one object per line (required)",
    )
    p.add_argument("--output", type=Path, required=True, help="the .npy to write (required)")
    p.add_argument(
        "--text-field", default="text", help="JSONL field holding the text (default: %(default)s)"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="texts per encoder batch (default: %(default)s)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")
    add_encoder_flags(p)
    p.set_defaults(run=run, prog=p.prog)


def read_texts(path: Path, text_field: str = "text") -> Iterator[str]:
    """One text per line, or JSONL objects with a string `text_field` (by extension).

    ValueError names the file and line of a row that is not such an object."""
    is_jsonl = path.suffix.lower() in JSONL_SUFFIXES
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
                raise ValueError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
                raise ValueError(
                    f"{path}:{line_no}: expected an object with a string {text_field!r}"
                )
            yield row[text_field]


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    texts = list(read_texts(args.input, args.text_field))  # bad input fails before the model loads
    embedder = load_embedder(args)
    out = np.empty((len(texts), embedder.dim), dtype=np.float32)
    step = args.batch_size * 8  # chunks for the progress bar; encode() batches within each
    with tqdm(total=len(texts), unit="text", desc="embedding", disable=args.quiet) as bar:
        for start in range(0, len(texts), step):
            chunk = texts[start : start + step]
            out[start : start + len(chunk)] = embedder.encode(chunk, batch_size=args.batch_size)
            bar.update(len(chunk))
    with open(args.output, "wb") as f:  # a path np.save would not append ".npy" to
        np.save(f, out)
    print(f"wrote {out.shape[0]} x {out.shape[1]} float32 to {args.output}")
    return 0
