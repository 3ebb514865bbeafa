"""A collection meets hostile input: field names built to break out of SQL, filters built to be
huge or slow, metadata built to poison the store. Each is refused with a CollectionError or
answered exactly as a brute-force Python evaluation answers it; the store keeps what it had."""

from __future__ import annotations

import math
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from filter_reference import RANGE, field_keys, literal_field, reference_match
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semsearch.index import Collection, Doc, FilterError, InvalidDocument, Limits, QueryTimeout
from semsearch.index.filters import MAX_FIELD_CHARS, to_sql
from semsearch.index.search import FilterCache
from semsearch.index.store import Store

DIM = 8

# Field names: everything with a meaning in SQL, in SQLite JSON paths or in JSON strings.
HOSTILE = ['"', "'", "$", ".", "[", "]", "*", "\x00", "\\", "a", "b", " ", "😀", "\n", "é", "#"]
INJECTION = "lang'||(CASE WHEN (SELECT count(*) FROM sqlite_master)>0 THEN '' ELSE 'z' END)||'"
RECURSIVE = (
    "x'||(WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c LIMIT 100000000) "
    "SELECT count(*) FROM c)||'"
)


def vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- what the index may refuse (everything else must match tests/filter_reference.py) -----------


def _bad_scalar(v: Any) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return not -(2**63) <= v < 2**63
    if isinstance(v, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in v)
    return False


def must_refuse(flt: dict[str, Any]) -> bool:
    """Filters the contract refuses: over-long names, paths with an empty key, names that begin
    with '$' (combinators'), values SQLite cannot compare exactly."""
    for field, cond in flt.items():
        if len(field) > MAX_FIELD_CHARS or field.startswith("$") or "" in field_keys(field):
            return True
        for _, want in cond.items() if isinstance(cond, dict) else [("eq", cond)]:
            if any(_bad_scalar(w) for w in (want if isinstance(want, list) else [want])):
                return True
    return False


def may_refuse(flt: dict[str, Any]) -> bool:
    """Keys that SQLite before 3.45 cannot spell as a JSON path (a '"' with a '.' or '[')."""
    return any('"' in k and ("." in k or "[" in k) for f in flt for k in field_keys(f))


def matching_ids(col: Collection, flt: dict[str, Any], n: int) -> list[str]:
    return sorted(h.id for h in col.search(vectors(1, 99)[0], k=n, filter=flt))


# --- hypothesis: hostile names and values against the reference --------------------------------

names = st.one_of(
    st.text(st.sampled_from(HOSTILE), min_size=1, max_size=5),
    st.text(min_size=1, max_size=6),
    st.sampled_from(['a"b', "a.b", "a[0]", "$", "*", INJECTION, "a\\b", "k" * 1024]),
)
stored_values = st.sampled_from(
    [
        "en",
        "",
        "a'b",
        'a"b',
        "\\",
        "😀",
        '["a"]',
        0,
        1,
        -1,
        1.0,
        0.5,
        -2.25,
        2**63 - 1,
        -(2**63),
        True,
        False,
        None,
        ["a"],
        {"x": 1},
    ]
)
filter_values = st.one_of(
    stored_values.filter(lambda v: not isinstance(v, list | dict)),
    st.sampled_from([float("nan"), float("inf"), 2**63, -(2**64), "\ud800"]),
)


@st.composite
def conditions(draw: st.DrawFn) -> Any:
    op = draw(st.sampled_from(["eq", "eq", "ne", "in", "nin", "gt", "gte", "lt", "lte"]))
    if op == "eq":
        return draw(filter_values)
    if op in ("in", "nin"):
        return {op: draw(st.lists(filter_values, min_size=1, max_size=4))}
    if op in RANGE:
        value = draw(filter_values.filter(lambda v: not isinstance(v, bool) and v is not None))
        return {op: value}
    return {op: draw(filter_values)}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    metas=st.lists(st.dictionaries(names, stored_values, max_size=4), min_size=1, max_size=30),
    data=st.data(),
)
def test_hostile_names_and_values_match_brute_force_or_are_refused(
    metas: list[dict[str, Any]], data: st.DataObject
) -> None:
    keys = sorted({k for m in metas for k in m})
    fields = st.one_of(st.sampled_from(keys), names) if keys else names
    with tempfile.TemporaryDirectory() as tmp, Collection.open(Path(tmp) / "c") as col:
        col.upsert([Doc(f"d{i}", "t", m) for i, m in enumerate(metas)], vectors(len(metas)))
        for _ in range(4):
            flt = data.draw(st.dictionaries(fields, conditions(), min_size=1, max_size=3))
            try:
                got = matching_ids(col, flt, len(metas))
            except FilterError:
                assert must_refuse(flt) or may_refuse(flt), flt
                continue
            assert not must_refuse(flt), flt
            want = sorted(f"d{i}" for i, m in enumerate(metas) if reference_match(m, flt))
            assert got == want, flt


