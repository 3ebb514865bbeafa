"""The batch indexer: readers, bad rows, chunking, resume after kill -9, reindex, and the CLI.

A word-hashing embedder (tests/fakes.py) stands in for the encoder: these tests are about pipeline
mechanics. Search quality with real embeddings is tests/conformance/test_index_recall.py's job.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from fakes import WordHashEmbedder
from index_inputs import docs, write_jsonl

from semsearch.cli import index as cli_index
from semsearch.cli import search as cli_search
from semsearch.cli.main import main as cli_main
from semsearch.index import Collection, FingerprintMismatch, InvalidDocument
from semsearch.index.ids import MAX_ID_CHARS, check_user_id
from semsearch.index.ingest.chunking import chunk_spans
from semsearch.index.ingest.documents import SkippedFile
from semsearch.index.ingest.pipeline import BuildOptions, build_index
from semsearch.index.ingest.readers import BadRow, ReaderOptions, Record, read_inputs
from semsearch.index.persistence import SWAP_MARKER, mark_complete

# --- readers ---------------------------------------------------------------------------------


def test_jsonl_bad_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": "a", "text": "first", "metadata": {"k": 1}},
            "{not json",
            {"id": "b"},
            "",
            {"id": "a", "text": "again"},
            [1, 2],
            {"id": "c", "text": "   "},
            {"text": "no id", "lang": "en"},
        ],
    )
    rows = list(read_inputs([path], ReaderOptions()))
    bad = [(r.line, r.reason) for r in rows if isinstance(r, BadRow)]
    good = [r for r in rows if isinstance(r, Record)]
    assert [line for line, _ in bad] == [2, 3, 5, 6, 7]
    assert "invalid JSON" in bad[0][1] and "missing" in bad[1][1]
    assert "duplicate id 'a' (first seen on line 1)" in bad[2][1]
    assert [(r.id, r.metadata) for r in good] == [("a", {"k": 1}), ("in.jsonl:8", {"lang": "en"})]


def test_csv_and_folder_readers(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        'doc,body,year,score,tag\n1,"multi\nline text",2020,0.5,x\n2,short,,1e3,y\n3,bad\n'
    )
    opts = ReaderOptions(id_field="doc", text_field="body", metadata_fields=["year", "score"])
    rows = list(read_inputs([tmp_path / "t.csv"], opts))
    assert rows[0] == Record(
        "1", "multi\nline text", {"year": 2020, "score": 0.5}, rows[0].source, 2
    )
    assert rows[1].metadata == {"year": "", "score": 1000.0}
    assert isinstance(rows[2], BadRow) and rows[2].line == 5 and "2 cells" in rows[2].reason
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# title\nbody")
    (folder / "sub" / "b.txt").write_text("nested")
    (folder / "skip.rst").write_text("ignored")
    (folder / "empty.txt").write_text("  \n")
    rows = list(read_inputs([folder], ReaderOptions()))
    assert [(r.id, r.metadata) for r in rows if isinstance(r, Record)] == [
        ("a.md", {"path": "a.md"}),
        ("sub/b.txt", {"path": "sub/b.txt"}),
    ]
    assert [r.kind for r in rows if isinstance(r, SkippedFile)] == ["empty"]


def test_reader_streams_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for i in range(2_000):
            f.write(json.dumps({"id": i, "text": f"row {i} " + "x" * 10_000}) + "\n")
    tracemalloc.start()
    n = sum(1 for r in read_inputs([path], ReaderOptions()) if isinstance(r, Record))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 2_000
    assert peak < 2_000_000 < path.stat().st_size // 10  # a few rows at a time, not the file


def test_chunk_spans() -> None:
    offsets = [(i * 2, i * 2 + 1) for i in range(10)]  # tokens at 0, 2, 4, ...
    assert chunk_spans(offsets, 4, 1) == [(0, 7), (6, 13), (12, 19)]
    assert chunk_spans(offsets, 20) == [(0, 19)]
    assert chunk_spans([], 4) == []
    with pytest.raises(ValueError, match="overlap"):
        chunk_spans(offsets, 4, 4)


def test_user_id_rules() -> None:
    for good in ("a", "a#0", "a#chunk-", "a#chunk-1x", "a#chunk-1/b", "ü ß/é", "x" * MAX_ID_CHARS):
        check_user_id(good)
    for bad, why in [
        ("", "non-empty"),
        (5, "non-empty string"),
        ("a#chunk-0", "reserved"),
        ("doc#chunk-12", "reserved"),
        ("x" * (MAX_ID_CHARS + 1), "at most 512"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\x7f", "control"),
        ("a\x85b", "control"),
    ]:
        with pytest.raises(InvalidDocument, match=why):
            check_user_id(bad)


def test_readers_turn_bad_ids_into_bad_rows(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": "a#chunk-3", "text": "t"},
            {"id": "n\u0000ul", "text": "t"},
            {"id": "ok", "text": "t"},
            {"id": "y" * 600, "text": "t"},
        ],
    )
    rows = list(read_inputs([path], ReaderOptions()))
    bad = {r.line: r.reason for r in rows if isinstance(r, BadRow)}
    assert sorted(bad) == [1, 2, 4]
    assert "reserved" in bad[1] and "control" in bad[2] and "at most 512" in bad[4]
    assert [r.id for r in rows if isinstance(r, Record)] == ["ok"]


# --- the pipeline ------------------------------------------------------------------------------


def test_build_search_and_rerun_skips(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [*docs(300), "{oops", {"id": "doc5", "text": "dup"}])
    emb = WordHashEmbedder()
    bad: list[BadRow] = []
    opts = BuildOptions(batch_size=16, window_batches=4)
    report = build_index([src], tmp_path / "idx", emb, opts, on_bad_row=bad.append)
    assert (report.added, report.bad_rows, report.count) == (300, 2, 300)
    assert [b.line for b in bad] == [301, 302]
    # Each encode call gets a window sorted longest first (length-sorted batches, little padding).
    assert all([len(t) for t in call] == sorted(map(len, call), reverse=True) for call in emb.calls)
    assert max(len(c) for c in emb.calls) == 64
    again = build_index([src], tmp_path / "idx", emb, opts)
    assert (again.added, again.skipped_existing, again.count) == (0, 300, 300)
    with Collection.open(tmp_path / "idx", read_only=True) as col:
        query = emb.encode([docs(50)[42]["text"]])[0]
        hits = col.search(query, k=3, filter={"lang": 0})
        assert hits[0].id == "doc42" and hits[0].metadata == {"lang": 0}
        assert col.info()["encoder_fingerprint"] == emb.fingerprint()


def test_a_rerun_re_embeds_changed_records_only_and_sync_deletes_vanished_ones(
    tmp_path: Path,
) -> None:
    rows = docs(40)
    long_text = " ".join(f"w{i}" for i in range(50))
    rows.append({"id": "long", "text": long_text})
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    emb = WordHashEmbedder()
    opts = BuildOptions(chunk_tokens=20, chunk_overlap=5, batch_size=8)
    first = build_index([src], tmp_path / "idx", emb, opts)
    assert (first.added, first.updated) == (43, 0)  # 40 whole (one chunk each) + 3 of "long"

    rows[3] = {**rows[3], "text": "a new text for three"}  # text changed
    rows[7] = {**rows[7], "lang": 9}  # metadata changed
    rows[-1] = {"id": "long", "text": " ".join(f"w{i}" for i in range(25))}  # now 2 chunks
    write_jsonl(src, rows)
    emb.calls.clear()
    again = build_index([src], tmp_path / "idx", emb, opts)
    assert (again.added, again.updated, again.skipped_existing) == (4, 3, 38)
    assert sorted(t for call in emb.calls for t in call) == sorted(
        ["a new text for three", rows[7]["text"], "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 "
         "w13 w14 w15 w16 w17 w18 w19", "w15 w16 w17 w18 w19 w20 w21 w22 w23 w24"]
    )  # fmt: skip
    with Collection.open(tmp_path / "idx", read_only=True) as col:
        assert col.get("doc3#chunk-0").text == "a new text for three"
        assert col.get("doc7#chunk-0").metadata["lang"] == 9
        assert [c.id for c in col.chunks_of("long")] == ["long#chunk-0", "long#chunk-1"]
        hits = col.search(emb.encode(["a new text for three"])[0], k=1)
        assert hits[0].id == "doc3#chunk-0" and hits[0].score == pytest.approx(1.0)

    # --sync: rows that vanished go, with their chunks; an unreadable input stops it.
    kept = [r for r in rows if r["id"] not in ("doc0", "long")]
    write_jsonl(src, [*kept, "{broken"])
    refused = build_index(
        [src], tmp_path / "idx", emb, BuildOptions(chunk_tokens=20, chunk_overlap=5, sync=True)
    )
    assert refused.deleted == 0 and "1 rows could not be read" in refused.sync_refused
    write_jsonl(src, kept)
    synced = build_index(
        [src], tmp_path / "idx", emb, BuildOptions(chunk_tokens=20, chunk_overlap=5, sync=True)
    )
    assert (synced.deleted, synced.added, synced.count) == (3, 0, 39)
    with Collection.open(tmp_path / "idx", read_only=True) as col:
        assert col.get("doc0#chunk-0") is None and col.chunks_of("long") == []


def test_without_chunk_tokens_a_record_longer_than_the_encoder_is_chunked_not_cut(
    tmp_path: Path,
) -> None:
    long_text = " ".join(f"w{i}" for i in range(50))
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "long", "text": long_text}, *docs(3)])
    emb = WordHashEmbedder()
    emb.max_length = 22  # 20 tokens beside [CLS] and [SEP]
    report = build_index([src], tmp_path / "idx", emb, BuildOptions())
    with Collection.open(tmp_path / "idx", read_only=True) as col:
        chunks = col.chunks_of("long")
        assert len(chunks) == report.added - 3 > 2 and col.get("long") is None
        assert chunks[0].metadata["chunk_start"] == 0
        assert chunks[-1].metadata["chunk_end"] == len(long_text)
        for before, after in zip(chunks, chunks[1:], strict=False):  # no gap, 5 words shared
            assert after.metadata["chunk_start"] < before.metadata["chunk_end"]
        assert all(len(c.text.split()) <= 20 for c in chunks)
        assert col.get("doc1").text == docs(3)[1]["text"]  # short records stay whole
    again = build_index([src], tmp_path / "idx", emb, BuildOptions())
    assert again.added == 0


def test_chunking_gives_docid_chunk_n_with_parent(tmp_path: Path) -> None:
    long_text = " ".join(f"w{i}" for i in range(50))
    src = write_jsonl(
        tmp_path / "in.jsonl", [{"id": "long", "text": long_text, "metadata": {"a": 1}}]
    )
    opts = BuildOptions(chunk_tokens=20, chunk_overlap=5)
    report = build_index([src], tmp_path / "idx", WordHashEmbedder(), opts)
    assert report.added == 3
    with Collection.open(tmp_path / "idx", read_only=True) as col:
        chunks = [col.get(f"long#chunk-{n}") for n in range(3)]
        assert [c.text.split()[0] for c in chunks] == ["w0", "w15", "w30"]
        assert chunks[2].text.split()[-1] == "w49"
        assert chunks[1].metadata == {"a": 1, "parent_id": "long", "chunk": 1}
        hits = col.search(WordHashEmbedder().encode(["w20 w21 w22"])[0], k=1)
        assert hits[0].metadata["parent_id"] == "long"


def test_chunks_and_user_documents_never_collide(tmp_path: Path) -> None:
    long_text = " ".join(f"w{i}" for i in range(30))
    chunked = write_jsonl(tmp_path / "long.jsonl", [{"id": "a", "text": long_text}])
    idx = tmp_path / "idx"
    build_index([chunked], idx, WordHashEmbedder(), BuildOptions(chunk_tokens=10))
    plain = write_jsonl(
        tmp_path / "plain.jsonl",
        [{"id": "a#0", "text": "a user document"}, {"id": "a#chunk-0", "text": "an impostor"}],
    )
    report = build_index([plain], idx, WordHashEmbedder())
    assert (report.added, report.bad_rows, report.count) == (1, 1, 4)
    with Collection.open(idx, read_only=True) as col:
        assert col.get("a#0").text == "a user document"
        chunk = col.get("a#chunk-0")
        assert chunk.text.split()[0] == "w0" and chunk.metadata["parent_id"] == "a"


def test_other_encoder_is_refused_then_reindexed(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", docs(50))
    build_index([src], tmp_path / "idx", WordHashEmbedder())
    other = WordHashEmbedder(dim=32, tag="fake-v2")
    with pytest.raises(Exception, match="--reindex") as info:
        build_index([src], tmp_path / "idx", other)
    assert isinstance(info.value, FingerprintMismatch | ValueError)
    report = build_index([src], tmp_path / "idx", other, BuildOptions(reindex=True))
    assert (report.reembedded, report.added, report.count) == (50, 0, 50)
    with Collection.open(tmp_path / "idx", encoder_fingerprint=other.fingerprint()) as col:
        assert col.info()["dim"] == 32
        assert col.search(other.encode([docs(8)[7]["text"]])[0], k=1)[0].id == "doc7"
    assert not (tmp_path / "idx.reindex").exists()
    # A crash between the swap's two renames (the copy was marked complete before the first):
    # the next run finishes it. tests/unit/test_index_concurrency.py crashes at every step.
    shutil.copytree(tmp_path / "idx", tmp_path / ".idx.old-999")  # stands for the original
    (tmp_path / "idx").rename(tmp_path / "idx.reindex")
    mark_complete(tmp_path / "idx.reindex", {})
    report = build_index([src], tmp_path / "idx", other)
    assert (report.added, report.count) == (0, 50)
    assert not (tmp_path / ".idx.old-999").exists() and not (tmp_path / "idx.reindex").exists()
    assert not (tmp_path / "idx" / SWAP_MARKER).exists()


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from fakes import WordHashEmbedder
from semsearch.index.ingest.pipeline import BuildOptions, build_index
options = BuildOptions(batch_size=8, window_batches=8)  # 64-doc transactions
build_index([{src!r}], {idx!r}, WordHashEmbedder(delay=0.002), options)
"""


