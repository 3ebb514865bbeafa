"""Hybrid search benchmark: MRR@10 and nDCG@10 of dense, keyword (BM25) and hybrid (RRF) search on
a known-item set built from the machine's Debian man pages, the p50 latency of each, and p50
search latency at 100,000 documents (dense against keyword and hybrid).

    .venv/bin/python bench/bench_hybrid.py [--gcloud 3000] [--queries 600] [--docs 100000]
        [--threads 2] [--skip-large]

The set: every English man page in /usr/share/man/man[1-8] that is a file of its own (not a
link), except Google Cloud SDK's 16,600 generated `gcloud_*` pages, of which a seeded sample of
`--gcloud` is kept; each rendered by groff (`-man -Tutf8`, no hyphenation). A query is a page's
NAME-line description (`ls - list directory contents` gives `list directory contents`); the
relevant documents are the pages whose description is that same text (the alpha, beta and GA
variants of a gcloud command share one); a document is its page without the NAME section (the
rest of the page as written: synopsis, description, options). Queries are a seeded sample of the
descriptions of at least three words. No text or judgement is ours.

Embeddings: the served encoder (`auto`), documents cut to its 256 tokens as `/documents` does;
cached in `.cache/embeddings/`. The collection: default settings (`Collection.open`), hybrid with
its defaults (rrf_k 60, 50 candidates a side). Latency: `Collection.search` alone, one query at a
time, the modes interleaved query by query; the query's encoding is timed apart (it is the same
for dense and hybrid, and keyword needs none). Two passes over the queries: the first reads each
keyword term's postings from SQLite when it first meets it (cold), the second finds them cached
(warm; the p50 and p90 columns); both are shown. At 100k: the pages cut into ~600-character chunks
(repeated with a suffix when short of the count), vectors the real document embeddings topped up
from a Gaussian fitted to them (as bench/bench_index.py does), queries the set's.
Results: bench/results/hybrid.json.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

import charts  # noqa: E402

from semsearch.index import Collection, Doc  # noqa: E402

MAN = Path("/usr/share/man")
CACHE = ROOT / ".cache"
NAME = "hybrid"
MODES = ("dense", "keyword", "hybrid")
_HEADING = re.compile(r"^[A-Z][A-Z0-9 ,/&()-]*$")


def page_files(n_gcloud: int, seed: int) -> list[Path]:
    files = sorted(
        p
        for d in sorted(MAN.glob("man[1-8]"))
        for p in d.iterdir()
        if p.is_file() and not p.is_symlink()
    )
    gcloud = [p for p in files if p.name.startswith("gcloud")]
    rest = [p for p in files if not p.name.startswith("gcloud")]
    return rest + sorted(random.Random(seed).sample(gcloud, min(n_gcloud, len(gcloud))))


def render(path: Path) -> str:
    source = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    done = subprocess.run(
        ["groff", "-man", "-Tutf8", "-P", "-cbou", "-rHY=0", "-rLL=2000n"],
        input=source,
        capture_output=True,
        timeout=60,
    )
    return done.stdout.decode("utf-8", "replace")


def split_page(rendered: str) -> tuple[str, str] | None:
    """(NAME description, the page without its NAME section and running header/footer)."""
    lines = rendered.splitlines()
    filled = [i for i, line in enumerate(lines) if line.strip()]
    if len(filled) < 3:
        return None
    lines = lines[filled[0] + 1 : filled[-1]]  # less the running header and footer
    name_at = next((i for i, line in enumerate(lines) if line.strip() == "NAME"), None)
    if name_at is None:
        return None
    end = next((i for i in range(name_at + 1, len(lines)) if _HEADING.match(lines[i])), len(lines))
    name = " ".join(" ".join(lines[name_at + 1 : end]).split())
    parts = re.split(r"\s[-\u2010\u2013\u2014]\s", name, maxsplit=1)
    if len(parts) != 2:
        return None
    body = " ".join(" ".join(lines[:name_at] + lines[end:]).split())
    return parts[1].strip(), body


def load_pages(files: list[Path]) -> list[dict[str, str]]:
    key = hashlib.sha256("\n".join(map(str, files)).encode()).hexdigest()[:16]
    path = CACHE / "bench-hybrid" / f"pages-{key}.json.gz"
    if path.exists():
        return json.loads(gzip.decompress(path.read_bytes()))
    print(f"rendering {len(files)} man pages with groff...", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=2) as pool:
        rendered = list(pool.map(render, files))
    pages = []
    for file, text in zip(files, rendered, strict=True):
        parsed = split_page(text)
        if parsed is not None and len(parsed[1]) >= 200:
            pages.append({"id": file.name, "description": parsed[0], "text": parsed[1]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(json.dumps(pages).encode()))
    return pages


def embed(embedder: Any, texts: list[str], batch_size: int) -> np.ndarray:
    """The encoder's vectors, cached per encoder fingerprint and texts."""
    fingerprint = json.dumps(embedder.fingerprint(), sort_keys=True)
    digest = hashlib.sha256("\x00".join([fingerprint, *texts]).encode()).hexdigest()[:24]
    path = CACHE / "embeddings" / f"bench-hybrid-{digest}.npy"
    if path.exists():
        return np.load(path)
    print(f"embedding {len(texts)} texts ({embedder.backend})...", file=sys.stderr)
    vectors = np.asarray(embedder.encode(texts, batch_size=batch_size), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def known_items(pages: list[dict[str, str]], n: int, seed: int) -> list[tuple[str, set[str]]]:
    """(description, ids of the pages with that description), for `n` seeded descriptions."""
    by_description: dict[str, set[str]] = {}
    for page in pages:
        by_description.setdefault(page["description"].lower(), set()).add(page["id"])
    firsts = {}
    for page in pages:  # each description as first written
        firsts.setdefault(page["description"].lower(), page["description"])
    usable = sorted(d for d in by_description if len(d.split()) >= 3)
    chosen = random.Random(seed).sample(usable, min(n, len(usable)))
    return [(firsts[d], by_description[d]) for d in chosen]


def scores_at_10(ranked: list[str], relevant: set[str]) -> tuple[float, float]:
    """(reciprocal rank, nDCG) at 10, binary relevance."""
    rr = next((1 / (i + 1) for i, doc in enumerate(ranked[:10]) if doc in relevant), 0.0)
    dcg = sum(1 / np.log2(i + 2) for i, doc in enumerate(ranked[:10]) if doc in relevant)
    ideal = sum(1 / np.log2(i + 2) for i in range(min(len(relevant), 10)))
    return rr, dcg / ideal


def run_queries(
    col: Collection, texts: list[str], vectors: np.ndarray, passes: int = 2
) -> tuple[list[dict[str, list[float]]], dict[str, list[list[str]]]]:
    """Seconds per search per pass and mode, and the ids found, per mode; modes interleaved
    query by query. The first pass reads each keyword term's postings when it first meets it
    (cold); the later ones find the terms cached, as a server does once warm."""
    for mode in MODES:
        col.search(vectors[0], 10, text=texts[0], mode=mode)  # the first query's set-up
    seconds: list[dict[str, list[float]]] = [{m: [] for m in MODES} for _ in range(passes)]
    found: dict[str, list[list[str]]] = {m: [] for m in MODES}
    for run in seconds:
        for text, vector in zip(texts, vectors, strict=True):
            for mode in MODES:
                start = time.perf_counter()
                hits = col.search(vector, 10, text=text, mode=mode)
                run[mode].append(time.perf_counter() - start)
                if run is seconds[0]:
                    found[mode].append([h.id for h in hits])
    return seconds, found


def p50_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def quality(args: argparse.Namespace, embedder: Any) -> tuple[dict[str, Any], Any]:
    pages = load_pages(page_files(args.gcloud, args.seed))
    items = known_items(pages, args.queries, args.seed)
    doc_vectors = embed(embedder, [p["text"] for p in pages], batch_size=32)
    queries = [q for q, _ in items]
    encode_s = []
    for q in queries[:200]:
        start = time.perf_counter()
        embedder.encode([q])
        encode_s.append(time.perf_counter() - start)
    query_vectors = embed(embedder, queries, batch_size=32)
    with tempfile.TemporaryDirectory() as tmp:
        with Collection.open(Path(tmp) / "man", background=False) as col:
            col.upsert([Doc(p["id"], p["text"]) for p in pages], doc_vectors)
            seconds, found = run_queries(col, queries, query_vectors)
    rows = {}
    for mode in MODES:
        pairs = [scores_at_10(f, rel) for f, (_, rel) in zip(found[mode], items, strict=True)]
        rows[mode] = {
            "mrr@10": float(np.mean([p[0] for p in pairs])),
            "ndcg@10": float(np.mean([p[1] for p in pairs])),
            "search_p50_ms": p50_ms(seconds[-1][mode]),
            "first_pass_p50_ms": p50_ms(seconds[0][mode]),
        }
    data = {
        "docs": len(pages),
        "queries": len(items),
        "gcloud_pages": sum(p["id"].startswith("gcloud") for p in pages),
        "encode_p50_ms": p50_ms(encode_s),
        "modes": rows,
    }
    return data, (pages, doc_vectors, queries, query_vectors)


def chunks(pages: list[dict[str, str]], n: int, size: int = 600) -> list[str]:
    out: list[str] = []
    for page in pages:
        words = page["text"].split()
        piece: list[str] = []
        for word in words:
            piece.append(word)
            if sum(len(w) + 1 for w in piece) >= size:
                out.append(" ".join(piece))
                piece = []
        if piece:
            out.append(" ".join(piece))
    base = len(out)
    out += [f"{out[i % base]} copy{i // base}" for i in range(max(0, n - base))]
    return out[:n]


def large(args: argparse.Namespace, corpus: Any) -> dict[str, Any]:
    pages, doc_vectors, queries, query_vectors = corpus
    texts = chunks(pages, args.docs)
    rng = np.random.default_rng(0)
    mean, cov = doc_vectors.mean(axis=0), np.cov(doc_vectors, rowvar=False)
    extra = rng.multivariate_normal(mean, cov, size=args.docs - len(doc_vectors), method="cholesky")
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    vectors = np.concatenate([doc_vectors, extra.astype(np.float32)])[: args.docs]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with Collection.open(Path(tmp) / "large", background=False) as col:
            for at in range(0, args.docs, 5_000):
                part = range(at, min(at + 5_000, args.docs))
                col.upsert([Doc(f"c{i}", texts[i]) for i in part], vectors[at : part.stop])
            col.wait_idle()
            built_s = time.perf_counter() - start
            factory = col.info()["factory"]
            seconds, _ = run_queries(col, queries, query_vectors, passes=1 + args.reps)
    warm = [{m: v for m, v in run.items()} for run in seconds[1:]]
    joined = {m: [x for run in warm for x in run[m]] for m in MODES}
    return {
        "docs": args.docs,
        "factory": factory,
        "build_s": built_s,
        "search_p50_ms": {mode: p50_ms(joined[mode]) for mode in MODES},
        "search_p90_ms": {m: statistics.quantiles(joined[m], n=10)[-1] * 1000 for m in MODES},
        "first_pass_p50_ms": {mode: p50_ms(seconds[0][mode]) for mode in MODES},
    }


def print_tables(results: dict[str, Any]) -> None:
    q = results["quality"]
    encode = q["encode_p50_ms"]
    dense = q["modes"]["dense"]
    print(
        f"\n{q['docs']} man pages ({q['gcloud_pages']} gcloud), {q['queries']} known-item "
        f"queries; query encoding p50 {encode:.1f} ms\n"
    )
    print(
        "| mode | MRR@10 | nDCG@10 | vs dense (MRR) | search p50 | with encoding | first pass p50 |"
    )
    print("|---|---|---|---|---|---|---|")
    for mode, row in q["modes"].items():
        gain = row["mrr@10"] / dense["mrr@10"] - 1
        total = row["search_p50_ms"] + (0 if mode == "keyword" else encode)
        print(
            f"| {mode} | {row['mrr@10']:.3f} | {row['ndcg@10']:.3f} | {gain:+.1%} | "
            f"{row['search_p50_ms']:.2f} ms | {total:.1f} ms | "
            f"{row['first_pass_p50_ms']:.2f} ms |"
        )
    big = results.get("large")
    if isinstance(big, dict):
        p50 = big["search_p50_ms"]
        print(f"\n{big['docs']} documents ({big['factory']}), search p50 / p90, encoding apart:\n")
        first = big["first_pass_p50_ms"]
        print(
            "| mode | p50 | p90 | p50 vs dense | with encoding, vs dense | first pass p50 | "
            "first pass vs dense |"
        )
        print("|---|---|---|---|---|---|---|")
        for mode in MODES:
            enc = 0 if mode == "keyword" else encode
            print(
                f"| {mode} | {p50[mode]:.2f} ms | {big['search_p90_ms'][mode]:.2f} ms | "
                f"x{p50[mode] / p50['dense']:.2f} | "
                f"x{(p50[mode] + enc) / (p50['dense'] + encode):.2f} | "
                f"{first[mode]:.2f} ms | x{first[mode] / first['dense']:.2f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gcloud", type=int, default=3_000, help="gcloud pages kept")
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--docs", type=int, default=100_000, help="documents of the latency run")
    parser.add_argument(
        "--reps", type=int, default=1, help="warm passes over the queries at 100k (after one cold)"
    )
    parser.add_argument("--threads", type=int, default=2, help="encoder threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--print-only", action="store_true", help="reprint the saved results")
    args = parser.parse_args()
    if args.print_only:
        results = charts.load_results(NAME)
    else:
        from semsearch.encoder import load_embedder

        run = charts.run_info()
        before = os.getloadavg()
        embedder = load_embedder(backend="auto", threads=args.threads)
        data, corpus = quality(args, embedder)
        print(json.dumps(data), file=sys.stderr)
        results = {"run": run, "encoder": embedder.backend, "quality": data}
        results["large"] = "skipped" if args.skip_large else large(args, corpus)
        run["load"] = charts.load_text(before, os.getloadavg())
        charts.save_results(NAME, results)
    print(f"{results['run']['command']}\n{results['run']['utc']} UTC, {results['run']['load']}")
    print(f"encoder: {results['encoder']}")
    print_tables(results)


if __name__ == "__main__":
    main()