# --- explicit hostile names ---------------------------------------------------------------------

NAMES = [
    'a"b',
    "a.b",
    "a[0]",
    "$",
    "$.a",
    '$."a"',
    "*",
    "a\\b",
    'a\\"',
    "a\x00b",
    "\x00",
    "it's",
    "😀",
    " ",
    "a\nb",
    "a]",
    "'",
    '"',
    "\\",
    "k" * MAX_FIELD_CHARS,
    'a".b',  # SQLite before 3.45 cannot address it: refused there, matched from 3.45 on
]


def test_every_hostile_name_finds_exactly_its_document(tmp_path: Path) -> None:
    metas = [{name: i, "other": i} for i, name in enumerate(NAMES)]
    metas.append({name.replace('"', "") + "x": 0 for name in NAMES})  # look-alike keys only
    with Collection.open(tmp_path / "c") as col:
        col.upsert([Doc(f"d{i}", "t", m) for i, m in enumerate(metas)], vectors(len(metas)))
        n = len(metas)
        matched = 0
        for i, name in enumerate(NAMES):
            field = literal_field(name)  # the key itself, dots and backslashes escaped
            try:
                assert matching_ids(col, {field: i}, n) == [f"d{i}"], name
            except FilterError:
                assert may_refuse({field: i}), name
                continue
            matched += 1
            others = sorted(f"d{j}" for j in range(n) if j != i)
            assert matching_ids(col, {field: {"ne": i}}, n) == others, name
            assert matching_ids(col, {field: {"gte": i, "lt": i + 1}}, n) == [f"d{i}"], name
            assert matching_ids(col, {field: {"in": [str(i), i, True]}}, n) == [f"d{i}"], name
        assert matched >= sum(not may_refuse({literal_field(name): 0}) for name in NAMES)
        # The filter cache keys on the bound path too: same SQL text, another field.
        assert matching_ids(col, {"a\\.b": 1}, n) == ["d1"]
        assert matching_ids(col, {"a.b": 1}, n) == []  # the path a -> b: no such object
        assert matching_ids(col, {"a[0]": 1}, n) == []


def test_quote_injection_reads_nothing(tmp_path: Path) -> None:
    metas = [{"lang": "en"}, {"lang": "fr"}, {}]
    with Collection.open(tmp_path / "c") as col:
        col.upsert([Doc(f"d{i}", "t", m) for i, m in enumerate(metas)], vectors(3))
        for flt, want in [
            ({INJECTION: "en"}, []),
            ({INJECTION: {"ne": "en"}}, ["d0", "d1", "d2"]),
            ({INJECTION: {"in": ["en", "fr"]}}, []),
            ({INJECTION: {"gte": ""}}, []),
        ]:
            assert matching_ids(col, flt, 3) == want, flt
        assert col.count() == 3


def test_recursive_cte_payload_returns_at_once(tmp_path: Path) -> None:
    with Collection.open(tmp_path / "c") as col:
        col.upsert([Doc("d0", "t", {"x100000000": 1})], vectors(1))
        start = time.monotonic()
        try:
            assert matching_ids(col, {RECURSIVE: 1}, 1) == []
        except FilterError:
            pass
        assert time.monotonic() - start < 2.0


def test_name_length_is_capped(tmp_path: Path) -> None:
    with Collection.open(tmp_path / "c") as col:
        col.upsert([Doc("d0", "t", {"k" * 300: 1})], vectors(1))
        with pytest.raises(FilterError, match=str(MAX_FIELD_CHARS)):
            col.search(vectors(1)[0], filter={"k" * (MAX_FIELD_CHARS + 1): 1})


