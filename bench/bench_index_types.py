"""Index types benchmark: recall@10 against QPS per core for Flat, HNSW32, HNSW32,SQ8,
IVF{nlist},Flat, IVF{nlist},SQ8, IVF{nlist},PQ{m} and IVF{nlist},PQ{m},Refine(SQ8), each swept
over efSearch or nprobe to the cheapest setting that reaches recall@10 0.95; the bytes each
keeps per vector (FAISS) and per document (the collection's directory: SQLite + snapshot), and
SQLite's bytes per document at 500, 1,000 and 2,000-byte texts.

    .venv/bin/python bench/bench_index_types.py [--docs 100000] [--nlist 1024] [--pq 48]
        [--reps 3] [--types ...] [--plot-only]
    .venv/bin/python bench/bench_index_types.py --memory 'Flat,,HNSW32,SQ8' [--docs 200000]

Vectors: bench/bench_index.py's: the 20,000 real texts' sentence-transformers embeddings cached
by tests/conformance/test_index_recall.py (else our fp32 ONNX encoder's), topped up to `--docs`
with draws from a Gaussian fitted to them; 200 held-out real texts as queries; recall@10
tie-aware against exact search over all `--docs`.
Each type is built as a user gets it: `Collection.upsert` in batches of 10,000, maintenance
inline, so a trained type is served from Flat until it can be trained, then trained on the
collection's first `min_vectors`+ documents (IVF1024: 40,000) and built. Then:
- the sweep searches the collection's FAISS index (read from its snapshot, settings swapped
  between passes) one query at a time on one thread: FAISS's cost alone;
- at each type's chosen setting, `Collection.search` (FAISS, then SQLite for the hits) on a
  read-only handle: the service's path.
Types, settings and passes are interleaved (A B C A B C); each figure is the median of `--reps`
passes. QPS per core = queries / CPU seconds of this process (one thread), steadier than the wall
clock on shared cores; the wall-clock QPS and the load average are recorded beside it.
`--memory`: a fresh process opens each type's collection and saves a snapshot; its resident
memory and peaks, as multiples of the FAISS index's bytes, are added to the saved results.
Results: bench/results/index_types.json, chart docs/img/index_types.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

import charts  # noqa: E402
from bench_index import N_TEST_DOCS, real_vectors, recall_at_10  # noqa: E402

from semsearch.index import Collection, Doc, IndexConfig  # noqa: E402
from semsearch.index.faiss_index import FaissIndex  # noqa: E402
from semsearch.index.persistence import DATABASE, SNAPSHOT, read_snapshot  # noqa: E402

NAME = "index_types"
TARGET = 0.95
BATCH = 10_000
EF = (16, 32, 64, 128, 256)
NPROBE = (8, 16, 32, 64, 128, 256)


def default_types(nlist: int, pq: int) -> list[str]:
    ivf = f"IVF{nlist}"
    return ["Flat", "HNSW32", "HNSW32,SQ8", f"{ivf},Flat", f"{ivf},SQ8", f"{ivf},PQ{pq}",
            f"{ivf},PQ{pq},Refine(SQ8)"]  # fmt: skip


def build(directory: Path, kind: str, vectors: np.ndarray, texts: list[str]) -> dict[str, Any]:
    """The collection of `kind` over every vector; build rate and its directory's bytes."""
    t0, c0 = time.perf_counter(), time.process_time()
    config = IndexConfig(index_type=kind)
    with Collection.open(directory, config=config, background=False) as col:
        for start in range(0, len(vectors), BATCH):
            stop = min(start + BATCH, len(vectors))
            docs = [Doc(str(i), texts[i], {"bucket": i % 10}) for i in range(start, stop)]
            col.upsert(docs, vectors[start:stop])
        factory = col.info()["factory"]
    n = len(vectors)
    files = {p.name: p.stat().st_size for p in directory.iterdir() if p.is_file()}
    sqlite = sum(size for name, size in files.items() if name.startswith(DATABASE))
    return {
        "factory": factory,
        "build_docs_s": n / (time.perf_counter() - t0),
        "build_docs_cpu_s": n / (time.process_time() - c0),
        "faiss_bytes_per_vector": files[SNAPSHOT] / n,
        "sqlite_bytes_per_doc": sqlite / n,
        "dir_bytes_per_doc": sum(files.values()) / n,
    }


