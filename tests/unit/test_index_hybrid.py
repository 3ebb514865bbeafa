"""Hybrid search: reciprocal-rank fusion against a hand-computed example, and filters applied to
both sides before fusion against brute force (exact cosine, rank-bm25, the filter reference)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bm25_reference import bm25_scores
from filter_reference import reference_match

from semsearch.index import Collection, Doc, Fusion, IndexConfig, InvalidArgument
from semsearch.index.fusion import fuse

# Hand-computed: dense ranks a, b, c; keyword ranks c, d, a (1 = best).
#   weights 1/1: a = 1/61 + 1/63, c = 1/63 + 1/61 (tie: a has the better dense rank),
#                b = 1/62, d = 1/62 (tie: b was found by dense, d was not)
#   weights 1/3: c = 1/63 + 3/61, a = 1/61 + 3/63, d = 3/62, b = 1/62
A_OR_C = 0.032266458495966692
B_OR_D = 0.016129032258064516
WEIGHTED = {"c": 0.06505334374186833, "a": 0.064012490241998436, "d": 0.048387096774193547}


def test_fusion_equals_the_hand_computed_example():
    vid = {"a": 1, "b": 2, "c": 3, "d": 4}
    rankings = {
        "dense": (np.array([1, 2, 3]), np.array([0.9, 0.8, 0.7])),
        "keyword": (np.array([3, 4, 1]), np.array([7.0, 6.0, 5.0])),
    }
    name = {v: k for k, v in vid.items()}
    fused = fuse(rankings, Fusion())
    assert [name[f.vid] for f in fused] == ["a", "c", "b", "d"]
    assert [f.score for f in fused] == pytest.approx([A_OR_C, A_OR_C, B_OR_D, B_OR_D], abs=1e-15)
    assert {s: (f.rank, f.score) for s, f in fused[1].found_by.items()} == {
        "dense": (3, 0.7),
        "keyword": (1, 7.0),
    }
    weighted = fuse(rankings, Fusion(weights={"keyword": 3.0}))
    assert [name[f.vid] for f in weighted] == ["c", "a", "d", "b"]
    assert [f.score for f in weighted] == pytest.approx([*WEIGHTED.values(), B_OR_D], abs=1e-15)


def unit(*xs: float) -> list[float]:
    v = np.zeros(8)
    v[: len(xs)] = xs
    return (v / np.linalg.norm(v)).tolist()


def test_a_hybrid_search_reports_both_sides_and_the_fused_score(tmp_path: Path):
    docs = [  # dense (query e0): a 1.0 > b 0.8 > c 0.6 > d 0; BM25 for "zeta": c > d > a
        Doc("a", "zeta filler filler", {"n": 1}),
        Doc("b", "other words here", {"n": 2}),
        Doc("c", "zeta zeta zeta", {"n": 3}),
        Doc("d", "zeta zeta filler", {"n": 4}),
    ]
    vectors = np.array([unit(1), unit(0.8, 0.6), unit(0.6, 0.8), unit(0, 1)], np.float32)
    query = np.array(unit(1), np.float32)
    with Collection.open(tmp_path / "c", background=False) as col:
        col.upsert(docs, vectors)
        hits = col.search(query, 4, text="zeta", mode="hybrid", fusion=Fusion(candidates=3))
        assert [h.id for h in hits] == ["a", "c", "b", "d"]
        assert [h.score for h in hits] == pytest.approx([A_OR_C, A_OR_C, B_OR_D, B_OR_D])
        ranks = [{s: f.rank for s, f in (h.found_by or {}).items()} for h in hits]
        assert ranks == [
            {"dense": 1, "keyword": 3},
            {"dense": 3, "keyword": 1},
            {"dense": 2},
            {"keyword": 2},
        ]
        assert hits[0].found_by["dense"].score == pytest.approx(1.0)
        assert hits[1].found_by["keyword"].score > hits[3].found_by["keyword"].score > 0
        weighted = Fusion(weights={"dense": 1, "keyword": 3}, candidates=3)
        hits = col.search(query, 3, text="zeta", mode="hybrid", fusion=weighted)
        assert [h.id for h in hits] == ["c", "a", "d"]
        assert [h.score for h in hits] == pytest.approx(list(WEIGHTED.values()))
        # score_threshold applies to the fused score
        kept = col.search(
            query, 4, None, 0.03, text="zeta", mode="hybrid", fusion=Fusion(candidates=3)
        )
        assert [h.id for h in kept] == ["a", "c"]
        # no keyword terms: the dense ranking alone, fused
        alone = col.search(query, 4, text="?!", mode="hybrid")
        assert [h.id for h in alone] == ["a", "b", "c", "d"]
        assert [h.score for h in alone] == pytest.approx([1 / 61, 1 / 62, 1 / 63, 1 / 64])
        # the default mode is untouched: cosine scores, no found_by
        dense = col.search(query, 2)
        assert [h.id for h in dense] == ["a", "b"] and dense[0].found_by is None
        assert "found_by" not in dense[0].to_dict()


@pytest.mark.parametrize(
    ("fusion", "message"),
    [
        ({"rrf_k": 0}, "rrf_k"),
        ({"rrf_k": 1.5}, "rrf_k"),
        ({"weights": {"dense": -1}}, "weights"),
        ({"weights": {"dense": float("nan")}}, "weights"),
        ({"weights": {"sparse": 1}}, "sparse"),
        ({"weights": {"dense": 0, "keyword": 0}}, "above 0"),
        ({"candidates": 0}, "candidates"),
    ],
)
def test_bad_fusion_settings_are_refused(fusion: dict[str, Any], message: str):
    with pytest.raises(InvalidArgument, match=message):
        Fusion(**fusion)


WORDS = "alpha beta gamma delta omega sigma kappa zeta theta iota lambda rho".split()
FILTERS = [
    {"g": 1},
    {"g": {"in": [0, 2]}},
    {"lang": "en", "g": {"gte": 2}},
    {"lang": {"ne": "fr"}},
    {"g": {"nin": [1, 3]}, "lang": {"in": ["en", "de"]}},
    {"missing": {"ne": 1}},
    {"g": 9},
]


def brute_force(
    docs: list[Doc], vectors: np.ndarray, query: np.ndarray, text: str, flt: dict, depth: int
) -> tuple[list[str], list[str]]:
    """The dense and keyword rankings over the documents matching `flt`: exact cosine, and
    rank-bm25 with collection-wide statistics (tests/bm25_reference.py)."""
    match = [i for i, d in enumerate(docs) if reference_match(d.metadata, flt)]
    sims = vectors @ query
    dense = sorted(match, key=lambda i: -sims[i])[:depth]
    bm25 = bm25_scores([d.text for d in docs], text)
    keyword = sorted((i for i in match if bm25[i] > 0), key=lambda i: -bm25[i])[:depth]
    return [docs[i].id for i in dense], [docs[i].id for i in keyword]


def reference_fusion(dense: list[str], keyword: list[str], k: int, rrf_k: int) -> list[str]:
    score: dict[str, float] = {}
    for ranking in (dense, keyword):
        for rank, doc_id in enumerate(ranking, 1):
            score[doc_id] = score.get(doc_id, 0.0) + 1 / (rrf_k + rank)
    far = len(dense) + len(keyword) + 1

    def order(doc_id: str) -> tuple[float, int, int]:
        d = dense.index(doc_id) if doc_id in dense else far
        w = keyword.index(doc_id) if doc_id in keyword else far
        return (-score[doc_id], d, w)

    return sorted(score, key=order)[:k]


def test_filters_apply_to_both_sides_before_fusion(tmp_path: Path):
    rng = random.Random(11)
    nrng = np.random.default_rng(11)
    n = 240
    docs = []
    for i in range(n):
        words = rng.choices(WORDS, k=rng.randint(2, 9))
        # A length of its own for every document: no two BM25 scores tie.
        text = " ".join(words + [f"pad{i}"] * (i + 40 - len(words)))
        metadata = {"g": i % 4, "lang": rng.choice(["en", "fr", "de"])}
        docs.append(Doc(f"d{i:03d}", text, metadata))
    vectors = nrng.standard_normal((n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    config = IndexConfig(index_type="Flat")  # exact: the dense side is brute force's ranking
    with Collection.open(tmp_path / "c", config=config, background=False) as col:
        col.upsert(docs, vectors)
        for trial in range(12):
            text = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
            query = nrng.standard_normal(8).astype(np.float32)
            query /= np.linalg.norm(query)
            flt = FILTERS[trial % len(FILTERS)]
            dense, keyword = brute_force(docs, vectors, query, text, flt, depth=20)
            fusion = Fusion(rrf_k=30, candidates=20)
            hits = col.search(query, 15, flt, text=text, mode="hybrid", fusion=fusion)
            assert [h.id for h in hits] == reference_fusion(dense, keyword, 15, 30), (flt, text)
            for h in hits:
                assert reference_match(h.metadata, flt)
                sides = h.found_by or {}
                assert ("dense" in sides) == (h.id in dense)
                assert ("keyword" in sides) == (h.id in keyword)
                for side, ranking in (("dense", dense), ("keyword", keyword)):
                    if side in sides:
                        assert sides[side].rank == ranking.index(h.id) + 1
            by_keyword = col.search(None, 20, flt, text=text, mode="keyword")
            assert [h.id for h in by_keyword] == keyword, (flt, text)
