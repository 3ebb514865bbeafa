"""Collections under concurrent use: lock timeouts, a reindex beside a live writer, crashes in the
middle of a reindex swap, and rebuilds kept off the request path.

Other processes are real subprocesses where the property is about processes (flock, open files);
the word-hashing embedder of tests/fakes.py stands in for the encoder.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fakes import WordHashEmbedder
from index_inputs import docs, write_jsonl

from semsearch.index import (
    Collection,
    Doc,
    FormatError,
    IndexConfig,
    Limits,
    LockTimeout,
    persistence,
)
from semsearch.index import building as building_module
from semsearch.index.ingest.pipeline import BuildOptions, build_index
from semsearch.index.locking import writer_lock
from semsearch.index.persistence import (
    SWAP_MARKER,
    Manifest,
    old_copies,
    reindex_dir,
    write_manifest,
)

ROOT = Path(__file__).resolve().parents[2]
DIM = 16


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Child:
    """A Python subprocess whose stdout lines arrive on a queue (read with a timeout)."""

    def __init__(self, code: str, *args: str) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "tests"),  # the fakes; semsearch is installed
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("<eof>")

    def expect(self, prefix: str, timeout_s: float = 30.0) -> list[str]:
        """Lines up to and including the first starting with `prefix`."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = "<timeout>"
            seen.append(line)
            if line.startswith(prefix):
                return seen
            if line in ("<eof>", "<timeout>"):
                assert self.proc.stderr is not None
                err = self.proc.stderr.read() if line == "<eof>" else ""
                raise AssertionError(f"child never printed {prefix!r}: {seen[-5:]} {err[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()


# --- the writer lock times out -------------------------------------------------------------------

_HOLD_LOCK = """
import select, sys
from pathlib import Path
from semsearch.index.locking import writer_lock
with writer_lock(Path(sys.argv[1])):
    print("held", flush=True)
    select.select([sys.stdin], [], [], 5.0)  # until the parent says so (at most 5 s)
print("released", flush=True)
"""


def test_writer_lock_times_out_while_another_process_holds_it(
    tmp_path: Path, children: list[Child]
) -> None:
    vectors = unit(np.random.default_rng(0).standard_normal((3, DIM)))
    path = tmp_path / "c"
    col = Collection.open(path, limits=Limits(lock_timeout_s=0.3))
    col.upsert([Doc("a", "a"), Doc("b", "b")], vectors[:2])
    child = Child(_HOLD_LOCK, str(path))
    children.append(child)
    child.expect("held")
    t0 = time.monotonic()
    with pytest.raises(LockTimeout, match="writer lock of .* retry later"):
        with writer_lock(path, timeout_s=0.3):
            pass
    with pytest.raises(LockTimeout):
        col.upsert([Doc("c", "c")], vectors[2:])
    assert time.monotonic() - t0 < 3.0
    assert col.search(vectors[0], k=1)[0].id == "a"  # searches do not need the writer lock
    assert child.proc.stdin is not None
    child.proc.stdin.write("go\n")
    child.proc.stdin.flush()
    child.expect("released")
    col.upsert([Doc("c", "c")], vectors[2:])  # free again
    assert col.count() == 3
    col.close()
    with writer_lock(path, timeout_s=None):  # None waits (here: nothing to wait for)
        pass


# --- reindex beside a live writer ------------------------------------------------------------

_WRITER = """
import sys, time
from pathlib import Path
from semsearch.index import Collection
from fakes import WordHashEmbedder
path, stop = Path(sys.argv[1]), Path(sys.argv[2])
emb = WordHashEmbedder()
col = Collection.open(path, dim=emb.dim, encoder_fingerprint=emb.fingerprint())
print("open", flush=True)
i, deadline = 0, time.monotonic() + 30
while not stop.exists() and time.monotonic() < deadline:
    doc = {"id": f"w{i}", "text": f"written while serving {i}"}
    col.upsert([doc], emb.encode([doc["text"]]))
    print(f"ack w{i}", flush=True)  # acknowledged: the write is committed
    i += 1
    time.sleep(0.005)
col.close()
print("closed", flush=True)
"""


def test_reindex_refuses_while_a_server_writes_and_loses_nothing(
    tmp_path: Path, children: list[Child]
) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", docs(40))
    idx = tmp_path / "idx"
    build_index([src], idx, WordHashEmbedder())
    stop = tmp_path / "stop"
    writer = Child(_WRITER, str(idx), str(stop))
    children.append(writer)
    writer.expect("open")
    writer.expect("ack w3")
    other = WordHashEmbedder(dim=32, tag="fake-v2")
    options = BuildOptions(reindex=True, lock_timeout_s=0.5)
    with pytest.raises(LockTimeout, match="open in another process.*stop it first"):
        build_index([src], idx, other, options)
    writer.expect("ack w10")  # the server wrote on throughout
    stop.touch()
    lines = writer.expect("closed")  # the acknowledgements after "ack w10", then "closed"
    acked = {line.split()[1] for line in lines if line.startswith("ack")}
    acked |= {f"w{i}" for i in range(11)}
    with Collection.open(idx) as col:
        assert col.existing_ids(sorted(acked)) == acked
        assert col.count() == 40 + len(acked)
    # With the server gone the reindex goes through, every acknowledged write re-embedded.
    report = build_index([src], idx, other, options)
    assert report.reembedded == report.count == 40 + len(acked)
    with Collection.open(idx, encoder_fingerprint=other.fingerprint()) as col:
        assert col.existing_ids(sorted(acked)) == acked and col.info()["dim"] == 32
    assert not reindex_dir(idx).exists() and not old_copies(idx)


class GatedEmbedder(WordHashEmbedder):
    """Blocks its first encode call until `go` is set (a reindex caught in the middle)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.inside, self.go = threading.Event(), threading.Event()

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        self.inside.set()
        assert self.go.wait(30)
        return super().encode(texts, batch_size)


def test_opening_during_a_reindex_waits_then_fails_cleanly(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", docs(30))
    idx = tmp_path / "idx"
    build_index([src], idx, WordHashEmbedder())
    other = GatedEmbedder(dim=32, tag="fake-v2")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            build_index([src], idx, other, BuildOptions(reindex=True))
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert other.inside.wait(30)
        with pytest.raises(LockTimeout, match="being reindexed"):
            Collection.open(idx, limits=Limits(lock_timeout_s=0.3))
    finally:
        other.go.set()
        thread.join(60)
    assert not errors, errors
    with Collection.open(idx, encoder_fingerprint=other.fingerprint()) as col:
        assert col.count() == 30 and col.info()["dim"] == 32


# --- a crash in the middle of a reindex swap -------------------------------------------------


class Crash(Exception):
    """Stands for the process dying at this point (its locks go with it)."""


def _crash_at(monkeypatch: pytest.MonkeyPatch, idx: Path, step: str, emb: WordHashEmbedder) -> None:
    real_replace, real_rmtree = os.replace, shutil.rmtree

    def replace(src: object, dst: object) -> None:
        if (step == "first-rename" and Path(str(src)) == idx) or (
            step == "second-rename" and Path(str(src)) == reindex_dir(idx)
        ):
            raise Crash(step)
        real_replace(src, dst)

    def rmtree(path: object, *args: object, **kwargs: object) -> None:
        if Path(str(path)).name.startswith(f".{idx.name}.old-"):
            (Path(str(path)) / "manifest.json").unlink()  # half deleted, then the crash
            raise Crash(step)
        real_rmtree(path, *args, **kwargs)

    def encode(texts: list[str], batch_size: int = 32) -> np.ndarray:
        if len(emb.calls) >= 2:
            raise Crash(step)
        return WordHashEmbedder.encode(emb, texts, batch_size)

    if step in ("first-rename", "second-rename"):
        monkeypatch.setattr(persistence.os, "replace", replace)
    elif step == "delete-old":
        monkeypatch.setattr(persistence.shutil, "rmtree", rmtree)
    else:
        monkeypatch.setattr(emb, "encode", encode)


@pytest.mark.parametrize(
    ("step", "swapped"),
    [("copy", False), ("first-rename", False), ("second-rename", True), ("delete-old", True)],
)
def test_crash_mid_reindex_keeps_every_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, swapped: bool
) -> None:
    n = 60
    src = write_jsonl(tmp_path / "in.jsonl", docs(n))
    idx = tmp_path / "idx"
    old, new = WordHashEmbedder(), WordHashEmbedder(dim=32, tag="fake-v2")
    build_index([src], idx, old)
    options = BuildOptions(reindex=True, batch_size=8, window_batches=2)  # several windows
    with monkeypatch.context() as patch:
        _crash_at(patch, idx, step, new)
        with pytest.raises(Crash):
            build_index([src], idx, new, options)
    if step == "second-rename":
        assert not idx.exists() and old_copies(idx)  # the crash left no collection in place
        with pytest.raises(FormatError, match="interrupted reindex swap"):
            Collection.open(idx, read_only=True)  # read-only changes nothing, refuses
    # What a server starting now sees: never an empty collection, always every document.
    with Collection.open(idx) as col:
        assert col.count() == n and col.get("doc7") is not None
        expected = new if swapped else old
        assert col.info()["encoder_fingerprint"] == expected.fingerprint()
        assert col.search(expected.encode([docs(8)[7]["text"]])[0], k=1)[0].id == "doc7"
    if swapped:
        assert not old_copies(idx)  # the new copy is verified complete: the old one may go
    # And a rerun finishes the job.
    report = build_index([src], idx, WordHashEmbedder(dim=32, tag="fake-v2"), options)
    assert report.count == n
    with Collection.open(idx, encoder_fingerprint=new.fingerprint()) as col:
        assert col.count() == n and col.info()["dim"] == 32
    assert not old_copies(idx) and not reindex_dir(idx).exists()
    assert not (idx / SWAP_MARKER).exists()


def test_unverified_directory_beside_an_old_copy_is_refused_and_kept(tmp_path: Path) -> None:
    """E.g. an empty collection created where a crashed swap had moved the data away."""
    src = write_jsonl(tmp_path / "in.jsonl", docs(20))
    idx = tmp_path / "idx"
    build_index([src], idx, WordHashEmbedder())
    aside = tmp_path / ".idx.old-4242"
    idx.rename(aside)
    idx.mkdir()
    write_manifest(idx, Manifest())
    for attempt in (
        lambda: Collection.open(idx),
        lambda: build_index([src], idx, WordHashEmbedder()),
    ):
        with pytest.raises(FormatError, match="refusing to guess"):
            attempt()
    assert old_copies(idx) == [aside]
    with Collection.open(aside, read_only=True) as col:
        assert col.count() == 20


# --- rebuilds off the request path -----------------------------------------------------------


class _GatedIndexes:
    """Makes the next index built off the main thread wait for `go` (an index build caught in
    the middle); counts the builds made off the main thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.armed, self.inside, self.go = threading.Event(), threading.Event(), threading.Event()
        self.built_off_main = 0
        gate, real = self, building_module.FaissIndex

        class Gated(real):  # type: ignore[misc, valid-type]
            def __init__(self, *args: object, **kwargs: object) -> None:
                if threading.current_thread() is not threading.main_thread():
                    gate.built_off_main += 1
                    if gate.armed.is_set():
                        gate.armed.clear()
                        gate.inside.set()
                        assert gate.go.wait(30)
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(building_module, "FaissIndex", Gated)


HNSW = IndexConfig(index_type="HNSW32", compact_min=50, compact_ratio=0.1)


def _filled(path: Path, n: int, seed: int = 0) -> tuple[Collection, np.ndarray]:
    vectors = unit(np.random.default_rng(seed).standard_normal((n, DIM)))
    col = Collection.open(path, config=HNSW)
    col.upsert([Doc(f"d{i}", f"text {i}", {"i": i}) for i in range(n)], vectors)
    return col, vectors


def test_compaction_runs_in_the_background_while_searches_and_writes_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _GatedIndexes(monkeypatch)
    n = 400
    col, vectors = _filled(tmp_path / "c", n)
    extra = unit(np.random.default_rng(9).standard_normal((2, DIM)))
    gate.armed.set()
    # Past compact_min tombstones: a rebuild is due. The delete must not wait for it.
    deleter = threading.Thread(target=col.delete, args=([f"d{i}" for i in range(60)],))
    deleter.start()
    deleter.join(10)
    try:
        assert not deleter.is_alive(), "the delete waited for the index rebuild"
        assert gate.inside.wait(10), "no rebuild started"
        # The rebuild is stuck in the middle: everything else still works, with fresh results.
        assert col.search(vectors[100], k=1)[0].id == "d100"
        assert all(int(h.id[1:]) >= 60 for h in col.search(vectors[5], k=30))
        col.upsert([Doc("x0", "new", {})], extra[:1])
        col.upsert([Doc("d300", "moved", {})], extra[1:])  # replaced with another vector
        assert col.delete(["d200"]) == 1
        assert col.search(extra[0], k=1)[0].id == "x0"
        assert col.search(vectors[200], k=1)[0].id != "d200"
        assert col.info()["tombstones"] >= 60  # still the old index
    finally:
        gate.go.set()
    assert col.wait_idle(30)
    # The new index was built from the store as it was before those writes, then caught up.
    info = col.info()
    assert info["factory"] == "HNSW32" and info["tombstones"] <= 2
    assert col.count() == n - 61 + 1
    hits = col.search(extra[1], k=1)
    assert hits[0].id == "d300" and hits[0].text == "moved"
    assert col.search(extra[0], k=1)[0].id == "x0"
    everything = col.search(vectors[0], k=2 * n)
    assert len(everything) == col.count() and len({h.id for h in everything}) == col.count()
    assert not {"d0", "d59", "d200"} & {h.id for h in everything}
    col.close()
    with Collection.open(tmp_path / "c", config=HNSW) as again:  # and the snapshot is sound
        assert again.count() == n - 60 and again.search(extra[0], k=1)[0].id == "x0"


def test_rebuild_starts_over_when_tombstones_are_pruned_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _GatedIndexes(monkeypatch)
    n = 300
    col, vectors = _filled(tmp_path / "c", n)
    gate.armed.set()
    deleter = threading.Thread(target=col.delete, args=([f"d{i}" for i in range(60)],))
    deleter.start()
    deleter.join(10)
    try:
        assert not deleter.is_alive(), "the delete waited for the index rebuild"
        assert gate.inside.wait(10)
        # Another handle (as another process) deletes and saves a snapshot: that prunes the
        # tombstones the stuck rebuild needs to catch up from where it started.
        other = Collection.open(tmp_path / "c", config=HNSW)
        assert other.delete(["d150", "d151"]) == 2
        other.save()
        assert {h.id for h in col.search(vectors[150], k=5)}.isdisjoint({"d150", "d151"})
    finally:
        gate.go.set()
    assert col.wait_idle(30)
    other.close()  # (its WAL checkpoint would wait for the stuck rebuild's read transaction)
    assert gate.built_off_main >= 2, "the rebuild did not start over"
    everything = {h.id for h in col.search(vectors[0], k=2 * n)}
    assert len(everything) == col.count() == n - 62
    assert not {"d0", "d150", "d151"} & everything
    col.close()
