"""The Qdrant store's own mechanics, on qdrant-client's in-process mode: point ids, creating and
checking the collection, batched acknowledged writes, payload indexes, refusals, the mapping of
Qdrant's failures, the factory and the protocol both stores implement; and a random sequence of
writes that must leave it in the same state as the local store. The contract both stores share
is tests/unit/test_index_contract.py; filters are tests/unit/test_qdrant_filters.py."""

from __future__ import annotations

import inspect
import random
import socket
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytest.importorskip("qdrant_client")

from qdrant_client import QdrantClient, models  # noqa: E402
from qdrant_client.http.exceptions import (  # noqa: E402
    ResponseHandlingException,
    UnexpectedResponse,
)

from semsearch.index import (  # noqa: E402
    Busy,
    Collection,
    CollectionError,
    DimensionMismatch,
    Doc,
    FilterError,
    FingerprintMismatch,
    FormatError,
    InvalidArgument,
    NotFound,
    ReadOnlyError,
)
from semsearch.index.backend import CollectionBackend, open_backend  # noqa: E402
from semsearch.index.qdrant import QdrantCollection, QdrantUnavailable  # noqa: E402
from semsearch.index.qdrant.errors import qdrant_errors  # noqa: E402
from semsearch.index.qdrant.ids import NAMESPACE, SETTINGS_POINT, point_id  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")

DIM = 8
FP = {"weights_sha256": "aa", "dim": DIM}


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


class Recording:
    """A QdrantClient that records the methods called on it (and their keyword arguments)."""

    def __init__(self, client: QdrantClient) -> None:
        self._inner = client
        self._client = client._client  # what tells in-process mode apart
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return attr(*args, **kwargs)

        return call

    def named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for called, kwargs in self.calls if called == name]


@pytest.fixture
def client() -> Any:
    made = QdrantClient(location=":memory:")
    yield Recording(made)
    made.close()


def test_point_ids_are_uuid5_of_the_document_ids(client: Recording) -> None:
    assert NAMESPACE == uuid.UUID("6f1c9a52-4d7e-5b8a-9c3e-2a0d5e7f1b64")  # never to change
    assert point_id("a/b.txt") == str(uuid.uuid5(NAMESPACE, "a/b.txt"))
    with QdrantCollection.open("c", client=client) as col:
        col.upsert([Doc("a/b.txt", "x", {"k": [1]}), Doc("a/b.txt#chunk-3", "y")], vectors(2))
    stored = client.retrieve("c", [point_id("a/b.txt"), point_id("a/b.txt#chunk-3")])
    payloads = {r.payload["id"]: r.payload for r in stored}
    assert payloads["a/b.txt"]["text"] == "x" and payloads["a/b.txt"]["metadata"] == {"k": [1]}
    assert payloads["a/b.txt"]["family"] == ["a/b.txt"]
    assert payloads["a/b.txt#chunk-3"]["family"] == ["a/b.txt#chunk-3", "a/b.txt"]


def test_created_with_the_encoder_dimension_shards_and_fingerprint(client: Recording) -> None:
    with QdrantCollection.open(
        "c", client=client, dim=DIM, encoder_fingerprint=FP, shard_number=2, replication_factor=3
    ) as col:
        (created,) = client.named("create_collection")
        assert created["vectors_config"].size == DIM
        assert created["vectors_config"].distance == models.Distance.COSINE
        assert created["shard_number"] == 2 and created["replication_factor"] == 3
        indexed = {c["field_name"]: c["field_schema"] for c in client.named("create_payload_index")}
        assert indexed == dict.fromkeys(["id", "family", "paths"], "keyword")
        info = col.info()
        assert info["backend"] == "qdrant" and info["collection"] == "c" and info["count"] == 0
        assert info["dim"] == DIM and info["metric"] == "cosine"
        assert info["encoder_fingerprint"] == FP and info["url"] == "a given client"
    with pytest.raises(FingerprintMismatch, match="weights_sha256: 'aa' -> 'bb'"):
        QdrantCollection.open(
            "c", client=client, encoder_fingerprint={**FP, "weights_sha256": "bb"}
        )
    with pytest.raises(DimensionMismatch, match="holds 8-dimensional vectors"):
        QdrantCollection.open("c", client=client, dim=16)
    with QdrantCollection.open("c", client=client) as col:  # no encoder named: any handle reads
        assert col.count() == 0 and col.search(np.ones(DIM), k=3) == []


