"""Metadata filters against a brute-force reference on random metadata, on every index type of
the local store and on the Qdrant store (qdrant-client's in-process mode)."""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from filter_reference import reference_match

from semsearch.index import Collection, Doc, FilterError, IndexConfig
from semsearch.index.backend import CollectionBackend
from semsearch.index.filters import MAX_DEPTH, parse

DIM = 16
N = 1_000
QDRANT_ROUNDS = 0.4  # the share of random filters run on in-process Qdrant (slow to filter)
COLORS = ["red", "green", "blue", "black", "white"]

# In-process Qdrant builds no payload indexes and says so once; the collection asks for them.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")


@contextmanager
def opened(store: str, tmp_path: Path, **config: Any) -> Iterator[CollectionBackend]:
    """A new collection on `store`: "qdrant" (in-process), else a local index type."""
    if store == "qdrant":
        pytest.importorskip("qdrant_client")
        from semsearch.index.qdrant import QdrantCollection

        with QdrantCollection.open("c", location=":memory:") as col:
            yield col
        return
    with Collection.open(tmp_path / "c", config=IndexConfig(index_type=store, **config)) as col:
        yield col


def qdrant_refusal(store: str, message: str) -> Any:
    """A context in which the Qdrant store must refuse the filter (and the local one not)."""
    if store == "qdrant":
        return pytest.raises(FilterError, match=message)
    return nullcontext()


def random_metadata(rng: random.Random) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if rng.random() < 0.9:
        meta["color"] = rng.choice(COLORS)
    if rng.random() < 0.9:
        meta["n"] = rng.randrange(100)
    if rng.random() < 0.8:
        meta["x"] = round(rng.uniform(-1, 1), 3)
    if rng.random() < 0.7:
        meta["flag"] = rng.random() < 0.5
    odd = rng.random()  # values of the "wrong" type, to check the typing rules
    if odd < 0.05:
        meta["n"] = str(rng.randrange(100))
    elif odd < 0.08:
        meta["n"] = None
    elif odd < 0.1:
        meta["flag"] = rng.randrange(2)
    return meta


def random_filter(rng: random.Random) -> dict[str, Any]:
    conds: dict[str, Any] = {}
    for field in rng.sample(["color", "n", "x", "flag"], rng.randint(1, 3)):
        kind = rng.choice(["eq", "op", "op", "range"])
        if field == "color":
            value: Any = rng.choice(COLORS)
            options = ["ne", "in", "nin"]
            extra = {"in": rng.sample(COLORS, 2), "nin": rng.sample(COLORS, 2), "ne": value}
        elif field == "flag":
            value = rng.random() < 0.5
            options = ["ne", "in"]
            extra = {"ne": value, "in": [value, None]}
        else:
            value = rng.randrange(100) if field == "n" else round(rng.uniform(-1, 1), 2)
            options = ["ne", "in", "nin", "gt", "gte", "lt", "lte"]
            extra = {
                "ne": value,
                "in": [value, str(value), value + 1],
                "nin": [value],
                **dict.fromkeys(("gt", "gte", "lt", "lte"), value),
            }
        if kind == "eq":
            conds[field] = value
        elif kind == "op" or field in ("color", "flag"):
            op = rng.choice(options)
            conds[field] = {op: extra[op]}
        else:
            lo = value
            hi = lo + (rng.randrange(1, 50) if field == "n" else rng.uniform(0.1, 1))
            conds[field] = {"gte": lo, "lt": hi}
    return conds


@pytest.fixture(scope="module")
def data() -> tuple[list[Doc], np.ndarray]:
    rng = random.Random(7)
    docs = [Doc(f"d{i}", f"t{i}", random_metadata(rng)) for i in range(N)]
    vectors = np.random.default_rng(7).standard_normal((N, DIM)).astype(np.float32)
    return docs, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("index_type", ["Flat", "HNSW32", "IVF16,Flat", "qdrant"])
