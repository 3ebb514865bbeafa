"""Filters on a declared (expression-indexed) metadata field against the same filter on an
undeclared twin field, on one collection of a million documents.

Every document has `tenant` and `tenant_copy` with the same value (one of 1,000: a filter on one
matches 0.1% of the documents) and `lang` (one of 3). Only `tenant` is declared
(`Collection.index_field`). Each round runs, alternating, the same filters on both fields:
`count(filter)` and a filtered `search(k=10)`. Printed: medians per filter and the ratio. The
vectors are random and 4-dimensional (the filter is what is measured; a Flat index keeps the
vector side small and exact).

    .venv/bin/python bench/bench_field_index.py [--docs 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from semsearch.index import Collection, Doc, IndexConfig

DIM = 4
TENANTS = 1_000


def fill(col: Collection, n: int, batch: int = 50_000) -> None:
    rng = np.random.default_rng(0)
    for start in range(0, n, batch):
        ids = range(start, min(start + batch, n))
        docs = [
            Doc(f"d{i}", f"doc {i}", {"tenant": f"t{i % TENANTS}", "tenant_copy": f"t{i % TENANTS}",
                                      "lang": ("en", "fr", "de")[i % 3]})
            for i in ids
        ]  # fmt: skip
        vectors = rng.standard_normal((len(docs), DIM)).astype(np.float32)
        col.upsert(docs, vectors)
        print(f"  {start + len(docs):,} documents", file=sys.stderr)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    query = np.ones(DIM, dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        config = IndexConfig(index_type="Flat")
        with Collection.open(Path(tmp) / "c", config=config, background=False) as col:
            started = time.perf_counter()
            fill(col, args.docs)
            print(f"filled in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            build_ms = timed(lambda: col.index_field("tenant"))
            times: dict[tuple[str, str], list[float]] = {}
            for r in range(args.rounds):
                for field in ("tenant", "tenant_copy") if r % 2 == 0 else ("tenant_copy", "tenant"):
                    flt = {field: f"t{(r * 37) % TENANTS}"}
                    both = {field: {"in": ["t1", "t2"]}, "lang": "en"}
                    times.setdefault(("count, 0.1%", field), []).append(
                        timed(lambda f=flt: col.count(f))
                    )
                    times.setdefault(("search k=10, 0.1%", field), []).append(
                        timed(lambda f=flt: col.search(query, k=10, filter=f))
                    )
                    times.setdefault(("count, in + lang", field), []).append(
                        timed(lambda f=both: col.count(f))
                    )
    print(f"\n{args.docs:,} documents; index build {build_ms / 1000:.1f} s; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print("| query | undeclared field, ms | declared field, ms | speed-up |")
    print("|---|---|---|---|")
    for what in dict.fromkeys(k for k, _ in times):
        plain = statistics.median(times[(what, "tenant_copy")])
        indexed = statistics.median(times[(what, "tenant")])
        print(f"| {what} | {plain:.1f} | {indexed:.2f} | {plain / indexed:.0f}x |")


if __name__ == "__main__":
    main()
