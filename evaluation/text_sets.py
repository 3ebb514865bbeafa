"""The texts the export measures and calibrates on: disjoint by construction (tested).

- the probe set: cosine figures of every artifact against torch fp32 (real texts of 3 to 400+
  tokens);
- the retrieval set: real documents and short real queries, for top-10 agreement;
- the calibration texts: what sizes int8 (NNCF's activation scales, the smoothing rewrites); none of
  them is a probe text, inside a long probe text, a retrieval document or a query's opening, so an
  int8 artifact is judged on texts it never saw.
"""

from __future__ import annotations

import numpy as np

from semsearch.evaluation.corpus import join_paragraphs, long_texts, real_texts

PROBE_REAL, PROBE_LONG = 1950, 50  # 2,000 texts of 3 to 400+ tokens
CORPUS_DOCS, CORPUS_QUERIES = 5000, 200
CALIBRATION_REAL, CALIBRATION_LONG = 480, 32


def probe_set() -> list[str]:
    return list(real_texts(PROBE_REAL)) + long_texts(PROBE_LONG)


def retrieval_set(n_docs: int = CORPUS_DOCS, n_queries: int = CORPUS_QUERIES):
    """Real documents, and short real queries (the first words of other real texts)."""
    docs = list(real_texts(n_docs, seed=3))
    known = set(docs)
    queries = [
        " ".join(t.split()[:12]) for t in real_texts(4 * n_queries, seed=4) if t not in known
    ][:n_queries]
    return docs, queries


def calibration_paragraphs() -> list[str]:
    """Real paragraphs none of the measurements use: not a probe text, not inside a probe long
    text, not a retrieval document, not the opening of a retrieval query."""
    docs, queries = retrieval_set()
    seen = set(probe_set()) | set(docs)
    probe_long = long_texts(PROBE_LONG)
    openings = set(queries)

    def unseen(paragraph: str) -> bool:
        return (
            paragraph not in seen
            and " ".join(paragraph.split()[:12]) not in openings
            and not any(paragraph in text for text in probe_long)
        )

    return [p for p in real_texts(4 * CALIBRATION_REAL, seed=11) if unseen(p)]


def calibration_texts() -> list[str]:
    """Short paragraphs, and long ones joined from the rest (512 texts)."""
    fresh = calibration_paragraphs()
    return fresh[:CALIBRATION_REAL] + join_paragraphs(fresh[CALIBRATION_REAL:], CALIBRATION_LONG)


def calibration_feeds(tokenizer, max_length: int, batch_size: int = 32) -> list[dict]:
    """`calibration_texts()` as model feeds, longest first: dicts of int64 (batch, seq) arrays."""
    encodings = tokenizer.encode_batch(calibration_texts(), max_length=max_length)
    encodings.sort(key=len, reverse=True)
    feeds = []
    for start in range(0, len(encodings), batch_size):
        arrays = tokenizer.pad(encodings[start : start + batch_size])  # each (batch, seq)
        feeds.append(
            {
                name: np.asarray(arrays[name], dtype=np.int64)
                for name in ("input_ids", "attention_mask", "token_type_ids")
            }
        )
    return feeds


__all__ = [
    "CALIBRATION_LONG",
    "CALIBRATION_REAL",
    "CORPUS_DOCS",
    "CORPUS_QUERIES",
    "PROBE_LONG",
    "PROBE_REAL",
    "calibration_feeds",
    "calibration_paragraphs",
    "calibration_texts",
    "probe_set",
    "retrieval_set",
]