def test_without_a_dimension_the_first_upsert_creates_it(client: Recording) -> None:
    with (
        QdrantCollection.open("c", client=client, encoder_fingerprint=FP) as col,
        QdrantCollection.open("c", client=client) as other,  # an older handle
    ):
        assert not client.named("create_collection")
        assert (col.count(), col.scroll(), col.get("a"), col.families(["a"])) == (0, [], None, {})
        assert col.search(np.ones(DIM)) == [] and list(col.iter_ids()) == []
        col.set_chunking(100, 10)
        assert col.index_field("lang") is True and col.indexed_fields() == ["lang"]
        col.upsert([Doc("a", "t", {"lang": "en"})], vectors(1))
        assert other.count() == 1 and other.get("a").text == "t"
        assert other.chunking() == {"tokens": 100, "overlap": 10}
        assert other.indexed_fields() == ["lang"] and other.info()["encoder_fingerprint"] == FP
        created = [c["field_name"] for c in client.named("create_payload_index")]
        assert "view.lang" in created


def test_upserts_go_in_acknowledged_batches(client: Recording) -> None:
    docs = [Doc(f"p#chunk-{i}", f"t{i}") for i in range(50)]
    with QdrantCollection.open("c", client=client, dim=DIM, batch_size=7) as col:
        col.upsert([Doc("p", "whole"), Doc("p#chunk-60", "old")], vectors(2), ["p"])
        client.calls.clear()
        assert col.upsert(docs, vectors(50), ["p"]) == [d.id for d in docs]
        requests = client.named("batch_update_points")
        assert len(requests) == 8 and all(r["wait"] is True for r in requests)
        kinds = [[type(op).__name__ for op in r["update_operations"]] for r in requests]
        assert kinds[:-1] == [["UpsertOperation"]] * 7
        assert kinds[-1] == ["UpsertOperation", "DeleteOperation"]  # stale forms go last
        assert col.count() == 50 and col.get("p") is None and col.get("p#chunk-60") is None


def test_read_only_handles_refuse_writes(client: Recording) -> None:
    with pytest.raises(NotFound, match="no Qdrant collection 'c'"):
        QdrantCollection.open("c", client=client, read_only=True)
    with QdrantCollection.open("c", client=client, dim=DIM) as col:
        col.upsert([Doc("a", "t")], vectors(1))
    with QdrantCollection.open("c", client=client, read_only=True) as ro:
        assert ro.get("a").text == "t"
        for write in (
            lambda: ro.upsert([Doc("b", "t")], vectors(1)),
            lambda: ro.delete(["a"]),
            lambda: ro.delete_where({"x": 1}),
            lambda: ro.set_chunking(10, 2),
            lambda: ro.index_field("x"),
        ):
            with pytest.raises(ReadOnlyError, match="read-only"):
                write()
        assert ro.count() == 1


def test_drop_deletes_the_whole_collection(client: Recording) -> None:
    with QdrantCollection.open("c", client=client, dim=DIM) as col:
        col.upsert([Doc("a", "t")], vectors(1))
    with QdrantCollection.open("c", client=client, read_only=True) as ro:
        with pytest.raises(ReadOnlyError):
            ro.drop()
    QdrantCollection.open("c", client=client).drop()
    assert not client.collection_exists("c")
    with pytest.raises(NotFound):
        QdrantCollection.open("c", client=client, read_only=True)


def test_keyword_and_hybrid_search_need_the_local_store(client: Recording) -> None:
    with QdrantCollection.open("c", client=client, dim=DIM) as col:
        for mode in ("keyword", "hybrid"):
            with pytest.raises(InvalidArgument, match="needs the local store.*mode dense"):
                col.search(np.ones(DIM), text="netconf", mode=mode)
        with pytest.raises(InvalidArgument, match="mode must be one of"):
            col.search(np.ones(DIM), mode="sparse")