def test_strings_never_equal_arrays_or_objects(tmp_path: Path) -> None:
    metas = [{"v": ["a"]}, {"v": {"a": 1}}, {"v": '["a"]'}, {"v": [1]}]
    with Collection.open(tmp_path / "c") as col:
        col.upsert([Doc(f"d{i}", "t", m) for i, m in enumerate(metas)], vectors(4))
        assert matching_ids(col, {"v": '["a"]'}, 4) == ["d2"]
        assert matching_ids(col, {"v": '{"a":1}'}, 4) == []
        assert matching_ids(col, {"v": {"in": ['{"a": 1}', "[1]"]}}, 4) == []
        assert matching_ids(col, {"v": {"ne": '["a"]'}}, 4) == ["d0", "d1", "d3"]


# --- filter size --------------------------------------------------------------------------------


def test_in_lists_up_to_the_limit_work_and_one_more_is_refused(tmp_path: Path) -> None:
    metas = [{"n": i, "s": str(i)} for i in range(300)]
    with Collection.open(tmp_path / "c") as col:
        col.upsert([Doc(f"d{i}", "t", m) for i, m in enumerate(metas)], vectors(300))
        wanted = list(range(0, 512, 2))  # 256 items, half of them stored
        got = matching_ids(col, {"n": {"in": wanted}}, 300)
        assert got == sorted(f"d{i}" for i in range(0, 300, 2))
        halves = [i + 0.5 for i in range(104)]
        mixed = [*range(100), *map(str, range(100, 150)), True, None, *halves]
        assert len(mixed) == 256
        assert matching_ids(col, {"n": {"nin": mixed}}, 300) == sorted(
            f"d{i}" for i in range(100, 300)
        )
        with pytest.raises(FilterError, match="256"):
            col.search(vectors(1)[0], filter={"n": {"in": list(range(257))}})
        with pytest.raises(FilterError, match="256"):
            col.search(vectors(1)[0], filter={"n": {"gte": 0}, "s": {"in": list(range(256))}})


def test_large_configured_filters_stay_inside_sqlite_limits(tmp_path: Path) -> None:
    limits = Limits(max_filter_conditions=5_000)
    metas = [{f"f{j}": j for j in range(50)} | {"n": i} for i in range(20)]
    with Collection.open(tmp_path / "c", limits=limits) as col:
        col.upsert([Doc(f"d{i}", "t", m) for i, m in enumerate(metas)], vectors(20))
        and_many = {f"f{j}": j for j in range(50)} | {f"g{j}": {"ne": j} for j in range(2_000)}
        assert matching_ids(col, and_many, 20) == sorted(f"d{i}" for i in range(20))
        long_in = {"n": {"in": [*range(3, 4_000, 3), *map(str, range(1_000))]}}
        assert matching_ids(col, long_in, 20) == sorted(f"d{i}" for i in range(3, 20, 3))
        with pytest.raises(FilterError, match="5000"):
            col.search(vectors(1)[0], filter={f"g{j}": j for j in range(5_001)})


# --- values that would poison the store or crash a filter ---------------------------------------


def _nested(depth: int, inner: Any = 1) -> Any:
    for i in range(depth):
        inner = {"d": inner} if i % 2 else [inner]
    return inner


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ({"v": float("nan")}, ["metadata['v']", "nan"]),
        ({"v": [1, float("inf")]}, ["metadata['v'][1]", "inf"]),
        ({"a": {"b": -float("inf")}}, ["metadata['a']['b']"]),
        ({"v": 2**63}, ["64-bit"]),
        ({"v": -(2**63) - 1}, ["64-bit"]),
        ({"d": _nested(900)}, ["deeper than 32"]),
        ({"d": _nested(100_000)}, ["deeper than 32"]),
        ({"v": "m" * 70_000}, ["65536 bytes"]),
        ({"v": ["é" * 40_000]}, ["65536 bytes"]),  # 80 kB of UTF-8 in 40k characters
        ({1: "x"}, ["keys must be strings"]),
        ({"v": {2: "x"}}, ["keys must be strings"]),
        ({"v": "a\x00b"}, ["NUL"]),
        ({"v": "\ud800"}, ["Unicode"]),
        ({"\udc00": 1}, ["Unicode"]),
        ({"v": {1, 2}}, ["set"]),
        ({"v": b"x"}, ["bytes"]),
    ],
)
def test_metadata_that_would_poison_the_store_is_refused(
    tmp_path: Path, metadata: dict[Any, Any], words: list[str]
) -> None:
    with Collection.open(tmp_path / "c") as col:
        col.upsert([{"id": "kept", "text": "t", "metadata": {"lang": "en"}}], vectors(1))
        for doc in ({"id": "bad", "text": "t", "metadata": metadata}, Doc("bad", "t", metadata)):
            with pytest.raises(InvalidDocument) as err:
                col.upsert([doc], vectors(1, 1))
            for word in words:
                assert word in str(err.value), (word, str(err.value))
        # Filtered searches (which read every row's metadata) keep working; nothing was lost.
        assert [h.id for h in col.search(vectors(1)[0], filter={"lang": "en"})] == ["kept"]
        assert col.count() == 1 and col.get("bad") is None


