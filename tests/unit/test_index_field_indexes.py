"""Declared metadata fields get an SQLite expression index: filters on them give exactly the
answers they give without it (against the brute-force reference), and SQLite's plan uses it."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from filter_reference import reference_match

from semsearch.index import Collection, Doc, FilterError, ReadOnlyError
from semsearch.index.filters import field_path

DIM = 8
N = 2_000
FIELDS = ["lang", "author.name", 'it\'s "odd"']


def metadata(rng: random.Random) -> dict:
    meta: dict = {"lang": rng.choice(["en", "fr", "de", 1, True, None])}
    if rng.random() < 0.7:
        meta["author"] = {"name": rng.choice(["ada", "bob", "cy"]), "age": rng.randrange(90)}
    if rng.random() < 0.5:
        meta['it\'s "odd"'] = rng.randrange(5)
    return meta


def filters() -> list[dict]:
    return [
        {"lang": "en"},
        {"lang": {"in": ["fr", 1, True]}},
        {"lang": {"ne": "de"}},
        {"author.name": "ada", "lang": {"nin": ["en"]}},
        {"$or": [{"author.name": "bob"}, {"lang": None}]},
        {"$not": {"author.name": {"in": ["ada", "cy"]}}},
        {'it\'s "odd"': {"gte": 2, "lt": 4}},
        {"$and": [{"lang": {"gt": "d"}}, {"author.name": {"exists": True}}]},
    ]


def test_indexed_fields_answer_as_unindexed_ones_and_use_the_index(tmp_path: Path):
    rng = random.Random(1)
    docs = [Doc(f"d{i}", "t", metadata(rng)) for i in range(N)]
    vectors = np.random.default_rng(1).standard_normal((N, DIM)).astype(np.float32)
    with Collection.open(tmp_path / "c") as col:
        col.upsert(docs, vectors)
        before = [sorted(h.id for h in col.search(vectors[0], k=N, filter=f)) for f in filters()]
        assert [col.index_field(f) for f in FIELDS] == [True, True, True]
        assert col.index_field("lang") is False  # declared once
        after = [sorted(h.id for h in col.search(vectors[0], k=N, filter=f)) for f in filters()]
        assert after == before
        for flt, found in zip(filters(), after, strict=True):
            assert found == sorted(
                f"d{i}" for i, d in enumerate(docs) if reference_match(d.metadata, flt)
            )
            assert col.count(flt) == len(found)
        # SQLite's plan reads the index for an equality on a declared field.
        where, params = col._where({"author.name": "ada"})
        plan = (
            col.store._con()
            .execute(f"EXPLAIN QUERY PLAN SELECT vid FROM docs WHERE {where}", params)
            .fetchall()
        )
        assert any("USING INDEX field_" in row[-1] for row in plan), plan
        undeclared, p2 = col._where({"author.age": 3})
        plan = (
            col.store._con()
            .execute(f"EXPLAIN QUERY PLAN SELECT vid FROM docs WHERE {undeclared}", p2)
            .fetchall()
        )
        assert not any("USING INDEX field_" in row[-1] for row in plan)
    with Collection.open(tmp_path / "c", read_only=True) as col:
        assert col.indexed_fields() == sorted(FIELDS)  # kept with the collection
        with pytest.raises(ReadOnlyError):
            col.index_field("other")


def test_a_field_that_cannot_be_indexed_is_refused(tmp_path: Path):
    with Collection.open(tmp_path / "c") as col:
        with pytest.raises(FilterError):
            col.index_field("a..b")
        with pytest.raises(FilterError):
            col.index_field("$and")
        assert field_path("a\\.b") == '$."a.b"'
