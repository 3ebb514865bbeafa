"""Backend `auto`: the export's measured choice, what it skips and why, what it prefers, and what
`/info` says about it. On the real artifacts of `make artifacts` (copied where a test edits them).
"""

from __future__ import annotations

import json
import shutil

import pytest
from fakes import TokenHashEmbedder

from semsearch.encoder import load_embedder
from semsearch.encoder.onnx.accuracy import Thresholds, report_path
from semsearch.encoder.onnx.artifacts import BACKEND_CHOICE_FILE, OPENVINO_INT8_FILE
from semsearch.encoder.onnx.auto import CANDIDATES, FALLBACK, cpu_model, read_choice
from semsearch.encoder.onnx.embedder import OnnxOptions, default_artifact_dir
from semsearch.evaluation.backend_choice import write_backend_choice
from semsearch.index import Collection
from semsearch.service.encoders import collection_backend, load_configured_embedder
from semsearch.service.settings import Settings


@pytest.fixture
def artifacts(tmp_path):
    """A writable copy of the artifact directory (the large graphs linked, not copied)."""
    copy = tmp_path / "onnx"
    copy.mkdir()
    for path in default_artifact_dir().iterdir():
        if path.is_dir():
            shutil.copytree(path, copy / path.name)
        elif path.suffix == ".onnx":
            (copy / path.name).symlink_to(path)
        else:
            shutil.copy(path, copy / path.name)
    return copy


def write_choice(directory, ranking, **extra):
    choice = {"version": 1, "ranking": ranking, "results": {}, "cpu": cpu_model(), **extra}
    (directory / BACKEND_CHOICE_FILE).write_text(json.dumps(choice))


def test_the_export_ranked_every_eligible_artifact_by_measured_speed():
    choice = read_choice(default_artifact_dir())
    assert choice is not None, "make artifacts writes backend_choice.json"
    ranking, results = choice["ranking"], choice["results"]
    assert ranking and set(ranking) | set(choice["refused"]) == set(CANDIDATES)
    speeds = [results[b]["texts_per_s_batch32"] for b in ranking]
    assert speeds == sorted(speeds, reverse=True)
    assert all(results[b]["texts_per_s_batch1"] > 0 and results[b]["load_s"] > 0 for b in ranking)


def test_auto_serves_the_fastest_and_says_why():
    ranking = read_choice(default_artifact_dir())["ranking"]
    emb = load_embedder(backend="auto")
    assert emb.backend == ranking[0]
    choice = emb.backend_choice
    assert choice["requested"] == "auto" and choice["backend"] == ranking[0]
    assert "fastest" in choice["reason"] and choice["measured"]["ranking"] == ranking
    assert "warning" not in choice  # measured on this CPU


def test_a_refused_artifact_is_skipped_with_its_reason(artifacts):
    write_choice(artifacts, ["openvino-int8", "onnx"])
    report = report_path(artifacts / OPENVINO_INT8_FILE)
    data = json.loads(report.read_text())
    data["retrieval"]["top10_agreement"] = 0.5
    report.write_text(json.dumps(data))
    emb = load_embedder(backend="auto", onnx_options=OnnxOptions(artifact_dir=artifacts))
    assert emb.backend == "onnx"
    assert "below the thresholds" in emb.backend_choice["skipped"]["openvino-int8"]
    assert emb.backend_choice["reason"] == "the fastest measured artifact that loads here"


def test_a_preferred_backend_comes_first(artifacts):
    write_choice(artifacts, ["openvino-int8", "onnx-int8", "onnx"])
    options = OnnxOptions(artifact_dir=artifacts)
    emb = load_embedder(backend="auto", onnx_options=options, prefer="onnx")
    assert emb.backend == "onnx" and "collection" in emb.backend_choice["reason"]
    # Not a backend auto chooses among: ignored.
    assert load_embedder(backend="auto", onnx_options=options, prefer="torch").backend == (
        "openvino-int8"
    )


def test_without_a_choice_file_the_default_order(artifacts):
    (artifacts / BACKEND_CHOICE_FILE).unlink()
    emb = load_embedder(backend="auto", onnx_options=OnnxOptions(artifact_dir=artifacts))
    assert emb.backend == FALLBACK[0] and "default order" in emb.backend_choice["reason"]


@pytest.mark.parametrize(
    "content", ["not json", "[1, 2]", json.dumps({"version": 99, "ranking": []})]
)
def test_an_unreadable_choice_file_is_ignored(artifacts, content):
    (artifacts / BACKEND_CHOICE_FILE).write_text(content)
    assert read_choice(artifacts) is None
    emb = load_embedder(backend="auto", onnx_options=OnnxOptions(artifact_dir=artifacts))
    assert emb.backend == FALLBACK[0]


def test_a_choice_measured_on_another_cpu_is_flagged(artifacts):
    write_choice(artifacts, ["onnx"], cpu="Some Other CPU")
    emb = load_embedder(backend="auto", onnx_options=OnnxOptions(artifact_dir=artifacts))
    assert "another CPU" in emb.backend_choice["warning"]


def test_when_nothing_loads_every_reason_is_named(tmp_path, artifacts):
    write_choice(artifacts, ["openvino-int8", "onnx-int8"])
    strict = Thresholds(min_cosine=1.0, mean_cosine=1.0, top10_agreement=1.0)
    options = OnnxOptions(artifact_dir=artifacts, thresholds=strict)
    with pytest.raises(RuntimeError, match="openvino-int8: .*onnx-int8: "):
        load_embedder(backend="auto", onnx_options=options)


def test_the_choice_keeps_the_backend_a_collection_was_built_with(tmp_path, artifacts):
    write_choice(artifacts, ["openvino-int8", "onnx-int8", "onnx"])
    built_with = load_embedder(backend="onnx-int8")
    Collection.open(
        tmp_path / "index", dim=built_with.dim, encoder_fingerprint=built_with.fingerprint()
    ).close()
    assert collection_backend(tmp_path / "index") == "onnx-int8"
    assert collection_backend(tmp_path / "nothing-here") is None
    settings = Settings(backend="auto", onnx_dir=artifacts, index_dir=tmp_path / "index")
    assert load_configured_embedder(settings).backend == "onnx-int8"


def test_write_backend_choice_times_the_eligible_and_names_the_refused(artifacts):
    strict = Thresholds(min_cosine=0.9999)  # no int8 artifact reaches it
    choice = write_backend_choice(artifacts, threads=1, thresholds=strict, rounds=1)
    assert set(choice["ranking"]) == {"openvino", "onnx"}
    assert set(choice["refused"]) == {"onnx-int8", "openvino-int8"}
    assert read_choice(artifacts)["ranking"] == choice["ranking"] and choice["threads"] == 1


def test_info_publishes_the_choice(make_client):
    emb = TokenHashEmbedder()
    emb.backend_choice = {"requested": "auto", "backend": "token-hash", "reason": "a test"}
    with make_client(emb) as client:
        info = client.get("/info").json()
    assert info["encoder_choice"] == emb.backend_choice
    with make_client(TokenHashEmbedder()) as client:
        assert client.get("/info").json()["encoder_choice"] is None