def test_collections_semsearch_did_not_make_are_refused(client: Recording) -> None:
    params = models.VectorParams(size=4, distance=models.Distance.DOT)
    client.create_collection("dot", vectors_config=params)
    with pytest.raises(FormatError, match="one unnamed cosine vector"):
        QdrantCollection.open("dot", client=client)
    params = models.VectorParams(size=4, distance=models.Distance.COSINE)
    client.create_collection("theirs", vectors_config=params)
    client.upsert("theirs", [models.PointStruct(id=1, vector=[1, 0, 0, 0], payload={})])
    with pytest.raises(FormatError, match="no semsearch settings point"):
        QdrantCollection.open("theirs", client=client)
    client.create_collection("empty", vectors_config=params)  # empty: taken over
    client.calls.clear()
    with QdrantCollection.open("empty", client=client, encoder_fingerprint=FP) as col:
        made = {c["field_name"] for c in client.named("create_payload_index")}
        assert made == {"id", "family", "paths"}
        col.upsert([Doc("a", "t")], np.ones((1, 4)))
        assert col.count() == 1 and col.info()["dim"] == 4
    assert client.retrieve("empty", [SETTINGS_POINT])[0].payload["encoder_fingerprint"] == FP


def test_declared_fields_get_payload_indexes_of_their_kind(client: Recording) -> None:
    docs = [Doc(f"d{i}", "t", {"lang": "en", "a": {"age": i}, "x.y": True}) for i in range(9)]
    with QdrantCollection.open("c", client=client, dim=DIM) as col:
        col.upsert(docs, vectors(9))
        client.calls.clear()
        assert [col.index_field(f) for f in ("lang", "a.age", "x\\.y")] == [True] * 3
        assert col.index_field("lang") is False
        assert col.index_field("n", kind="float") is True
        made = {c["field_name"]: c["field_schema"] for c in client.named("create_payload_index")}
        assert made == {
            "view.lang": "keyword",
            "view.a.age": "float",  # numbers: never "integer", which would round float bounds
            "view._782e79": "bool",  # a key Qdrant's paths cannot spell, hex-escaped
            "view.n": "float",
        }
        assert col.indexed_fields() == ["a.age", "lang", "n", "x\\.y"]
        assert col.count({"a.age": {"gt": 2.5}, "x\\.y": True}) == 6  # the same answers
        with pytest.raises(InvalidArgument, match="kind must be one of"):
            col.index_field("m", kind="integer")
        with pytest.raises(FilterError, match="empty key"):
            col.index_field("a..b")


def test_an_in_process_directory_keeps_the_collection(tmp_path: Path) -> None:
    with QdrantCollection.open("c", path=tmp_path / "q", dim=DIM) as col:
        col.upsert([Doc(f"d{i}", "t", {"i": i}) for i in range(5)], vectors(5))
        errors: list[BaseException] = []

        def work(n: int) -> None:  # the service's threads, on SQLite made in another one
            try:
                col.upsert([Doc(f"t{n}", "t")], vectors(1, n))
                col.search(vectors(1, n)[0], k=3, filter={"i": {"lt": 3}})
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
    with QdrantCollection.open("c", path=tmp_path / "q", dim=DIM) as col:
        assert col.count() == 9 and col.search(vectors(5)[2], k=1)[0].id == "d2"


def _response(status: int, content: bytes = b'{"status": {"error": "bad"}}') -> UnexpectedResponse:
    return UnexpectedResponse(status, "", content, httpx.Headers())


@pytest.mark.parametrize(
    ("raised", "expected", "message"),
    [
        (_response(503), QdrantUnavailable, "answered 503"),
        (_response(429), QdrantUnavailable, "answered 429"),
        (ResponseHandlingException(ConnectionError("refused")), QdrantUnavailable, "no answer"),
        (_response(404), NotFound, "not found"),
        (_response(403), CollectionError, "API key"),
        (_response(400, b"Index required but not found for view.lang"), InvalidArgument, "Index"),
    ],
)
def test_qdrant_failures_become_index_errors(
    raised: Exception, expected: type[Exception], message: str
) -> None:
    with pytest.raises(expected, match=message) as info, qdrant_errors("'c' at http://q:6333"):
        raise raised
    assert "'c' at http://q:6333" in str(info.value)
    assert isinstance(info.value, Busy) == (expected is QdrantUnavailable)  # 503 vs 4xx


def test_an_unreachable_server_is_busy_not_a_crash() -> None:
    with socket.socket() as s:  # a port nothing listens on: refused at once, no network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Its version check would run on a thread of its own and warn during a later test: off.
    client = QdrantClient(url=f"http://127.0.0.1:{port}", timeout=1, check_compatibility=False)
    with pytest.raises(QdrantUnavailable, match="'c' at a given client: no answer"):
        QdrantCollection.open("c", client=client)
    client.close()


