"""Sentences per second: the from-scratch torch embedder vs sentence-transformers, same process.

The whole encode path is timed on both sides (tokenization, batching, model, pooling,
normalization). The two systems alternate call by call (A B, then B A, ...: one text at batch 1,
one `encode` of all texts at batch 32) and each round's speed-up is its summed reference time over
its summed time of ours; the table shows the median of the per-round ratios, because 2 shared cores
make single timings unreliable.

libgomp's default wait policy spins at every barrier; on cores shared with other busy processes
2-thread torch then stalls 10-30x at random, which swamps what is measured. The bench therefore
sets OMP_WAIT_POLICY=PASSIVE for both systems (it must be set before torch loads);
`--omp-wait-policy default` keeps libgomp's own behaviour.

    .venv/bin/python bench/bench_encoder.py [--rounds 5] [--texts 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

# Token-count windows (incl. [CLS]/[SEP]) of the fixed-length workloads.
WINDOWS = {"short (~12 tok)": (10, 14), "medium (~70 tok)": (60, 80)}


@dataclass
class Row:
    workload: str
    batch_size: int
    tokens: float  # mean tokens per text after truncation
    ours: list[float] = field(default_factory=list)  # sentences/s per round
    reference: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [o / r for o, r in zip(self.ours, self.reference, strict=True)]


def pick_workloads(embedder, n: int, seed: int = 0) -> dict[str, list[str]]:
    """Real texts of the shipped corpus, by token count (our tokenizer; truncated at max_length)."""
    from semsearch.evaluation.corpus import long_texts, real_texts

    pool = list(real_texts(5000))
    lengths = [len(e) for e in embedder.tokenizer.encode_batch(pool)]
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for name, (lo, hi) in WINDOWS.items():
        fits = [t for t, k in zip(pool, lengths, strict=True) if lo <= k <= hi]
        if len(fits) < n:
            raise SystemExit(f"only {len(fits)} texts of {lo}-{hi} tokens; lower --texts")
        out[name] = rng.sample(fits, n)
    out["long (256 tok)"] = long_texts(n)
    out["mixed (corpus)"] = rng.sample(pool, n)  # the corpus' own length mix, 2 to 256+ tokens
    return out


def chunks(texts: list[str], batch_size: int) -> list[list[str]]:
    """What one `encode` call gets: single texts at batch 1, else all texts at once."""
    return [[t] for t in texts] if batch_size == 1 else [texts]


def ab_round(
    ours: Callable[[list[str]], object],
    reference: Callable[[list[str]], object],
    calls: list[list[str]],
    flip: bool,
) -> tuple[float, float]:
    """Seconds (ours, reference) over `calls`, alternating which system goes first per call."""
    t_ours = t_ref = 0.0
    for i, texts in enumerate(calls):
        first_ours = (i % 2 == 0) != flip
        for is_ours in (first_ours, not first_ours):
            start = time.perf_counter()
            (ours if is_ours else reference)(texts)
            elapsed = time.perf_counter() - start
            if is_ours:
                t_ours += elapsed
            else:
                t_ref += elapsed
    return t_ours, t_ref


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="A/B rounds per workload")
    parser.add_argument("--texts", type=int, default=32, help="texts per workload and round")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--omp-wait-policy",
        choices=["passive", "default"],
        default="passive",
        help="OMP_WAIT_POLICY for both systems (see the module docstring)",
    )
    args = parser.parse_args()
    if args.omp_wait_policy == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # before torch is imported
    else:
        os.environ.pop("OMP_WAIT_POLICY", None)

    import torch
    from sentence_transformers import SentenceTransformer

    from semsearch.encoder import load_embedder
    from semsearch.encoder.model_files import default_model_dir

    load_before = os.getloadavg()
    embedder = load_embedder(backend="torch", threads=args.threads)
    model = SentenceTransformer(str(default_model_dir()), device="cpu")
    torch.set_num_threads(args.threads)

    workloads = pick_workloads(embedder, args.texts)
    rows: list[Row] = []
    for name, texts in workloads.items():
        encodings = embedder.tokenizer.encode_batch(texts, max_length=embedder.max_length)
        for batch_size in args.batch_sizes:

            def ours(batch: list[str], bs: int = batch_size) -> np.ndarray:
                return embedder.encode(batch, batch_size=bs)

            def reference(batch: list[str], bs: int = batch_size) -> np.ndarray:
                return model.encode(
                    batch, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True
                )

            row = Row(name, batch_size, float(np.mean([len(e) for e in encodings])))
            calls = chunks(texts, batch_size)
            ab_round(ours, reference, chunks(texts[:8], batch_size), flip=False)  # warm-up
            for r in range(args.rounds):
                t_ours, t_ref = ab_round(ours, reference, calls, flip=r % 2 == 1)
                row.ours.append(len(texts) / t_ours)
                row.reference.append(len(texts) / t_ref)
            rows.append(row)
            print(f"{name} b={batch_size}: x{statistics.median(row.ratios):.2f}", file=sys.stderr)
    load_after = os.getloadavg()

    print(
        f"## encoder: ours (torch) vs sentence-transformers, {datetime.now(UTC):%Y-%m-%d %H:%M} "
        "UTC\n"
        f"torch {torch.__version__}, {args.threads} threads, OMP_WAIT_POLICY "
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, {args.rounds} rounds x {args.texts} "
        f"texts, load average (1/5/15 min) before {_load(load_before)}, after {_load(load_after)}\n"
    )
    print(
        "| workload | batch | tokens/text | sentence-transformers sent/s | ours sent/s "
        "| speed-up (median of rounds) | min-max |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.workload} | {r.batch_size} | {r.tokens:.0f} "
            f"| {statistics.median(r.reference):.1f} "
            f"| {statistics.median(r.ours):.1f} | **{statistics.median(r.ratios):.2f}x** "
            f"| {min(r.ratios):.2f}-{max(r.ratios):.2f} |"
        )
    return 0


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    raise SystemExit(main())
