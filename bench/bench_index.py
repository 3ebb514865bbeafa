"""Index benchmark: search QPS, p50/p99 latency and recall@10 for Flat vs HNSW vs IVF, a sweep of
HNSW's efSearch and IVF's nprobe (recall@10 against QPS, drawn as docs/img/index_recall_qps.png),
bytes per stored document, and ingest docs/s against the encoder's own batch throughput.

    .venv/bin/python bench/bench_index.py [--docs 100000] [--real 20000] [--reps 5]
        [--sweep-reps 3] [--skip-sweep] [--skip-ingest] [--plot-only]

Vectors: `--real` real texts of `evaluation.corpus.real_texts`. Their sentence-transformers
embeddings are read from `.cache/embeddings/` when tests/conformance/test_index_recall.py has
cached them (same keys); otherwise our fp32 ONNX encoder embeds them here (about 50 texts/s on
2 loaded cores) and caches them apart. The rest of `--docs` are drawn from a Gaussian with the
real vectors' mean and covariance (the shipped corpus has 38,129 real texts). Queries: 200
held-out real texts.
Single-query searches through `Collection.search` (the service's path: FAISS, then SQLite for
the hits), one thread (FAISS's OpenMP collapses on shared cores), load average recorded.
Results: bench/results/index.json.
"""

from __future__ import annotations

import argparse
import dataclasses
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

import charts  # noqa: E402

from semsearch.index import Collection, Doc, IndexConfig  # noqa: E402

CACHE = ROOT / ".cache" / "embeddings"
CHUNK = 10_000
N_TEST_DOCS, N_TEST_QUERIES = 20_000, 200  # what tests/conformance/test_index_recall.py caches
HNSW_EF = (8, 16, 32, 64, 128, 256)
IVF_NPROBE = (1, 2, 4, 8, 16, 32, 64, 128)
NAME = "index"


def _key(prefix: str, texts: list[str] | tuple[str, ...]) -> Path:
    digest = hashlib.sha256("\x00".join(["all-MiniLM-L6-v2", *texts]).encode()).hexdigest()[:24]
    return CACHE / f"{prefix}-{digest}.npy"


def _reference_cache(doc_texts: list[str], query_texts: list[str]) -> tuple[Any, Any] | None:
    """The test's cached sentence-transformers vectors (10k-text chunks), if all are there."""
    parts = []
    for start in range(0, len(doc_texts), CHUNK):
        chunk = _key("minilm", doc_texts[start : start + CHUNK])
        if not chunk.exists():
            return None
        parts.append(np.load(chunk))
    queries = _key("minilm", query_texts)
    return (np.concatenate(parts), np.load(queries)) if queries.exists() else None


def _embedded_here(texts: list[str]) -> np.ndarray:
    path = _key("bench-onnx-fp32", texts)
    if path.exists():
        return np.load(path)
    from semsearch.encoder import load_embedder

    print(f"embedding {len(texts)} real texts with our fp32 ONNX encoder...", file=sys.stderr)
    vectors = load_embedder(backend="onnx", threads=2).encode(texts, batch_size=32)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(vectors, dtype=np.float32))
    os.replace(tmp, path)
    return np.load(path)