def test_ids_and_texts_sqlite_cannot_store_are_refused_or_absent(tmp_path: Path) -> None:
    with Collection.open(tmp_path / "c") as col:
        for doc in ({"id": "\ud800", "text": "t"}, {"id": "x", "text": "a\udfffb"}):
            with pytest.raises(InvalidDocument):
                col.upsert([doc], vectors(1))
        assert col.get("\ud800") is None
        assert col.existing_ids(["\ud800", "x"]) == set()
        assert col.delete(["\ud800"]) == 0


def test_metadata_at_the_limits_is_kept_exactly(tmp_path: Path) -> None:
    limits = Limits(max_metadata_depth=4, max_metadata_bytes=200)
    deep = {"a": [{"b": [1]}]}  # 4 levels: the object, a list, an object, a list
    edge = {"big": 2**63 - 1, "small": -(2**63), "x": -0.0, "f": 1e308}
    padded = {"s": "x" * (200 - len('{"s":""}'))}  # exactly 200 bytes of compact JSON
    with Collection.open(tmp_path / "c", limits=limits) as col:
        docs = [Doc("deep", "t", deep), Doc("edge", "t", edge), Doc("pad", "t", padded)]
        col.upsert(docs, vectors(3))
        with pytest.raises(InvalidDocument, match="deeper than 4"):
            col.upsert([Doc("deeper", "t", {"a": [{"b": [[1]]}]})], vectors(1))
        with pytest.raises(InvalidDocument, match="200 bytes"):
            col.upsert([Doc("over", "t", {"s": padded["s"] + "x"})], vectors(1))
        for doc_id, meta in [("deep", deep), ("edge", edge), ("pad", padded)]:
            got = col.get(doc_id)
            assert got is not None and got.metadata == meta
        assert matching_ids(col, {"big": 2**63 - 1}, 3) == ["edge"]
        assert matching_ids(col, {"small": {"lte": -(2**63)}}, 3) == ["edge"]
        assert matching_ids(col, {"big": {"gt": 2**62}, "f": {"gte": 1e308}}, 3) == ["edge"]


@pytest.mark.parametrize(
    "flt",
    [
        {"n": float("nan")},
        {"n": {"gte": float("inf")}},
        {"n": {"in": [1, float("-inf")]}},
        {"n": 2**63},
        {"n": {"gte": -(2**64)}},
        {"n": {"nin": [2**70]}},
        {"n": "\ud800"},
    ],
)
def test_filter_values_sqlite_cannot_compare_are_refused(tmp_path: Path, flt: Any) -> None:
    with Collection.open(tmp_path / "c") as col:
        col.upsert([Doc("d0", "t", {"n": 1})], vectors(1))
        with pytest.raises(FilterError, match="'n'"):
            col.search(vectors(1)[0], filter=flt)


