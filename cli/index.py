"""`semsearch index build` and `semsearch index info` (`backup` and `restore`: cli/index_backup.py):
a collection from the shell."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from semsearch.cli import index_backup
from semsearch.cli.arguments import (
    add_encoder_flags,
    add_index_dir_flag,
    index_dir,
    load_embedder,
    non_negative_int,
    positive_int,
    positive_seconds,
    setting_help,
)
from semsearch.cli.exits import UsageError
from semsearch.service.settings import Settings

# ReaderOptions' defaults (index/ingest/readers.py), spelled out: importing it loads FAISS, which
# `--help` must not wait for (tests/unit/test_index_documents.py keeps the two equal).
DEFAULT_MAX_FILE_MB = 50
DEFAULT_MAX_PDF_PAGES = 2_000

# Loggers of the document parsers: their complaints about a malformed file name no file, and the
# file's skip reason says it better; shown with --log-level DEBUG.
PARSER_LOGGERS = ("pypdf", "trafilatura", "htmldate", "courlan", "justext", "readability")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    what = "build or inspect a collection"
    p = subparsers.add_parser("index", help=what, description=what)
    sub = p.add_subparsers(dest="index_command", required=True, metavar="COMMAND")
    _add_build(sub)
    _add_info(sub)
    index_backup.add_parsers(sub)


def _add_build(sub: argparse._SubParsersAction) -> None:
    what = (
        "batch-index documents; resumable: ids already stored are skipped, so a rerun after an "
        "interruption embeds only what is missing"
    )
    b = sub.add_parser("build", help=what, description=what)
    b.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help=".jsonl/.ndjson, .csv/.tsv (rows), .txt/.md, .html/.htm, .pdf (a document each), or "
        "a folder: its text, HTML and PDF files, read recursively; HTML and PDF need the ingest "
        "extra",
    )
    add_index_dir_flag(b)
    b.add_argument(
        "--id-field", default="id", help="JSONL/CSV field holding the id (default: %(default)s)"
    )
    b.add_argument(
        "--text-field",
        default="text",
        help="JSONL/CSV field holding the text (default: %(default)s)",
    )
    b.add_argument(
        "--metadata-fields",
        help="comma-separated metadata fields "
        "(default: a 'metadata' object, else the other fields)",
    )
    b.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="texts per encoder batch (default: %(default)s)",
    )
    b.add_argument(
        "--chunk-tokens",
        type=positive_int,
        help="store N-token chunks, ids `<id>#chunk-<n>` (default: whole documents)",
    )
    b.add_argument(
        "--chunk-overlap",
        type=non_negative_int,
        default=0,
        help="tokens consecutive chunks share; needs --chunk-tokens (default: %(default)s)",
    )
    b.add_argument(
        "--index-type",
        help="auto, Flat, HNSW<M> (e.g. HNSW32), IVF or IVF<nlist>,Flat; compressed: "
        "HNSW<M>,SQ8, IVF<nlist>,SQ8, IVF<nlist>,PQ<m>, IVF<nlist>,PQ<m>,Refine(SQ8|Flat) "
        "(docs/scaling.md; default: the collection's; auto for a new one)",
    )
    b.add_argument(
        "--ef-construction",
        type=positive_int,
        help="HNSW build breadth (default: the collection's; 80 for a new one)",
    )
    b.add_argument(
        "--ef-search",
        type=positive_int,
        help="HNSW search breadth (default: the collection's; 64 for a new one)",
    )
    b.add_argument(
        "--nprobe",
        type=non_negative_int,
        help="IVF lists searched, 0 = nlist/8 but at least 8 (default: the collection's; 0 for a "
        "new one)",
    )
    b.add_argument(
        "--reindex",
        action="store_true",
        help="first re-embed the stored texts with this encoder into a copy and swap it in; "
        "refused while another process has the collection open (default: off)",
    )
    b.add_argument(
        "--sync",
        action="store_true",
        help="afterwards delete the stored documents these inputs no longer hold (the inputs are "
        "the whole collection); nothing is deleted when a file or row could not be read "
        "(default: off)",
    )
    b.add_argument(
        "--lock-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        help=setting_help(
            "how long to wait for other processes' locks (for --reindex: for them to close it)",
            "lock_timeout_s",
        ),
    )
    b.add_argument(
        "--max-file-mb",
        type=positive_int,
        default=DEFAULT_MAX_FILE_MB,
        metavar="MB",
        help="skip text, HTML and PDF files larger than this many megabytes (10^6 bytes); JSONL "
        "and CSV are streamed and not limited (default: %(default)s)",
    )
    b.add_argument(
        "--max-pdf-pages",
        type=positive_int,
        default=DEFAULT_MAX_PDF_PAGES,
        metavar="N",
        help="skip PDFs of more pages, before reading any (default: %(default)s)",
    )
    b.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar, and skipped files counted by reason instead of listed "
        "(default: shown, listed)",
    )
    b.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="embed on Ray Data: a local Ray started for this build, or with ADDRESS (auto, "
        "HOST:PORT) the Ray cluster this machine is a node of; write it after the inputs or as "
        "--ray=ADDRESS; needs the ray extra (default: off, in this process)",
    )
    b.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="with --ray: encoder actors, one model each (default: the local Ray's CPUs, or the "
        "cluster's less one for reading, divided by --threads-per-worker)",
    )
    b.add_argument(
        "--threads-per-worker",
        type=positive_int,
        metavar="N",
        help="with --ray: encoder threads in each actor, the CPUs it reserves (default: this "
        "machine's CPUs: one encoder per machine's worth of cores ran 1.7x faster here than "
        "one-thread actors)",
    )
    add_encoder_flags(b)
    b.set_defaults(run=build, prog=b.prog)


def _add_info(sub: argparse._SubParsersAction) -> None:
    what = "count, dimension, index type, encoder fingerprint, size on disk"
    i = sub.add_parser("info", help=what, description=what)
    add_index_dir_flag(i)
    i.add_argument("--json", action="store_true", help="print JSON (default: key: value lines)")
    i.set_defaults(run=info, prog=i.prog)


def _build_options(args: argparse.Namespace) -> Any:
    """The flags as BuildOptions; UsageError for values or combinations it refuses."""
    from semsearch.index.config import normalize_type
    from semsearch.index.ingest.pipeline import BuildOptions
    from semsearch.index.ingest.readers import ReaderOptions

    fields = [f.strip() for f in args.metadata_fields.split(",")] if args.metadata_fields else None
    index_options = {
        key: value
        for key, value in (
            ("ef_construction", args.ef_construction),
            ("ef_search", args.ef_search),
            ("nprobe", args.nprobe),
        )
        if value is not None
    }
    lock_timeout = args.lock_timeout or Settings().lock_timeout_s
    try:
        if args.index_type is not None:
            normalize_type(args.index_type)
        return BuildOptions(
            reader=ReaderOptions(
                args.id_field,
                args.text_field,
                fields,
                max_file_bytes=args.max_file_mb * 1_000_000,
                max_pdf_pages=args.max_pdf_pages,
            ),
            batch_size=args.batch_size,
            chunk_tokens=args.chunk_tokens,
            chunk_overlap=args.chunk_overlap,
            index_type=args.index_type,
            index_options=index_options,
            reindex=args.reindex,
            sync=args.sync,
            lock_timeout_s=lock_timeout,
            store=_qdrant_target(args),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _qdrant_target(args: argparse.Namespace) -> Any:
    """With SEMSEARCH_STORE=qdrant, the Qdrant collection to build (`--collection` names a
    collection as the server does); None for the local store."""
    from semsearch.index.ingest.targets import QdrantTarget
    from semsearch.paths import qdrant_collection
    from semsearch.service.settings import QDRANT_IN_PROCESS

    settings = Settings()
    if settings.store != "qdrant":
        return None
    if args.index_dir is not None:
        raise UsageError("--index-dir names a local collection; SEMSEARCH_STORE is qdrant")
    if settings.qdrant_url in (None, QDRANT_IN_PROCESS):
        raise UsageError(
            "index build on the Qdrant store needs a server: SEMSEARCH_QDRANT_URL=http://..."
        )
    key = settings.qdrant_api_key
    return QdrantTarget(
        qdrant_collection(settings.qdrant_collection, args.collection or "default"),
        settings.qdrant_url,
        key.get_secret_value() if key is not None else None,
        settings.qdrant_shard_number,
        settings.qdrant_replication_factor,
    )


def _ray_options(args: argparse.Namespace) -> Any:
    """The --ray flags as RayOptions (None without --ray); UsageError for what they refuse."""
    from semsearch.index.ingest.ray_session import RayOptions, local_cpus
    from semsearch.index.ingest.readers import SUPPORTED_SUFFIXES

    if args.ray is None:
        if args.workers is not None or args.threads_per_worker is not None:
            raise UsageError("--workers and --threads-per-worker need --ray")
        return None
    address = args.ray or None
    if address == "local":
        address = None
    elif address is not None and address.startswith("ray://"):
        raise UsageError(
            f"--ray {address}: Ray Client is not supported (the collection is written where the "
            "build runs); run it on a node of the cluster with --ray auto or --ray HOST:PORT"
        )
    elif address is not None and (
        Path(address).exists() or Path(address).suffix.lower() in SUPPORTED_SUFFIXES
    ):
        raise UsageError(
            f"--ray took the input {address!r} for a cluster address: write --ray after the "
            "inputs, or --ray=ADDRESS"
        )
    return RayOptions(address, args.workers, args.threads_per_worker or local_cpus())


def build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from semsearch.index.ingest.pipeline import build_index

    options = _build_options(args)  # refused flags fail before the model loads
    ray_options = _ray_options(args)
    embedder = load_embedder(args)

    def bar(total: int) -> Any:
        return tqdm(
            total=total, unit="B", unit_scale=True, desc="indexing", disable=args.quiet, leave=True
        )

    def bad_row(row: Any) -> None:
        print(f"skipped {row}", file=sys.stderr)

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in PARSER_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    skipped: list[Any] = []
    directory = index_dir(args) if options.store is None else Path(".")  # unused on Qdrant
    if ray_options is None:
        report = build_index(
            args.inputs, directory, embedder, options, bad_row, bar, skipped.append
        )
    else:
        from semsearch.index.ingest.ray_build import build_index_ray
        from semsearch.index.ingest.ray_stages import EncoderSpec

        settings = Settings()
        encoder = EncoderSpec.of(
            embedder, args.model_dir or settings.model_dir, settings.onnx_options()
        )
        report = build_index_ray(
            args.inputs, directory, embedder, encoder, options, ray_options, bad_row, bar,
            skipped.append,
        )  # fmt: skip
    _print_skipped_files(skipped, args.quiet)
    print(
        f"{report.added} added ({report.updated} changed), {report.skipped_existing} already "
        f"stored, {report.bad_rows} bad rows skipped, {report.skipped_files} files skipped; "
        f"{report.count} documents in {directory} ({report.seconds:.1f}s, "
        f"{report.docs_per_s:.1f} docs/s)"
        + (f"; {report.reembedded} re-embedded" if args.reindex else "")
        + (f"; {report.deleted} deleted (--sync)" if args.sync else "")
    )
    if report.sync_refused:
        print(f"--sync deleted nothing: {report.sync_refused}", file=sys.stderr)
    return 0


def _print_skipped_files(skipped: list[Any], quiet: bool) -> None:
    """On stderr, once the progress bar is done: each skipped file and why, or with --quiet one
    line counting them by reason (with the fix where every file of that reason shares one)."""
    if not skipped:
        return
    files = f"{len(skipped)} file{'s' * (len(skipped) != 1)}"
    if not quiet:
        print(f"skipped {files}:", file=sys.stderr)
        for file in skipped:
            print(f"  {file}", file=sys.stderr)
        return
    parts = []
    for kind, n in Counter(file.kind for file in skipped).most_common():
        fixes = {file.fix for file in skipped if file.kind == kind}
        fix = fixes.pop() if len(fixes) == 1 else None
        parts.append(f"{n} {kind}" + (f" ({fix})" if fix else ""))
    print(f"skipped {files}: {', '.join(parts)}", file=sys.stderr)


def info(args: argparse.Namespace) -> int:
    from semsearch.index import Collection

    limits = Settings().index_limits()
    with Collection.open(index_dir(args), read_only=True, limits=limits) as col:
        details = col.info()
    if args.json:
        print(json.dumps(details, indent=2))
        return 0
    for key, value in details.items():
        if key == "encoder_fingerprint" and isinstance(value, dict):
            print("encoder_fingerprint:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
    return 0