def real_vectors(n: int, n_real: int) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """(docs, queries, doc texts, where the real vectors came from), topped up to n docs with
    draws from a Gaussian fitted to the real ones."""
    from semsearch.evaluation.corpus import real_texts

    texts = list(real_texts(N_TEST_DOCS + N_TEST_QUERIES))
    n_real = min(n, n_real, N_TEST_DOCS)
    cover = min(N_TEST_DOCS, -(-n_real // CHUNK) * CHUNK)  # whole cached chunks
    cached = _reference_cache(texts[:cover], texts[N_TEST_DOCS:])
    if cached is not None:
        real, queries = cached[0][:n_real], cached[1]
        source = "sentence-transformers (cached by the recall test)"
    else:
        vectors = _embedded_here(texts[:n_real] + texts[N_TEST_DOCS:])
        real, queries = vectors[:n_real], vectors[n_real:]
        source = "our fp32 ONNX encoder"
    doc_texts = texts[:n_real]
    if n_real < n:
        rng = np.random.default_rng(0)
        mean, cov = real.mean(axis=0), np.cov(real, rowvar=False)
        extra = rng.multivariate_normal(mean, cov, size=n - n_real, method="cholesky")
        extra = (extra / np.linalg.norm(extra, axis=1, keepdims=True)).astype(np.float32)
        real = np.concatenate([real, extra])
        doc_texts += [doc_texts[i % n_real] for i in range(n - n_real)]
    return real, queries, doc_texts, source


def timed_searches(col: Collection, queries: np.ndarray, reps: int) -> tuple[list[float], list]:
    """(seconds of every search, the ids found by the first pass)."""
    col.search(queries[0], k=10)  # warm
    latencies, found = [], []
    for rep in range(reps):
        for q in queries:
            start = time.perf_counter()
            hits = col.search(q, k=10)
            latencies.append(time.perf_counter() - start)
            if rep == 0:
                found.append({int(h.id) for h in hits})
    return latencies, found


def recall_at_10(found: list[set[int]], sims: np.ndarray, kth: np.ndarray) -> float:
    """Tie-aware: the real corpus has ~3 % duplicate vectors, so any doc scoring at least the
    exact 10th best is a correct answer."""
    return float(np.mean([sum(sims[q, i] >= kth[q] for i in f) / 10 for q, f in enumerate(found)]))


def _nlist(factory: str) -> int:
    return int(factory.removeprefix("IVF").split(",")[0])  # "IVF692,Flat" -> 692


def sweep(directory: Path, config: IndexConfig, factory: str, queries: np.ndarray,
          sims: np.ndarray, kth: np.ndarray, reps: int) -> list[dict[str, Any]]:  # fmt: skip
    """Recall@10 and QPS at each efSearch (HNSW) or nprobe (IVF), on read-only handles."""
    if factory.startswith("HNSW"):
        field, values = "ef_search", {*HNSW_EF, config.ef_search}
    elif factory.startswith("IVF"):
        nlist = _nlist(factory)
        field, values = "nprobe", {v for v in (*IVF_NPROBE, config.nprobe_for(nlist)) if v <= nlist}
    else:
        return []
    settings = [(field, v) for v in sorted(values)]  # the default setting among them
    points = []
    for field, value in settings:
        tuned = dataclasses.replace(config, **{field: value})
        with Collection.open(directory, config=tuned, read_only=True) as col:
            latencies, found = timed_searches(col, queries, reps)
        points.append(
            {
                field: value,
                "qps": len(latencies) / sum(latencies),
                "p50_ms": float(np.median(latencies) * 1000),
                "recall@10": recall_at_10(found, sims, kth),
            }
        )
        print(f"  {factory} {field}={value}: {json.dumps(points[-1])}", file=sys.stderr)
    return points


def bench_type(index_type: str, vectors: np.ndarray, texts: list[str], queries: np.ndarray,
               args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    sims = queries @ vectors.T  # (Q, N)
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
            latencies, found = timed_searches(col, queries, args.reps)
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
        lat = np.array(latencies) * 1000
        nprobe = config.nprobe_for(_nlist(factory)) if factory.startswith("IVF") else None
        row = {
            "index": factory,
            "docs": len(vectors),
            "add_docs_s": len(vectors) / add_s,
            "qps": len(latencies) / sum(latencies),
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "filtered_new_p50_ms": float(np.median(filtered_new) * 1000),
            "filtered_repeated_p50_ms": float(np.median(filtered_rep) * 1000),
            "recall@10": recall_at_10(found, sims, kth),
            "bytes_per_doc": info["bytes_on_disk"] / info["count"],
            "defaults": {"ef_search": config.ef_search, "nprobe": nprobe},
        }
        if not args.skip_sweep:
            row["sweep"] = sweep(tmp / "c", config, factory, queries, sims, kth, args.sweep_reps)
        return row
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


def print_tables(results: dict[str, Any]) -> None:
    print(
        "\n| index | docs | recall@10 | QPS | p50 ms | p99 ms | filtered p50 ms (new / repeated) "
        "| add docs/s | bytes/doc |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results["search"]:
        print(
            f"| {r['index']} | {r['docs']:,} | {r['recall@10']:.3f} | {r['qps']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['filtered_new_p50_ms']:.1f} / "
            f"{r['filtered_repeated_p50_ms']:.1f} | "
            f"{r['add_docs_s']:,.0f} | {r['bytes_per_doc']:,.0f} |"
        )
    for r in results["search"]:
        if r.get("sweep"):
            field = "ef_search" if "ef_search" in r["sweep"][0] else "nprobe"
            print(f"\n| {r['index']} {field} | recall@10 | QPS | p50 ms |")
            print("| ---: | ---: | ---: | ---: |")
            for p in r["sweep"]:
                print(
                    f"| {p[field]} | {p['recall@10']:.3f} | {p['qps']:,.0f} | {p['p50_ms']:.2f} |"
                )
    ingest = results["ingest"]
    if isinstance(ingest, str):
        print(f"\ningest vs encoder: {ingest}")
    else:
        print(
            f"\ningest vs encoder on {ingest['texts']} real texts: indexer "
            f"{ingest['ingest_docs_s']:.1f} docs/s, encoder alone {ingest['encode_docs_s']:.1f} "
            f"docs/s, ratio {ingest['ratio']:.2f} (wall clock), "
            f"{ingest['cpu_ratio']:.2f} (CPU time)"
        )


def draw(results: dict[str, Any]) -> None:
    """Recall@10 against QPS: one line per index type through its sweep, the default circled."""
    plt = charts.pyplot()
    from matplotlib import ticker

    fig, ax = plt.subplots(figsize=(8, 5.2))
    fig.subplots_adjust(bottom=0.2, top=0.88)
    colors = {"HNSW": charts.COLORS["ours"], "IVF": charts.COLORS["other"]}
    for r in results["search"]:
        kind = "HNSW" if r["index"].startswith("HNSW") else "IVF" if "IVF" in r["index"] else ""
        if not kind:
            ax.scatter(r["qps"], r["recall@10"], color=charts.COLORS["reference"], marker="s",
                       s=50, zorder=3, label=f"{r['index']} (exact search)")  # fmt: skip
            continue
        field, name = ("ef_search", "efSearch") if kind == "HNSW" else ("nprobe", "nprobe")
        points = r.get("sweep") or []
        ax.plot([p["qps"] for p in points], [p["recall@10"] for p in points], marker="o",
                ms=4, color=colors[kind], label=f"{r['index']}, {name} swept")  # fmt: skip
        for p in points:
            ax.annotate(str(p[field]), (p["qps"], p["recall@10"]), fontsize=7,
                        xytext=(4, -9), textcoords="offset points")  # fmt: skip
        default = r["defaults"][field]
        # The default's sweep point, or the main measurement when the sweep did not include it.
        at = next((p for p in points if p[field] == default), r)
        label = f"{r['index']} default ({name} {default})"
        ax.scatter(at["qps"], at["recall@10"], s=110, facecolors="none", edgecolors=colors[kind],
                   linewidths=1.5, zorder=3, label=label)  # fmt: skip
    data = results["data"]
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(
        ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if str(v)[0] in "25" else "")
    )
    ax.set_xlabel("queries per second (one thread, one query at a time; log scale)")
    ax.set_ylabel("recall@10 against exact search")
    drawn = data["docs"] - data["real"]
    docs = f"{data['docs']:,} documents ({data['real']:,} real"
    docs += f", {drawn:,} drawn from a Gaussian fitted to them)" if drawn else ")"
    ax.set_title(f"Index search: recall@10 against QPS\n{docs}, {data['queries']} real queries")
    ax.legend(loc="lower left", fontsize=8)
    charts.save_chart(fig, "index_recall_qps", results["run"])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    run = charts.run_info()
    before = os.getloadavg()
    vectors, queries, texts, source = real_vectors(args.docs, args.real)
    n_real = min(len(vectors), args.real, N_TEST_DOCS)
    print(f"{len(vectors)} docs ({n_real} real, {source}), {len(queries)} real queries, "
          f"load {before[0]:.1f}", file=sys.stderr)  # fmt: skip
    rows = []
    for kind in filter(None, args.types.split(",")):
        row = bench_type(kind.strip(), vectors, texts, queries, args)
        row["load"] = os.getloadavg()[0]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "sweep"}), file=sys.stderr)
    ingest = (
        "skipped (--skip-ingest)"
        if args.skip_ingest
        else bench_ingest(args.ingest_texts, args.ingest_rounds)
    )
    run["load"] = charts.load_text(before, os.getloadavg())
    data = {"docs": len(vectors), "real": n_real, "source": source, "queries": len(queries)}
    return {"run": run, "data": data, "search": rows, "ingest": ingest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=N_TEST_DOCS, help="real docs among them")
    parser.add_argument("--reps", type=int, default=5, help="passes over the 200 queries")
    parser.add_argument("--sweep-reps", type=int, default=3, help="passes per sweep point")
    parser.add_argument("--types", default="Flat,HNSW32,IVF", help="comma-separated index types")
    parser.add_argument("--ingest-texts", type=int, default=2_000)
    parser.add_argument("--ingest-rounds", type=int, default=2)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--plot-only", action="store_true", help="redraw from the saved results")
    args = parser.parse_args()

    if args.plot_only:
        results = charts.load_results(NAME)
    else:
        results = measure(args)
        charts.save_results(NAME, results)
    print(f"{results['run']['command']}\n{results['run']['utc']} UTC, {results['run']['load']}")
    print_tables(results)
    draw(results)


if __name__ == "__main__":
    main()