def test_kill_9_mid_build_then_rerun_has_every_doc_once(tmp_path: Path) -> None:
    n = 2_000
    src = write_jsonl(tmp_path / "in.jsonl", docs(n))
    idx = tmp_path / "idx"
    code = _CHILD.format(tests=str(Path(__file__).parents[1]), src=str(src), idx=str(idx))
    env = dict(os.environ)
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    stored = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.2)
        if (idx / "manifest.json").exists():
            with Collection.open(idx, read_only=True) as col:
                stored = col.count()
            if stored >= 300:
                break
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert 0 < stored < n
    report = build_index([src], idx, WordHashEmbedder(), BuildOptions(batch_size=64))
    assert report.count == n and report.added + report.skipped_existing == n
    assert report.skipped_existing >= stored
    with Collection.open(idx) as col:
        assert col.count() == n
        hits = col.search(WordHashEmbedder().encode([docs(n)[1003]["text"]])[0], k=5)
        assert "doc1003" in [h.id for h in hits if h.score > 0.999]  # (64 hashed dims collide)


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_build_info_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (cli_index, cli_search):
        monkeypatch.setattr(command, "load_embedder", lambda args: WordHashEmbedder())
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # main() sets it; undone after the test
    src = write_jsonl(tmp_path / "in.jsonl", [*docs(40), "{bad"])
    idx = str(tmp_path / "idx")
    argv = ["index", "build", str(src), "--index-dir", idx, "--quiet", "--ef-search", "100"]
    assert cli_main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["index"]["ef_search"] == 100
    assert "40 added" in out and "1 bad rows" in out and "in.jsonl:41: invalid JSON" in err
    assert cli_main(["index", "info", "--index-dir", idx, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 40 and info["dim"] == 64 and info["factory"] == "Flat"
    argv = ["search", docs(13)[12]["text"], "--index-dir", idx, "-k", "2", "--json"]
    assert cli_main([*argv, "--filter", '{"lang": 0}']) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["id"] == "doc12" and len(hits) == 2
    assert cli_main([*argv, "--filter", '{"lang": {"near": 1}}']) == 2  # usage
    assert "unknown operator 'near'" in capsys.readouterr().err
    assert cli_main(["search", "x", "--index-dir", str(tmp_path / "none")]) == 1
    assert "no collection" in capsys.readouterr().err
    bad = ["index", "build", str(src), "--index-dir", idx, "--quiet", "--index-type", "LSH"]
    assert cli_main(bad) == 2  # usage
    assert "unknown index type 'LSH'" in capsys.readouterr().err