def test_without_qdrant_client_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("semsearch.index.qdrant")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "qdrant_client", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'semsearch\[qdrant\]'"):
        open_backend("qdrant", collection="c", location=":memory:")


def test_open_backend_opens_either_store(tmp_path: Path) -> None:
    with open_backend("local", tmp_path / "c", dim=DIM) as local:
        assert isinstance(local, Collection) and local.count() == 0
    with open_backend("qdrant", collection="c", location=":memory:", dim=DIM) as remote:
        assert isinstance(remote, QdrantCollection) and remote.info()["dim"] == DIM
    with pytest.raises(InvalidArgument, match="url: not options of the local store"):
        open_backend("local", tmp_path / "c", url="http://q:6333")
    with pytest.raises(InvalidArgument, match="index_type: not options of the qdrant store"):
        open_backend("qdrant", collection="c", location=":memory:", index_type="HNSW32")
    with pytest.raises(InvalidArgument, match="exactly one of url"):
        open_backend("qdrant", collection="c", url="http://q:6333", location=":memory:")
    with pytest.raises(InvalidArgument, match="needs a collection name"):
        open_backend("qdrant", location=":memory:")
    with pytest.raises(InvalidArgument, match="store must be one of local, qdrant"):
        open_backend("milvus", tmp_path / "c")


@pytest.mark.parametrize("implementation", [Collection, QdrantCollection])
def test_both_stores_implement_the_protocol_as_declared(implementation: type) -> None:
    """Every protocol method exists with the protocol's parameters (names, kinds, defaults);
    an implementation may add optional ones."""
    for name, member in inspect.getmembers(CollectionBackend):
        if name.startswith("_") and name not in ("__enter__", "__exit__"):
            continue
        if isinstance(member, property):
            continue  # `limits`, checked below
        want = inspect.signature(member).parameters
        have = inspect.signature(getattr(implementation, name)).parameters
        for param in want.values():
            assert param.name in have, (implementation.__name__, name, param.name)
            got = have[param.name]
            assert (got.kind, got.default) == (param.kind, param.default), (name, param.name)
        extra = [p for p in have.values() if p.name not in want]
        assert all(p.default is not inspect.Parameter.empty for p in extra), (name, extra)
    assert "limits" in inspect.signature(implementation.__init__).parameters


def test_same_state_as_the_local_store_after_random_writes(tmp_path: Path) -> None:
    """Random upserts (whole, as chunks, replacing families), deletes and filtered deletes on
    both stores: every read answers the same."""
    rng = random.Random(9)
    parents = [f"p{i}" for i in range(12)]
    with (
        Collection.open(tmp_path / "c") as local,
        QdrantCollection.open("c", location=":memory:") as remote,
    ):
        for step in range(40):
            roll, parent = rng.random(), rng.choice(parents)
            if roll < 0.5:
                n = rng.choice([0, 0, 1, 2, 3])
                ids = [parent] if n == 0 else [f"{parent}#chunk-{c}" for c in range(n)]
                docs = [Doc(i, f"{i} {step}", {"n": rng.randrange(4), "p": parent}) for i in ids]
                fams = [parent] if rng.random() < 0.8 else []
                vec = vectors(len(docs), step)
                assert local.upsert(docs, vec, fams) == remote.upsert(docs, vec, fams)
            elif roll < 0.75:
                ids, fams = rng.sample(parents, 3), rng.random() < 0.5
                assert local.delete(ids, fams) == remote.delete(ids, fams), step
            elif roll < 0.85:
                flt = {"n": rng.randrange(4), "p": {"in": rng.sample(parents, 4)}}
                assert local.delete_where(flt) == remote.delete_where(flt), step
            for flt in (None, {"n": {"gte": 2}}):
                assert local.count(flt) == remote.count(flt), step
            fams = rng.sample(parents, 4)
            assert local.families(fams) == remote.families(fams), step
            assert local.chunks_of(parent) == remote.chunks_of(parent), step
        every = sorted(i for ids in local.iter_ids() for i in ids)
        assert every == sorted(i for ids in remote.iter_ids() for i in ids) and every
        assert {d.id: d for d in local.scroll("", 100)} == {d.id: d for d in remote.scroll("", 100)}
