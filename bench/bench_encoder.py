"""Sentences per second: the from-scratch torch embedder vs sentence-transformers, same process.

The whole encode path is timed on both sides (tokenization, batching, model, pooling,
normalization).
The two systems alternate (A B A B ...) over several rounds and the speed-up is the median of the
per-round ratios, because 2 shared cores make single timings unreliable (see shared NOTES.md).

    .venv/bin/python bench/bench_encoder.py [--rounds 5] [--texts 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from encoder import load_embedder  # noqa: E402
from encoder.model_files import default_model_dir  # noqa: E402
from service.corpus import long_texts, real_texts  # noqa: E402

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
    """Real texts from this machine, by token count (our tokenizer; truncated at max_length)."""
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


def encode_all(encode: Callable[[Sequence[str], int], object], texts: list[str], batch_size: int):
    if batch_size == 1:
        for text in texts:
            encode([text], 1)
    else:
        encode(texts, batch_size)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="A/B rounds per workload")
    parser.add_argument("--texts", type=int, default=64, help="texts per workload and round")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    load_before = os.getloadavg()
    ours = load_embedder(backend="torch", threads=args.threads)
    reference = SentenceTransformer(str(default_model_dir()), device="cpu")
    torch.set_num_threads(args.threads)

    def run_ours(texts: Sequence[str], batch_size: int) -> np.ndarray:
        return ours.encode(texts, batch_size=batch_size)

    def run_reference(texts: Sequence[str], batch_size: int) -> np.ndarray:
        return reference.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )

    workloads = pick_workloads(ours, args.texts)
    rows: list[Row] = []
    for name, texts in workloads.items():
        lengths = [len(e) for e in ours.tokenizer.encode_batch(texts, max_length=ours.max_length)]
        for batch_size in args.batch_sizes:
            row = Row(name, batch_size, float(np.mean(lengths)))
            encode_all(run_ours, texts[:8], batch_size)  # warm-up
            encode_all(run_reference, texts[:8], batch_size)
            for _ in range(args.rounds):
                t_ours = timed(lambda: encode_all(run_ours, texts, batch_size))  # noqa: B023
                t_ref = timed(lambda: encode_all(run_reference, texts, batch_size))  # noqa: B023
                row.ours.append(len(texts) / t_ours)
                row.reference.append(len(texts) / t_ref)
            rows.append(row)
            print(
                f"{name} b={batch_size}: x{statistics.median(row.ratios):.2f}",
                file=sys.stderr,
                flush=True,
            )
    load_after = os.getloadavg()

    print(
        f"## encoder: ours (torch) vs sentence-transformers, {datetime.now(UTC):%Y-%m-%d %H:%M} "
        "UTC\n"
        f"torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds x {args.texts} "
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
