"""Index benchmark: search QPS, p50/p99 latency and recall@10 for Flat vs HNSW vs IVF, bytes per
stored document, and ingest docs/s against the encoder's own batch throughput on the same texts.

    .venv/bin/python bench/bench_index.py [--docs 100000] [--queries 1000] [--json out.json]

Vectors: the real all-MiniLM-L6-v2 embeddings of `evaluation.corpus.real_texts` cached under
`.cache/embeddings/` by tests/test_index_recall.py (same keys), as many as are cached; the rest are
drawn from a Gaussian with the real vectors' mean and covariance (this machine has ~52k real texts,
and embedding 100k on 2 shared cores takes an hour). Queries are held-out real texts. Single-query
searches, one thread (FAISS's OpenMP collapses on shared cores), load average recorded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semsearch.index import Collection, Doc, IndexConfig  # noqa: E402

CACHE = ROOT / ".cache" / "embeddings"
CHUNK = 10_000
N_TEST_DOCS, N_TEST_QUERIES = 20_000, 200  # what tests/test_index_recall.py caches


def _cached(texts: list[str] | tuple[str, ...]) -> np.ndarray | None:
    key = hashlib.sha256("\x00".join(["all-MiniLM-L6-v2", *texts]).encode()).hexdigest()[:24]
    path = CACHE / f"minilm-{key}.npy"
    return np.load(path) if path.exists() else None


def real_vectors(n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(docs, queries, doc texts): cached real embeddings, topped up with fitted Gaussian draws."""
    from semsearch.evaluation.corpus import real_texts

    texts = list(real_texts(N_TEST_DOCS + N_TEST_QUERIES))
    parts = []
    for start in range(0, N_TEST_DOCS, CHUNK):
        vecs = _cached(texts[start : start + CHUNK])
        if vecs is None:
            break
        parts.append(vecs)
    queries = _cached(texts[N_TEST_DOCS:])
    if not parts or queries is None:
        raise SystemExit(
            "no cached real embeddings: run `pytest tests/test_index_recall.py` once first"
        )
    real = np.concatenate(parts)[:n]
    doc_texts = texts[: len(real)]
    if len(real) < n:
        rng = np.random.default_rng(0)
        mean, cov = real.mean(axis=0), np.cov(real, rowvar=False)
        extra = rng.multivariate_normal(mean, cov, size=n - len(real), method="cholesky")
        extra = (extra / np.linalg.norm(extra, axis=1, keepdims=True)).astype(np.float32)
        real = np.concatenate([real, extra])
        doc_texts += [doc_texts[i % len(doc_texts)] for i in range(n - len(doc_texts))]
    return real, queries, doc_texts


def bench_type(
    index_type: str, vectors: np.ndarray, texts: list[str], queries: np.ndarray, reps: int
) -> dict[str, Any]:
    sims = queries @ vectors.T  # (Q, N)
    # Tie-aware truth: the real corpus has ~3 % duplicate vectors; any doc scoring at least the
    # exact 10th best is a correct answer.
    kth = np.sort(sims, axis=1)[:, -10] - 1e-5  # (Q,)
    tmp = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        config = IndexConfig(index_type=index_type)
        t0 = time.perf_counter()
        with Collection.open(tmp / "c", config=config) as col:
            for start in range(0, len(vectors), CHUNK):
                stop = min(start + CHUNK, len(vectors))
                docs = [
                    Doc(str(i), texts[i], {"bucket": i % 10, "n": i}) for i in range(start, stop)
                ]
                col.upsert(docs, vectors[start:stop])
        add_s = time.perf_counter() - t0
        with Collection.open(tmp / "c") as col:
            factory = col.info()["factory"]
            col.search(queries[0], k=10)  # warm
            latencies, found = [], []
            for rep in range(reps):
                for q in queries:
                    s = time.perf_counter()
                    hits = col.search(q, k=10)
                    latencies.append(time.perf_counter() - s)
                    if rep == 0:
                        found.append({int(h.id) for h in hits})
            # 10 % of the docs match. "new": a different filter each query (the SQL scan runs);
            # "repeated": the same filter (matches cached per store sequence).
            filtered_new, filtered_rep = [], []
            for j, q in enumerate(queries[:100]):
                s = time.perf_counter()
                col.search(q, k=10, filter={"bucket": 3, "n": {"gte": j}})
                filtered_new.append(time.perf_counter() - s)
                s = time.perf_counter()
                col.search(q, k=10, filter={"bucket": 3})
                filtered_rep.append(time.perf_counter() - s)
            info = col.info()
        recall = float(
            np.mean([sum(sims[q, i] >= kth[q] for i in f) / 10 for q, f in enumerate(found)])
        )
        lat = np.array(latencies) * 1000
        return {
            "index": factory,
            "docs": len(vectors),
            "add_docs_s": len(vectors) / add_s,
            "qps": len(latencies) / sum(latencies),
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "filtered_new_p50_ms": float(np.median(filtered_new) * 1000),
            "filtered_repeated_p50_ms": float(np.median(filtered_rep) * 1000),
            "recall@10": recall,
            "bytes_per_doc": info["bytes_on_disk"] / info["count"],
        }
    finally:
        shutil.rmtree(tmp)