def test_filters_match_brute_force(
    tmp_path: Path, data: tuple[list[Doc], np.ndarray], index_type: str
) -> None:
    docs, vectors = data
    rng = random.Random(11)
    with opened(index_type, tmp_path, exact_filter_max=64, nprobe=4) as col:
        col.upsert(docs, vectors)
        if index_type != "qdrant":
            assert col.info()["factory"] == index_type
        checked, rounds = 0, int(60 * (QDRANT_ROUNDS if index_type == "qdrant" else 1))
        for _ in range(rounds):
            flt = random_filter(rng)
            q = vectors[rng.randrange(N)]
            matching = [i for i, d in enumerate(docs) if reference_match(d.metadata, flt)]
            # Every matching doc, and nothing else, when k covers them all.
            everything = col.search(q, k=N, filter=flt)
            assert sorted(h.id for h in everything) == sorted(f"d{i}" for i in matching), flt
            hits = col.search(q, k=10, filter=flt)
            assert len(hits) == min(10, len(matching)), flt
            if index_type in ("Flat", "qdrant") and matching:  # both exact (in-process Qdrant)
                sims = vectors[matching] @ q
                best = [f"d{matching[j]}" for j in np.argsort(-sims, kind="stable")[:10]]
                assert [h.id for h in hits] == best, flt
            checked += bool(matching)
        assert checked > rounds // 2  # the generator mostly produces satisfiable filters


@pytest.mark.parametrize("store", ["Flat", "qdrant"])
def test_typing_rules(tmp_path: Path, store: str) -> None:
    metas = [{"v": 1}, {"v": 1.0}, {"v": "1"}, {"v": True}, {"v": None}, {}, {"v": [1]}]
    vectors = np.eye(len(metas), 8, dtype=np.float32)
    with opened(store, tmp_path) as col:
        col.upsert([Doc(str(i), "t", m) for i, m in enumerate(metas)], vectors)

        def ids(flt: dict[str, Any]) -> list[str]:
            return sorted(h.id for h in col.search(vectors[0], k=10, filter=flt))

        assert ids({"v": 1}) == ["0", "1"]  # 1 == 1.0, but not "1" and not true
        assert ids({"v": "1"}) == ["2"]
        assert ids({"v": True}) == ["3"]
        assert ids({"v": None}) == ["4"]
        assert ids({"v": {"ne": 1}}) == ["2", "3", "4", "5", "6"]  # missing fields included
        assert ids({"v": {"gte": 1}}) == ["0", "1"]
        with qdrant_refusal(store, "ordering of text"):  # Qdrant orders numbers only
            assert ids({"v": {"gt": "0"}}) == ["2"]  # strings compare with strings only
        assert ids({"v": {"in": [True, "1"]}}) == ["2", "3"]
        assert ids({"v": {"nin": [1]}}) == ["2", "3", "4", "5", "6"]
        assert ids({"v": {"gt": 0, "lt": 2}, "w": {"ne": 3}}) == ["0", "1"]


def nested_not(depth: int) -> dict[str, Any]:
    flt: dict[str, Any] = {"a": 1}
    for _ in range(depth):
        flt = {"$not": flt}
    return flt


def nested_metadata(rng: random.Random) -> dict[str, Any]:
    """random_metadata, plus a nested object and a key holding a literal dot."""
    meta = random_metadata(rng)
    if rng.random() < 0.7:
        author: dict[str, Any] = {"name": rng.choice(["ada", "bob", "cy"])}
        if rng.random() < 0.6:
            author["age"] = rng.randrange(20, 60)
        if rng.random() < 0.1:
            author = {"name": {"first": "ada"}}  # a level deeper than the filters look
        meta["author"] = author
    elif rng.random() < 0.2:
        meta["author"] = "ada"  # not an object: author.name is missing
    if rng.random() < 0.3:
        meta["v.x"] = rng.randrange(3)
    return meta


