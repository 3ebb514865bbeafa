"""`semsearch search`: one query against a collection, hits on stdout."""

from __future__ import annotations

import argparse
import json

from semsearch.cli.arguments import (
    add_encoder_flags,
    add_index_dir_flag,
    index_dir,
    json_object,
    load_embedder,
    positive_int,
)
from semsearch.service.settings import Settings

_SHOWN_CHARS = 100  # of each hit's text in the plain listing


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    what = "one query against a collection, best hits first"
    p = subparsers.add_parser("search", help=what, description=what)
    p.add_argument("query", metavar="QUERY", help="the query text")
    add_index_dir_flag(p)
    p.add_argument(
        "-k", type=positive_int, default=10, help="hits to return (default: %(default)s)"
    )
    p.add_argument(
        "--filter",
        type=json_object,
        help='metadata filter as JSON, as POST /search takes it, e.g. \'{"lang": "en"}\' '
        "(default: none)",
    )
    p.add_argument(
        "--mode",
        choices=("dense", "keyword", "hybrid"),
        default="dense",
        help="dense (by meaning), keyword (BM25, loads no encoder) or hybrid (both, fused by "
        "reciprocal rank), as POST /search's mode (default: %(default)s)",
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        help="drop hits scoring below this: cosine, BM25 or fused, by --mode (default: none)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"hits": [...]}, hits shaped as POST /search\'s (default: one line per hit)',
    )
    add_encoder_flags(p)
    p.set_defaults(run=run, prog=p.prog)


def run(args: argparse.Namespace) -> int:
    from semsearch.index import Collection

    embedder = None if args.mode == "keyword" else load_embedder(args)
    with Collection.open(
        index_dir(args),
        dim=embedder.dim if embedder else None,
        encoder_fingerprint=embedder.fingerprint() if embedder else None,
        read_only=True,
        limits=Settings().index_limits(),  # lock and query timeouts, filter size
    ) as col:
        query = embedder.encode([args.query], batch_size=1)[0] if embedder else None
        hits = col.search(
            query,
            k=args.k,
            filter=args.filter,
            score_threshold=args.score_threshold,
            text=args.query,
            mode=args.mode,
        )
    if args.json:
        print(json.dumps({"hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
        return 0
    for rank, hit in enumerate(hits, start=1):
        text = " ".join(hit.text.split())
        print(f"{rank:>3}. {hit.score:.4f}  {hit.id}  {text[:_SHOWN_CHARS]}")
    if not hits:
        print("no hits")
    return 0
