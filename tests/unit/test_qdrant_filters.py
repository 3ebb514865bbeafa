"""Filters on the Qdrant store (qdrant-client's in-process mode) against the brute-force reference,
on random nested metadata built to hit where Qdrant's own semantics differ from ours: arrays
(Qdrant matches any element), null and missing fields, booleans beside 0 and 1, integers beside
equal floats, strings that look like numbers, keys Qdrant's paths cannot spell. Every filter
either matches exactly the reference's documents or is refused, and only for the two documented
reasons (ranges over strings, integers beyond 2^53)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from filter_reference import literal_field, reference_match

pytest.importorskip("qdrant_client")

from semsearch.index import Doc, FilterError, InvalidDocument  # noqa: E402
from semsearch.index.filters import MAX_DEPTH  # noqa: E402
from semsearch.index.qdrant import QdrantCollection  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")

DIM = 8
N = 300
KEYS = ["a", "b", "x.y", "$d", 'q"t', "é", "k-1", "_6162"]  # "_6162" looks like an escaped "ab"
SCALARS: list[Any] = [0, 1, 1.0, -0.0, 2, 2.5, -3, 2**53, "1", "a", "b", "", True, False, None]


def value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.2:
        return obj(rng, depth + 1)
    if roll < 0.3:  # arrays: of scalars, of objects, empty
        return rng.choice([[rng.choice(SCALARS)], [obj(rng, 2)], [], [None], [1, "a"]])
    if roll < 0.33:
        return {}
    return rng.choice(SCALARS)


def obj(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    return {k: value(rng, depth) for k in rng.sample(KEYS, rng.randint(0, 4))}


def field(rng: random.Random) -> str:
    return ".".join(literal_field(rng.choice(KEYS)) for _ in range(rng.choice([1, 1, 2, 3])))


def condition(rng: random.Random) -> Any:
    op = rng.choice(["eq", "eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists"])
    if op == "exists":
        return {"exists": rng.random() < 0.5}
    if op in ("in", "nin"):
        return {op: rng.sample(SCALARS, rng.randint(1, 4))}
    if op in ("gt", "gte", "lt", "lte"):
        bound = rng.choice([0, 1, 1.0, 2, 2.5, -3, 2**53, 2**53 + 1, "a", "1"])
        return {op: bound}
    want = rng.choice(SCALARS)
    return want if op == "eq" and rng.random() < 0.5 else {op: want}


def tree(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    roll = rng.random()
    if depth < 3 and roll < 0.15:
        return {"$and": [tree(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if depth < 3 and roll < 0.3:
        return {"$or": [tree(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if depth < 3 and roll < 0.4:
        return {"$not": tree(rng, depth + 1)}
    return {field(rng): condition(rng) for _ in range(rng.randint(1, 2))}


def refused_on_qdrant(flt: Any) -> bool:
    """Whether `flt` holds a string range or an integer beyond 2^53 (the documented refusals)."""
    if isinstance(flt, dict):
        for key, cond in flt.items():
            if key in ("gt", "gte", "lt", "lte") and isinstance(cond, str):
                return True
            if refused_on_qdrant(cond):
                return True
        return False
    if isinstance(flt, list):
        return any(refused_on_qdrant(x) for x in flt)
    return isinstance(flt, int) and not isinstance(flt, bool) and abs(flt) > 2**53


@pytest.fixture(scope="module")
def loaded() -> Any:
    rng = random.Random(3)
    docs = [Doc(f"d{i}", f"t{i}", obj(rng)) for i in range(N)]
    vectors = np.random.default_rng(3).standard_normal((N, DIM)).astype(np.float32)
    with QdrantCollection.open("filters", location=":memory:") as col:
        col.upsert(docs, vectors)
        yield col, docs, vectors


def test_random_filters_match_brute_force_or_are_refused(loaded: Any) -> None:
    col, docs, vectors = loaded
    rng = random.Random(4)
    sizes, refused = set(), 0
    for n in range(200):
        flt = tree(rng)
        expected = sorted(d.id for d in docs if reference_match(d.metadata, flt))
        if refused_on_qdrant(flt):
            with pytest.raises(FilterError, match="string|2\\^53"):
                col.count(flt)
            refused += 1
            continue
        found = sorted(d.id for d in col.scroll("", N, flt))
        assert found == expected, flt
        assert n % 4 or col.count(flt) == len(expected), flt
        sizes.add(len(expected))
    assert refused < 80 and len(sizes) > 25  # mostly answered, and of many selectivities
    # The same filters in a search: only matching documents, k of them when k match.
    for _ in range(20):
        flt = tree(rng)
        if refused_on_qdrant(flt):
            continue
        matching = {d.id for d in docs if reference_match(d.metadata, flt)}
        hits = col.search(vectors[0], k=10, filter=flt)
        assert {h.id for h in hits} <= matching and len(hits) == min(10, len(matching)), flt


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"v": 1}, ["int", "float"]),  # 1 == 1.0; not "1", not true, not [1]
        ({"v": "1"}, ["str"]),
        ({"v": True}, ["true"]),
        ({"v": None}, ["null"]),
        ({"v": {"ne": 1}}, ["str", "true", "null", "list", "listnull", "missing", "obj"]),
        ({"v": {"gte": 1}}, ["int", "float"]),
        ({"v": {"in": [True, "1"]}}, ["str", "true"]),
        ({"v": {"nin": [1, None]}}, ["str", "true", "list", "listnull", "missing", "obj"]),
        (
            {"v": {"exists": True}},
            ["int", "float", "str", "true", "null", "list", "listnull", "obj"],
        ),
        ({"v": {"exists": False}}, ["missing"]),
        ({"v.w": 1}, ["obj"]),  # a path into an object, never into a list
        ({"$not": {"v": {"lt": 2}}}, ["str", "true", "null", "list", "listnull", "missing", "obj"]),
    ],
)
def test_typing_rules_on_qdrant(flt: dict[str, Any], expected: list[str]) -> None:
    metas = {
        "int": {"v": 1},
        "float": {"v": 1.0},
        "str": {"v": "1"},
        "true": {"v": True},
        "null": {"v": None},
        "list": {"v": [1, "1", True]},
        "listnull": {"v": [None]},
        "missing": {},
        "obj": {"v": {"w": 1}},
    }
    with QdrantCollection.open("typing", location=":memory:") as col:
        docs = [Doc(name, "t", meta) for name, meta in metas.items()]
        col.upsert(docs, np.eye(len(docs), 16, dtype=np.float32))
        assert sorted(d.id for d in col.scroll("", 20, flt)) == sorted(expected)
        assert all(reference_match(metas[name], flt) for name in expected)


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ({"name": {"gt": "m"}}, "ordering of text"),
        ({"$or": [{"a": 1}, {"name": {"lte": ""}}]}, "ordering of text"),
        ({"n": 2**53 + 1}, "2\\^53"),
        ({"n": {"in": [1, -(2**60)]}}, "2\\^53"),
        ({"n": {"like": 1}}, "unknown operator"),  # the local store's own checks come first
        ({"$not": {}}, "must not be empty"),
    ],
)
def test_what_qdrant_cannot_match_exactly_is_refused(flt: Any, message: str) -> None:
    with QdrantCollection.open("refusals", location=":memory:", dim=4) as col:
        for call in (col.count, lambda f: col.search(np.ones(4), filter=f), col.delete_where):
            with pytest.raises(FilterError, match=message):
                call(flt)


def test_deepest_filter_and_long_in_lists_are_answered() -> None:
    deep: dict[str, Any] = {"a": 1}
    for _ in range(MAX_DEPTH):
        deep = {"$not": deep}  # an even number of negations: the filter itself
    with QdrantCollection.open("deep", location=":memory:") as col:
        col.upsert([Doc("x", "t", {"a": 1}), Doc("y", "t", {"a": 2})], np.eye(2, 4))
        assert [d.id for d in col.scroll("", 5, deep)] == ["x"]
        assert col.count({"a": {"in": list(range(2, 258))[:256]}}) == 1


def test_metadata_is_returned_as_written() -> None:
    meta = {"tags": ["a", {"b": [1, None]}], "x.y": {"$z": 1.0, 'q"': -0.0}, "": None, "n": 3}
    with QdrantCollection.open("roundtrip", location=":memory:") as col:
        col.upsert([Doc("d", "text", meta)], np.ones((1, 4)))
        got = col.get("d")
        assert got == Doc("d", "text", meta)
        assert isinstance(got.metadata["x.y"]["$z"], float) and isinstance(got.metadata["n"], int)


def test_integers_filters_cannot_compare_are_refused_when_written() -> None:
    with QdrantCollection.open("ints", location=":memory:") as col:
        with pytest.raises(InvalidDocument, match=r"metadata\['a'\]\['b'\] = 9007199254740993"):
            col.upsert([Doc("d", "t", {"a": {"b": 2**53 + 1}})], np.ones((1, 4)))
        assert col.count() == 0  # nothing written
        # Inside a list, where filters never look, any 64-bit integer is kept as it is.
        col.upsert([Doc("d", "t", {"a": [2**63 - 1]}), Doc("e", "t", {"a": 2**53})], np.eye(2, 4))
        assert col.get("d").metadata == {"a": [2**63 - 1]}
        assert [d.id for d in col.scroll("", 5, {"a": {"gte": 2**53}})] == ["e"]