def random_tree(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """A filter of random field conditions, paths, `exists` and $and/$or/$not."""
    roll = rng.random()
    if depth < 3 and roll < 0.2:
        return {"$and": [random_tree(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if depth < 3 and roll < 0.4:
        return {"$or": [random_tree(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if depth < 3 and roll < 0.5:
        return {"$not": random_tree(rng, depth + 1)}
    if roll < 0.6:
        return {
            rng.choice(["author.name", "color", "v\\.x", "author"]): {"exists": rng.random() < 0.5}
        }
    if roll < 0.7:
        return {"author.name": rng.choice(["ada", "bob", {"in": ["ada", "cy"]}, {"ne": "bob"}])}
    if roll < 0.75:
        op = rng.choice(["gt", "lte", "nin"])
        return {"author.age": {op: [30, 40] if op == "nin" else 30}}
    if roll < 0.8:
        return {"v\\.x": rng.randrange(3)}
    return random_filter(rng)


@pytest.mark.parametrize("store", ["Flat", "qdrant"])
def test_combinators_paths_and_exists_match_brute_force(tmp_path: Path, store: str) -> None:
    rng = random.Random(5)
    docs = [Doc(f"d{i}", f"t{i}", nested_metadata(rng)) for i in range(N)]
    vectors = np.random.default_rng(5).standard_normal((N, DIM)).astype(np.float32)
    with opened(store, tmp_path) as col:
        col.upsert(docs, vectors)
        sizes, rounds = set(), int(150 * (QDRANT_ROUNDS if store == "qdrant" else 1))
        for _ in range(rounds):
            flt = random_tree(rng)
            if flt.get("$and") and rng.random() < 0.5:  # fields beside a combinator, ANDed
                flt = {**flt, "color": {"ne": "red"}}
            matching = sorted(
                f"d{i}" for i, d in enumerate(docs) if reference_match(d.metadata, flt)
            )
            found = sorted(h.id for h in col.search(vectors[0], k=N, filter=flt))
            assert found == matching, flt
            sizes.add(len(matching))
        assert len(sizes) > rounds // 5  # filters of many selectivities, not all empty or full


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ({"a": {"like": 1}}, "unknown operator 'like'"),
        ({"a": {"in": "x"}}, "non-empty list"),
        ({"a": {"gt": None}}, "number or a string"),
        ({"a": {"gt": False}}, "number or a string"),
        ({"a": {}}, "empty condition"),
        ({"a": [1, 2]}, "got list"),
        ({"": 1}, "non-empty strings"),
        ({"k" * 257: 1}, "longer than 256"),
        ({"a": float("nan")}, "finite"),
        ({"a": {"gte": float("inf")}}, "finite"),
        ({"a": 2**63}, "64-bit"),
        ({"a": {"in": list(range(257))}}, "more than 256 conditions"),
        ("color=red", "JSON object"),
        ({"$xor": [{"a": 1}]}, "unknown combinator '\\$xor'"),
        ({"$and": []}, "non-empty list"),
        ({"$or": {"a": 1}}, "non-empty list"),
        ({"$not": {}}, "must not be empty"),
        ({"$not": [{"a": 1}]}, "JSON object"),
        ({"a..b": 1}, "empty key"),
        ({"a.": 1}, "empty key"),
        ({"a": {"exists": 1}}, "true or false"),
        (nested_not(MAX_DEPTH + 1), f"more than {MAX_DEPTH} deep"),
        ({"$or": [{"a": {"in": list(range(200))}}, {"b": {"nin": list(range(57))}}]}, "256"),
    ],
)
def test_bad_filters_are_specific(flt: Any, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse(flt)
    if importlib.util.find_spec("qdrant_client") is not None:  # the Qdrant store says the same
        from semsearch.index.qdrant.filters import to_qdrant

        with pytest.raises(FilterError, match=message):
            to_qdrant(flt)