def bench_ingest(n_texts: int, rounds: int) -> dict[str, Any] | str:
    """Indexer docs/s vs `embedder.encode` docs/s on the same texts, interleaved A B A B."""
    try:
        from semsearch.encoder import load_embedder

        embedder = load_embedder(threads=1)
    except Exception as exc:  # any failure means "not usable yet": report which, and go on
        return f"skipped: the encoder is not usable yet ({type(exc).__name__}: {exc})"
    from semsearch.evaluation.corpus import real_texts
    from semsearch.index.ingest.pipeline import BuildOptions, build_index

    texts = list(real_texts(N_TEST_DOCS + N_TEST_QUERIES + n_texts))[-n_texts:]
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    src = tmp / "in.jsonl"
    src.write_text(
        "".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts))
    )
    # Wall-clock rates, and CPU-time rates: on shared cores the wall clock swings +-30 % with the
    # neighbours' load, while CPU seconds show the indexer's own overhead.
    encode_rates, ingest_rates, encode_cpu, ingest_cpu = [], [], [], []
    try:
        embedder.encode(texts[:64], batch_size=32)  # warm
        for r in range(rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            embedder.encode(texts, batch_size=32)
            encode_rates.append(n_texts / (time.perf_counter() - t0))
            encode_cpu.append(n_texts / (time.process_time() - c0))
            t0, c0 = time.perf_counter(), time.process_time()
            build_index([src], tmp / f"idx{r}", embedder, BuildOptions(batch_size=32))
            ingest_rates.append(n_texts / (time.perf_counter() - t0))
            ingest_cpu.append(n_texts / (time.process_time() - c0))
    finally:
        shutil.rmtree(tmp)
    ratios = [i / e for i, e in zip(ingest_rates, encode_rates, strict=True)]
    cpu_ratios = [i / e for i, e in zip(ingest_cpu, encode_cpu, strict=True)]
    return {
        "cpu_ratio": statistics.median(cpu_ratios),
        "texts": n_texts,
        "encode_docs_s": statistics.median(encode_rates),
        "ingest_docs_s": statistics.median(ingest_rates),
        "ratio": statistics.median(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5, help="passes over the 200 queries")
    parser.add_argument("--types", default="Flat,HNSW32,IVF", help="comma-separated index types")
    parser.add_argument("--ingest-texts", type=int, default=2_000)
    parser.add_argument("--ingest-rounds", type=int, default=2)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    vectors, queries, texts = real_vectors(args.docs)
    n_real = min(len(vectors), N_TEST_DOCS)
    load = os.getloadavg()[0]
    print(f"{len(vectors)} docs ({n_real} real), {len(queries)} real queries, load {load:.1f}")
    rows = []
    for kind in filter(None, args.types.split(",")):
        row = bench_type(kind.strip(), vectors, texts, queries, args.reps)
        row["load"] = os.getloadavg()[0]
        rows.append(row)
        print(json.dumps(row), flush=True)
    ingest = (
        "skipped (--skip-ingest)"
        if args.skip_ingest
        else bench_ingest(args.ingest_texts, args.ingest_rounds)
    )
    print()
    print(
        "| index | docs | recall@10 | QPS | p50 ms | p99 ms | filtered p50 ms (new / repeated) "
        "| add docs/s | bytes/doc |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['index']} | {r['docs']:,} | {r['recall@10']:.3f} | {r['qps']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['filtered_new_p50_ms']:.1f} / "
            f"{r['filtered_repeated_p50_ms']:.1f} | "
            f"{r['add_docs_s']:,.0f} | {r['bytes_per_doc']:,.0f} |"
        )
    print()
    if isinstance(ingest, str):
        print(f"ingest vs encoder: {ingest}")
    else:
        print(
            f"ingest vs encoder on {ingest['texts']} real texts: indexer "
            f"{ingest['ingest_docs_s']:.1f} docs/s, encoder alone {ingest['encode_docs_s']:.1f} "
            f"docs/s, ratio {ingest['ratio']:.2f} (wall clock), "
            f"{ingest['cpu_ratio']:.2f} (CPU time)"
        )
    if args.json:
        args.json.write_text(json.dumps({"search": rows, "ingest": ingest, "load": load}, indent=2))


if __name__ == "__main__":
    main()