def test_a_malformed_stored_row_is_a_filter_error_not_sqlite(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    store.write([Doc("a", "t", {"v": 1}), Doc("b", "t", {"v": 2})], vectors(2))
    # A row as an older version could write it (NaN is not JSON; this is not JSON anywhere).
    raw = sqlite3.connect(tmp_path / "db.sqlite")
    raw.execute("""UPDATE docs SET metadata = '{"v": 1' WHERE id = 'b'""")
    raw.commit()
    raw.close()
    with pytest.raises(FilterError) as err:
        store.filter_vids(*to_sql({"v": 1}))
    assert "SELECT" not in str(err.value) and "json_" not in str(err.value)
    store.close()


# --- bounded SQL work ---------------------------------------------------------------------------

# A WHERE that never ends on its own (only the store's internal API can run such SQL).
ENDLESS = (
    "(WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c) SELECT count(*) FROM c) > ?"
)


def test_a_slow_scan_times_out_while_writes_go_on(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite", query_timeout_s=1.0)
    store.write([Doc(f"d{i}", "t", {"n": i}) for i in range(100)], vectors(100))
    outcome: list[BaseException | None] = []

    def scan() -> None:
        try:
            with store.snapshot():
                store.filter_vids(ENDLESS, [0])
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            outcome.append(e)

    worker = threading.Thread(target=scan, daemon=True)
    start = time.monotonic()
    worker.start()
    try:
        for round_ in range(5):  # writes while the scan runs: never waiting for it
            time.sleep(0.05)
            t0 = time.monotonic()
            batch = [Doc(f"w{round_}-{i}", "t", {"n": i}) for i in range(200)]
            store.write(batch, vectors(200, round_))
            store.delete([f"d{round_}"])
            assert time.monotonic() - t0 < 0.9
        worker.join(timeout=15)
    finally:
        if worker.is_alive():  # the old behaviour: stop the endless query ourselves
            for con in store._all:
                con.interrupt()
            worker.join(timeout=5)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], QueryTimeout), outcome
    assert "SEMSEARCH_QUERY_TIMEOUT_S" in str(outcome[0])
    assert 0.9 < time.monotonic() - start < 10
    assert store.count() == 100 + 5 * 200 - 5  # every write kept
    assert len(store.filter_vids(*to_sql({"n": {"lt": 200}}))) == store.count()
    store.close()


def test_the_deadline_never_cuts_writes_or_rebuilds(tmp_path: Path) -> None:
    limits = Limits(query_timeout_s=1e-9)  # every deadline-bound query past a few steps fails
    n = 3_000
    metas = [{"n": i, "s": f"v{i % 7}", "tags": [i % 3, "x"]} for i in range(n)]
    with Collection.open(tmp_path / "c", limits=limits) as col:
        col.upsert([Doc(f"d{i}", "t" * 50, m) for i, m in enumerate(metas)], vectors(n))
        assert col.delete([f"d{i}" for i in range(0, n, 10)]) == n // 10
        flt = {"s": {"nin": [f"v{j}" for j in range(50)]}, "n": {"gte": 0}}
        with pytest.raises(QueryTimeout, match="SEMSEARCH_QUERY_TIMEOUT_S"):
            col.search(vectors(1)[0], k=10, filter=flt)
        # Nothing was left half-open: the same thread writes and reads on.
        col.upsert([Doc("late", "t", {"n": -1})], vectors(1))
        assert col.get("late") is not None
    with Collection.open(tmp_path / "c", limits=limits) as col:  # catch-up/rebuild from SQLite
        assert col.count() == n - n // 10 + 1
        assert sum(len(chunk) for chunk in col.iter_docs()) == col.count()
        assert col.search(vectors(1)[0], k=5)  # unfiltered: FAISS, then five rows by vid
    with Collection.open(tmp_path / "c") as col:  # the default deadline: all of it works
        assert len(col.search(vectors(1)[0], k=n, filter={"n": {"gte": 0}})) == n - n // 10


# --- the filter cache ---------------------------------------------------------------------------


class _CountingStore:
    def __init__(self) -> None:
        self.calls: list[list[Any]] = []

    def filter_vids(self, where: str, params: list[Any]) -> np.ndarray:
        self.calls.append(list(params))
        return np.array([len(self.calls)], dtype=np.int64)


def test_filter_cache_keeps_true_and_one_apart() -> None:
    cache, store = FilterCache(), _CountingStore()
    for params in ([True], [1], [1.0], [True], [1]):
        cache.allowed(store, 1, "w", params)  # type: ignore[arg-type]
    assert store.calls == [[True], [1], [1.0]]  # true is not 1 in SQLite
