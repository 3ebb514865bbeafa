"""`index build --ray` against the local pipeline, its reference: on the same real texts with the
real encoder, the same ids, texts, metadata and report, and vectors equal to the local build's
(cosine >= 0.9999: Ray batches the texts differently); and after the driver is killed mid-run, a
rerun that stores every document exactly once with those same vectors.

The inputs mix every path: JSONL rows with metadata and a bad row, CSV rows, a folder of text files
(ids relative to it, one file too long for the encoder and so chunked, one binary and so skipped),
and an id repeated across files (the last version read wins, as locally). Texts: 2,000 short real
paragraphs of the shipped corpus (evaluation/corpus.py). Encoder: OpenVINO fp32, the fastest fp32
backend here (deterministic for a given batch). One local Ray (2 CPUs: one actor, one reader) is
shared by the module; the killed run is the CLI in a subprocess with its own local Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving import REPO

from semsearch.evaluation.corpus import long_texts, real_texts
from semsearch.index import Collection, Doc
from semsearch.index.ingest.pipeline import BuildOptions, build_index

pytest.importorskip("ray.data", reason="needs the ray extra: pip install 'semsearch[ray]'")

BACKEND = "openvino"
N_TEXTS = 2_000
BATCH = 8  # windows of 8 x 32 = 256 units: the killed run has written several by the kill


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    """A local Ray of 2 CPUs (one actor, one reader), started as `index build --ray` starts one;
    builds in this process use it."""
    from semsearch.index.ingest.ray_session import RayOptions, ray_session

    with ray_session(RayOptions(workers=1)) as ray:
        assert ray.cluster_resources()["CPU"] == 2
        yield ray


@pytest.fixture(scope="module")
def embedder() -> Any:
    from semsearch.encoder import load_embedder

    return load_embedder(backend=BACKEND)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("inputs")
    texts = [t for t in real_texts(20_000) if len(t) <= 300][:N_TEXTS]
    rows = [json.dumps({"id": "dup.md", "text": "An older version of the duplicated note."})]
    rows += [
        json.dumps({"id": f"t{i:05d}", "text": t, "metadata": {"n": i, "even": i % 2 == 0}})
        for i, t in enumerate(texts)
    ]
    rows.insert(100, "{broken")
    (root / "texts.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (root / "rows.csv").write_text(
        'id,text,score\nc1,A first CSV row.,1.5\nc2,"A second, quoted row.",2\n',
        encoding="utf-8",
    )
    notes = root / "notes"
    (notes / "deep").mkdir(parents=True)
    for i, text in enumerate(real_texts(12, seed=7)):
        (notes / ("deep" if i % 3 else ".") / f"note{i}.md").write_text(text, encoding="utf-8")
    (notes / "long.txt").write_text(long_texts(1)[0] * 2, encoding="utf-8")  # chunked
    (notes / "dup.md").write_text("The newest version of the duplicated note.", encoding="utf-8")
    (notes / "binary.txt").write_bytes(b"\x00\x01 not text")
    return [root / "texts.jsonl", root / "rows.csv", notes]


@pytest.fixture(scope="module")
def local_build(inputs, embedder, tmp_path_factory) -> tuple[Any, dict[str, tuple[Doc, Any]]]:
    """The reference: the local pipeline's report and what it stored."""
    index_dir = tmp_path_factory.mktemp("local") / "index"
    report = build_index(inputs, index_dir, embedder, BuildOptions(batch_size=BATCH))
    return report, stored(index_dir, embedder.dim)


def stored(index_dir: Path, dim: int) -> dict[str, tuple[Doc, np.ndarray]]:
    """Every stored unit by id: the document and its vector."""
    out: dict[str, tuple[Doc, np.ndarray]] = {}
    with Collection.open(index_dir, read_only=True) as col:
        for vids, vectors in col.store.iter_vectors(dim):
            docs = col.store.docs_by_vids(vids.tolist())
            for vid, vector in zip(vids.tolist(), vectors, strict=True):
                out[docs[vid].id] = (docs[vid], vector)
    return out


def assert_same_as_local(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    assert {k: d for k, (d, _) in got.items()} == {k: d for k, (d, _) in want.items()}
    ids = sorted(want)
    a = np.stack([got[i][1] for i in ids])
    b = np.stack([want[i][1] for i in ids])
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 0.9999, ids[int(cosine.argmin())]


def test_ray_build_stores_what_the_local_pipeline_stores(
    ray_session, inputs, embedder, local_build, tmp_path
):
    from semsearch.index.ingest.ray_build import build_index_ray
    from semsearch.index.ingest.ray_session import RayOptions
    from semsearch.index.ingest.ray_stages import EncoderSpec
    from semsearch.service.settings import Settings

    want_report, want = local_build
    encoder = EncoderSpec.of(embedder, None, Settings().onnx_options())
    options, one = BuildOptions(batch_size=BATCH), RayOptions(workers=1)
    bad: list[Any] = []
    skipped: list[Any] = []
    report = build_index_ray(
        inputs, tmp_path, embedder, encoder, options, one, bad.append, None, skipped.append
    )
    assert_same_as_local(stored(tmp_path, embedder.dim), want)
    assert stored(tmp_path, embedder.dim)["dup.md"][0].metadata == {"path": "dup.md"}
    fields = ("documents", "chunks", "added", "updated", "bad_rows", "skipped_files", "count")
    assert {f: getattr(report, f) for f in fields} == {f: getattr(want_report, f) for f in fields}
    assert [b.line for b in bad] == [101] and [s.kind for s in skipped] == ["binary"]
    assert any("#chunk-" in i for i in want)  # the long file was chunked, by both

    again = build_index_ray(inputs, tmp_path, embedder, encoder, options, one)
    # Only dup.md is written again, both versions in turn (as a local rerun does): its last
    # version was looked up before the driver wrote the first, found stored, and embedded again
    # at the end (ray_build's `stale`).
    assert again.added == 2 and again.skipped_existing == report.chunks - 2
    assert again.count == report.count
    assert_same_as_local(stored(tmp_path, embedder.dim), want)


def test_a_killed_driver_then_a_rerun_stores_every_document_once(inputs, local_build, tmp_path):
    _, want = local_build
    index_dir = tmp_path / "index"
    argv = [sys.executable, "-m", "semsearch", "index", "build", *map(str, inputs)]
    argv += ["--index-dir", str(index_dir), "--backend", BACKEND, "--batch-size", str(BATCH)]
    argv += ["--quiet", "--ray", "--workers", "1"]
    child = subprocess.Popen(
        argv, cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    written, deadline = 0, time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.poll() is None and written < 600:
            time.sleep(0.5)
            if (index_dir / "manifest.json").exists():
                with Collection.open(index_dir, read_only=True) as col:
                    written = col.count()
        assert child.poll() is None, child.communicate()[1][-2000:]
        os.kill(child.pid, signal.SIGKILL)  # the driver alone, mid-run
        child.wait()
    finally:
        # What it started lives on in its session (Ray's agents): end them too.
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.stderr.close()
    assert 0 < written < len(want)

    rerun = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(want)} documents in" in rerun.stdout
    already = int(rerun.stdout.split(" already stored")[0].split()[-1])
    assert already >= written  # what the killed run wrote is not embedded again
    assert_same_as_local(stored(index_dir, len(next(iter(want.values()))[1])), want)
