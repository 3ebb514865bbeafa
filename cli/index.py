"""`semsearch index build|info` and `semsearch search`: the collection from the shell (API.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from semsearch.service.settings import BACKENDS


def _index_dir(args: argparse.Namespace) -> Path:
    """--index-dir, else SEMSEARCH_INDEX_DIR, else the default (service/settings.py)."""
    if args.index_dir is not None:
        return args.index_dir
    from semsearch.service.settings import Settings

    return Settings().index_dir


def load_embedder(args: argparse.Namespace) -> Any:
    """The encoder named by the flags, else by the settings (tests replace this function)."""
    from semsearch.service.encoders import load_configured_embedder

    return load_configured_embedder(
        backend=args.backend, model_dir=args.model_dir, threads=args.threads
    )


def _add_encoder_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="encoder backend (default: SEMSEARCH_BACKEND, onnx-int8)",
    )
    p.add_argument("--model-dir", type=Path, help="sentence-transformers model directory")
    p.add_argument("--threads", type=int, help="encoder threads (default: the runtime's)")


# --- index build ---------------------------------------------------------------------------------


def _build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from semsearch.index import CollectionError
    from semsearch.index.ingest.pipeline import BuildOptions, build_index
    from semsearch.index.ingest.readers import ReaderOptions

    fields = [f.strip() for f in args.metadata_fields.split(",")] if args.metadata_fields else None
    try:
        options = BuildOptions(
            reader=ReaderOptions(args.id_field, args.text_field, fields),
            batch_size=args.batch_size,
            chunk_tokens=args.chunk_tokens,
            chunk_overlap=args.chunk_overlap,
            index_type=args.index_type,
            index_options={
                key: value
                for key, value in (
                    ("ef_construction", args.ef_construction),
                    ("ef_search", args.ef_search),
                    ("nprobe", args.nprobe),
                )
                if value is not None
            },
            reindex=args.reindex,
            lock_timeout_s=args.lock_timeout,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    embedder = load_embedder(args)

    def bar(total: int) -> Any:
        return tqdm(
            total=total, unit="B", unit_scale=True, desc="indexing", disable=args.quiet, leave=True
        )

    def bad_row(row: Any) -> None:
        print(f"skipped {row}", file=sys.stderr)

    index_dir = _index_dir(args)
    try:
        report = build_index(args.inputs, index_dir, embedder, options, bad_row, bar)
    except (CollectionError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report.added} added, {report.skipped_existing} already stored, {report.bad_rows} bad "
        f"rows skipped; {report.count} documents in {index_dir} "
        f"({report.seconds:.1f}s, {report.docs_per_s:.1f} docs/s)"
        + (f"; {report.reembedded} re-embedded" if args.reindex else "")
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    from semsearch.index import Collection, CollectionError

    try:
        with Collection.open(_index_dir(args), read_only=True) as col:
            info = col.info()
    except CollectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if key == "encoder_fingerprint" and isinstance(value, dict):
            print("encoder_fingerprint:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
    return 0


def add_index_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("index", help="build or inspect a collection")
    sub = p.add_subparsers(dest="index_command", required=True)

    b = sub.add_parser("build", help="batch-index JSONL / CSV / folders of .txt/.md (resumable)")
    b.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    b.add_argument("--index-dir", type=Path, help="collection directory")
    b.add_argument("--id-field", default="id", help="JSONL/CSV field holding the id")
    b.add_argument("--text-field", default="text", help="JSONL/CSV field holding the text")
    b.add_argument(
        "--metadata-fields",
        help="comma-separated metadata fields (default: a 'metadata' object, else the rest)",
    )
    b.add_argument("--batch-size", type=int, default=32, help="texts per encoder batch")
    b.add_argument("--chunk-tokens", type=int, help="split documents into N-token chunks")
    b.add_argument("--chunk-overlap", type=int, default=0, help="tokens shared by chunks")
    b.add_argument("--index-type", help="auto (default), Flat, HNSW32, IVF or IVF<n>,Flat")
    b.add_argument("--ef-construction", type=int, help="HNSW build breadth (default 80)")
    b.add_argument("--ef-search", type=int, help="HNSW search breadth (default 64)")
    b.add_argument("--nprobe", type=int, help="IVF lists searched (default nlist/8)")
    b.add_argument(
        "--reindex",
        action="store_true",
        help="re-embed stored texts with this encoder first (stop servers using it first)",
    )
    b.add_argument(
        "--lock-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for other processes' locks (a reindex: for them to close it)",
    )
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_encoder_flags(b)
    b.set_defaults(func=_build)

    i = sub.add_parser("info", help="count, dimension, index type, encoder, size on disk")
    i.add_argument("--index-dir", type=Path, help="collection directory")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_info)


# --- search --------------------------------------------------------------------------------------


def _search(args: argparse.Namespace) -> int:
    from semsearch.index import Collection, CollectionError

    try:
        flt = json.loads(args.filter) if args.filter else None
    except json.JSONDecodeError as exc:
        print(f"error: --filter is not valid JSON: {exc}", file=sys.stderr)
        return 2
    try:
        embedder = load_embedder(args)
        with Collection.open(
            _index_dir(args),
            dim=embedder.dim,
            encoder_fingerprint=embedder.fingerprint(),
            read_only=True,
        ) as col:
            query = embedder.encode([args.query], batch_size=1)[0]
            hits = col.search(query, k=args.k, filter=flt, score_threshold=args.score_threshold)
    except CollectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
        return 0
    for rank, hit in enumerate(hits, start=1):
        text = " ".join(hit.text.split())
        print(f"{rank:>3}. {hit.score:.4f}  {hit.id}  {text[:100]}")
    if not hits:
        print("no hits")
    return 0


def add_search_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="one query against a collection")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("--index-dir", type=Path, help="collection directory")
    p.add_argument("-k", type=int, default=10, help="hits to return")
    p.add_argument("--filter", help='metadata filter as JSON, e.g. \'{"lang": "en"}\'')
    p.add_argument("--score-threshold", type=float, help="drop hits below this cosine")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_encoder_flags(p)
    p.set_defaults(func=_search)