def storage_by_text_length(lengths: list[int], n: int, dim: int) -> list[dict[str, float]]:
    """SQLite bytes per document (text, metadata, float32 vector, keyword index) for texts of
    about each length: windows of the real corpus run together; Flat collections of `n`."""
    from semsearch.evaluation.corpus import real_texts

    corpus = " ".join(real_texts(38_129))
    vectors = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    out = []
    for length in lengths:
        stride = max(1, (len(corpus) - length) // n)
        texts = [corpus[i * stride : i * stride + length] for i in range(n)]
        tmp = Path(tempfile.mkdtemp(prefix="bench-storage-"))
        try:
            with Collection.open(tmp / "c", config=IndexConfig(index_type="Flat")) as col:
                for start in range(0, n, BATCH):
                    docs = [Doc(str(i), texts[i], {"bucket": i % 10})
                            for i in range(start, min(start + BATCH, n))]  # fmt: skip
                    col.upsert(docs, vectors[start : start + BATCH])
            db = sum(p.stat().st_size for p in (tmp / "c").iterdir() if p.name.startswith(DATABASE))
        finally:
            shutil.rmtree(tmp)
        text_bytes = float(np.mean([len(t.encode()) for t in texts]))
        out.append({"text_bytes": text_bytes, "sqlite_bytes_per_doc": db / n, "docs": n})
        print(f"storage: {json.dumps(out[-1])}", file=sys.stderr)
    return out


_PROBE = """
import json, sys
import numpy as np
from semsearch.index import Collection, Doc

def rss():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS (Linux)

base = rss()
col = Collection.open(sys.argv[1])
opened = rss()
reset_peak()
col.upsert([Doc("probe", "probe")], np.ones((1, int(sys.argv[2])), np.float32))
col.save()  # the snapshot: serialized in memory, then written
saved = rss()
col.close()
print(json.dumps({"base": base, "opened": opened, "saved": saved}))
"""


def memory(types: list[str], vectors: np.ndarray, texts: list[str]) -> dict[str, dict[str, float]]:
    """A fresh process opens each collection, writes one document and saves a snapshot: its
    resident memory (VmRSS) and peak (VmHWM) above what it held before opening, in multiples
    of the FAISS index's bytes (the snapshot's size)."""
    out = {}
    for kind in types:
        tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
        try:
            built = build(tmp / "c", kind, vectors, texts)
            index_bytes = built["faiss_bytes_per_vector"] * len(vectors)
            done = subprocess.run(
                [sys.executable, "-c", _PROBE, str(tmp / "c"), str(vectors.shape[1])],
                capture_output=True, text=True, check=True, cwd=ROOT,
            )  # fmt: skip
        finally:
            shutil.rmtree(tmp)
        m = json.loads(done.stdout.strip().splitlines()[-1])
        base = m["base"]["VmRSS"]
        out[kind] = {
            "index_bytes": index_bytes,
            "open_rss_x": (m["opened"]["VmRSS"] - base) / index_bytes,
            "open_peak_x": (m["opened"]["VmHWM"] - base) / index_bytes,
            "save_peak_x": (m["saved"]["VmHWM"] - base) / index_bytes,  # its own peak
        }
        print(f"memory {kind}: {json.dumps(out[kind])}", file=sys.stderr)
    return out


def settings(index: FaissIndex) -> tuple[str | None, list[int]]:
    if index.is_hnsw:
        return "ef_search", list(EF)
    if index.is_ivf:
        nlist = int(index.factory.removeprefix("IVF").split(",")[0])
        return "nprobe", [v for v in NPROBE if v <= nlist]
    return None, [0]


def timed(search: Any, queries: np.ndarray) -> tuple[float, float, list[set[int]]]:
    """(queries per wall second, per CPU second, the ids found) over single-query searches."""
    found = []
    search(queries[0])  # warm
    t0, c0 = time.perf_counter(), time.process_time()
    for q in queries:
        found.append(search(q))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return len(queries) / wall, len(queries) / max(cpu, 1e-9), found


def doc_numbers(directory: Path, found: list[set[int]]) -> list[set[int]]:
    """FAISS labels are the store's vector ids: the documents' numbers (their ids) instead."""
    with Collection.open(directory, read_only=True) as col:
        docs = col.store.docs_by_vids(sorted(set().union(*found)))
    return [{int(docs[v].id) for v in f} for f in found]


def sweep(
    indexes: dict[str, FaissIndex],
    dirs: dict[str, Path],
    queries: np.ndarray,
    sims: np.ndarray,
    kth: np.ndarray,
    reps: int,
) -> dict[str, list[dict[str, Any]]]:
    """Every type at every setting, `reps` interleaved passes; medians."""
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    recall: dict[tuple[str, int], float] = {}
    base = {kind: index.config for kind, index in indexes.items()}
    for rep in range(reps):
        for kind, index in indexes.items():
            field, values = settings(index)
            for value in values:
                if field:
                    index.config = dataclasses.replace(base[kind], **{field: value})

                def search(q: np.ndarray, index: FaissIndex = index) -> set[int]:
                    return {int(i) for i in index.search(q[None], 10)[1][0] if i >= 0}

                qps, cpu_qps, found = timed(search, queries)
                runs.setdefault((kind, value), []).append((qps, cpu_qps))
                if rep == 0:
                    found = doc_numbers(dirs[kind], found)
                    recall[(kind, value)] = recall_at_10(found, sims, kth)
            index.config = base[kind]
        print(f"sweep pass {rep + 1}/{reps} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    out: dict[str, list[dict[str, Any]]] = {}
    for (kind, value), passes in runs.items():
        field = settings(indexes[kind])[0]
        out.setdefault(kind, []).append(
            {
                **({field: value} if field else {}),
                "recall@10": recall[(kind, value)],
                "qps": statistics.median(p[0] for p in passes),
                "qps_per_core": statistics.median(p[1] for p in passes),
            }
        )
    return out


def chosen(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest setting (per core) that reaches TARGET; None if none does."""
    good = [p for p in points if p["recall@10"] >= TARGET]
    return max(good, key=lambda p: p["qps_per_core"]) if good else None


def end_to_end(dirs: dict[str, Path], picks: dict[str, dict[str, Any]], queries: np.ndarray,
               reps: int) -> dict[str, dict[str, float]]:  # fmt: skip
    """`Collection.search` at each type's chosen setting, interleaved passes; medians."""
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(reps):
        for kind, pick in picks.items():
            tuned = {k: v for k, v in pick.items() if k in ("ef_search", "nprobe")}
            config = IndexConfig(index_type=kind, **tuned)
            with Collection.open(dirs[kind], config=config, read_only=True) as col:

                def search(q: np.ndarray, col: Collection = col) -> set[int]:
                    return {int(h.id) for h in col.search(q, k=10)}

                qps, cpu_qps, _ = timed(search, queries)
            runs.setdefault(kind, []).append((qps, cpu_qps))
    return {
        kind: {
            "qps": statistics.median(p[0] for p in passes),
            "qps_per_core": statistics.median(p[1] for p in passes),
        }
        for kind, passes in runs.items()
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    run = charts.run_info()
    before = os.getloadavg()
    vectors, queries, texts, source = real_vectors(args.docs, N_TEST_DOCS)
    n_real = min(len(vectors), N_TEST_DOCS)
    sims = queries @ vectors.T  # (Q, N)
    kth = np.sort(sims, axis=1)[:, -10] - 1e-5  # (Q,)
    text_bytes = float(np.mean([len(t.encode()) for t in texts]))
    types = args.types.split(",,") if args.types else default_types(args.nlist, args.pq)
    print(f"{len(vectors)} docs ({n_real} real, {source}), load {before[0]:.1f}", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="bench-index-types-"))
    try:
        dirs = {kind: tmp / f"c{i}" for i, kind in enumerate(types)}
        rows: dict[str, dict[str, Any]] = {}
        for kind in types:
            rows[kind] = build(dirs[kind], kind, vectors, texts)
            rows[kind]["load"] = os.getloadavg()[0]
            print(f"built {kind}: {json.dumps(rows[kind])}", file=sys.stderr)
        indexes = {}
        for kind in types:
            snap = read_snapshot(dirs[kind] / SNAPSHOT)
            assert snap is not None, f"{kind}: no snapshot was saved"
            indexes[kind] = FaissIndex.from_bytes(*snap, IndexConfig(index_type=kind))
        points = sweep(indexes, dirs, queries, sims, kth, args.reps)
        del indexes
        picks = {}
        for kind in types:
            rows[kind]["sweep"] = sorted(points[kind], key=lambda p: -p["qps_per_core"])
            pick = chosen(points[kind])
            rows[kind]["at_target"] = pick
            if pick is not None:
                picks[kind] = pick
        for kind, e2e in end_to_end(dirs, picks, queries, args.reps).items():
            rows[kind]["at_target"]["collection"] = e2e
    finally:
        shutil.rmtree(tmp)
    storage = storage_by_text_length([500, 1_000, 2_000], 20_000, int(vectors.shape[1]))
    run["load"] = charts.load_text(before, os.getloadavg())
    data = {"docs": len(vectors), "real": n_real, "source": source, "queries": len(queries),
            "text_bytes_mean": text_bytes, "dim": int(vectors.shape[1])}  # fmt: skip
    return {"run": run, "data": data, "target": TARGET, "types": rows, "storage": storage}


def print_tables(results: dict[str, Any]) -> None:
    data = results["data"]
    print(f"\n{data['docs']:,} docs ({data['real']:,} real), {data['queries']} queries; "
          f"texts {data['text_bytes_mean']:.0f} bytes on average\n")  # fmt: skip
    print(
        "| index | setting at recall >= 0.95 | recall@10 | FAISS QPS/core | search QPS/core "
        "| search QPS (wall) | FAISS B/vector | SQLite B/doc | dir B/doc | build docs/s |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, r in results["types"].items():
        pick = r["at_target"]
        if pick is None:
            best = max(r["sweep"], key=lambda p: p["recall@10"])
            setting, rec, fq, cq, cw = "none reaches it", best["recall@10"], "", "", ""
            setting += f" (best {_setting(best)})"
        else:
            setting, rec = _setting(pick) or "exact", pick["recall@10"]
            fq = f"{pick['qps_per_core']:,.0f}"
            cq = f"{pick['collection']['qps_per_core']:,.0f}"
            cw = f"{pick['collection']['qps']:,.0f}"
        print(f"| {kind} | {setting} | {rec:.3f} | {fq} | {cq} | {cw} | "
              f"{r['faiss_bytes_per_vector']:,.0f} | {r['sqlite_bytes_per_doc']:,.0f} | "
              f"{r['dir_bytes_per_doc']:,.0f} | {r['build_docs_s']:,.0f} |")  # fmt: skip
    print("\n| text bytes | SQLite bytes/doc |\n| ---: | ---: |")
    print(f"| {data['text_bytes_mean']:,.0f} (the benchmark's) | "
          f"{next(iter(results['types'].values()))['sqlite_bytes_per_doc']:,.0f} |")  # fmt: skip
    for row in results.get("storage", []):
        print(f"| {row['text_bytes']:,.0f} | {row['sqlite_bytes_per_doc']:,.0f} |")
    if "memory" in results:
        print("\n| index | FAISS MB | RSS after open | peak at open | peak at snapshot |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for kind, m in results["memory"]["types"].items():
            print(f"| {kind} | {m['index_bytes'] / 1e6:,.0f} | {m['open_rss_x']:.2f}x | "
                  f"{m['open_peak_x']:.2f}x | {m['save_peak_x']:.2f}x |")  # fmt: skip
    for kind, r in results["types"].items():
        if len(r["sweep"]) > 1:
            print(f"\n| {kind} | recall@10 | FAISS QPS/core | FAISS QPS (wall) |")
            print("| ---: | ---: | ---: | ---: |")
            for p in sorted(r["sweep"], key=lambda p: p["recall@10"]):
                print(f"| {_setting(p)} | {p['recall@10']:.3f} | {p['qps_per_core']:,.0f} | "
                      f"{p['qps']:,.0f} |")  # fmt: skip


def _setting(point: dict[str, Any]) -> str:
    return next((f"{k} {v}" for k, v in point.items() if k in ("ef_search", "nprobe")), "")


def draw(results: dict[str, Any]) -> None:
    """Recall@10 against FAISS QPS per core, one line per type through its sweep."""
    plt = charts.pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.4))
    fig.subplots_adjust(bottom=0.2, top=0.88)
    cmap = plt.get_cmap("tab10")
    for i, (kind, r) in enumerate(results["types"].items()):
        points = sorted(r["sweep"], key=lambda p: p["recall@10"])
        label = f"{kind} ({r['faiss_bytes_per_vector']:,.0f} B/vector)"
        marker = "s" if len(points) == 1 else "o"
        ax.plot([p["qps_per_core"] for p in points], [p["recall@10"] for p in points],
                marker=marker, ms=4, color=cmap(i), label=label)  # fmt: skip
        for p in points:
            if _setting(p):
                ax.annotate(_setting(p).split()[-1], (p["qps_per_core"], p["recall@10"]),
                            fontsize=6, xytext=(3, -8), textcoords="offset points")  # fmt: skip
    ax.axhline(TARGET, color="#999999", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("FAISS queries per CPU second (one thread, one query at a time; log scale)")
    ax.set_ylabel("recall@10 against exact search")
    data = results["data"]
    drawn = f"{data['real']:,} real, the rest drawn from a Gaussian fitted to them"
    ax.set_title(f"Index types: recall@10 against QPS per core\n{data['docs']:,} vectors "
                 f"({drawn}), {data['queries']} real queries")  # fmt: skip
    ax.legend(loc="lower left", fontsize=7)
    charts.save_chart(fig, NAME, results["run"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--nlist", type=int, default=1_024)
    parser.add_argument("--pq", type=int, default=48, help="PQ bytes a vector (m)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved passes over the queries")
    parser.add_argument("--types", default="", help="index types separated by ',,' (default: all)")
    parser.add_argument("--plot-only", action="store_true", help="redraw from the saved results")
    parser.add_argument(
        "--memory", default="", help="only the memory probe of these types (',,'-separated), "
        "added to the saved results",
    )  # fmt: skip
    args = parser.parse_args()
    if args.memory:
        results = charts.load_results(NAME)
        vectors, _, texts, _ = real_vectors(args.docs, N_TEST_DOCS)
        before = os.getloadavg()
        probe = memory(args.memory.split(",,"), vectors, texts)
        results["memory"] = {"run": {**charts.run_info(), "load": charts.load_text(
            before, os.getloadavg())}, "docs": len(vectors), "types": probe}  # fmt: skip
        charts.save_results(NAME, results)
    elif args.plot_only:
        results = charts.load_results(NAME)
    else:
        results = measure(args)
        charts.save_results(NAME, results)
    print(f"{results['run']['command']}\n{results['run']['utc']} UTC, {results['run']['load']}")
    print_tables(results)
    draw(results)


if __name__ == "__main__":
    main()
