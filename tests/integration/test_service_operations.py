"""What an operator runs the service with: the liveness and readiness probes, the JSON access
log, and /metrics as Prometheus parses it. The encoder is the hashing embedder (tests/fakes.py);
generation runs the real decoder, whose timings the metrics report."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fakes import GatedLoader
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from semsearch.service.app import create_app
from semsearch.service.logs import JsonFormatter
from semsearch.service.settings import Settings

PROBES = ("/health", "/ready")


@contextmanager
def loading_app(tmp_path, monkeypatch, loader: GatedLoader) -> Iterator[TestClient]:
    """An app whose encoder loads through `loader` (held until released), behind an API key."""
    monkeypatch.setattr("semsearch.service.models.load_configured_embedder", loader)
    settings = Settings(index_dir=tmp_path / "index", decoder="off", api_key="k")
    with TestClient(create_app(settings)) as client:
        yield client


def wait_until_not_loading(client: TestClient, path: str) -> None:
    deadline = time.monotonic() + 30
    while client.get(path).json()["status"] == "loading":
        assert time.monotonic() < deadline, f"{path} still says loading"
        time.sleep(0.02)


# --- probes --------------------------------------------------------------------------------------


def test_health_answers_while_loading_and_ready_waits_for_the_models(
    tmp_path, monkeypatch, fake_embedder
):
    loader = GatedLoader(fake_embedder)
    with loading_app(tmp_path, monkeypatch, loader) as client:
        # No key: probes are open. Alive while loading, not ready.
        health, ready = client.get("/health"), client.get("/ready")
        assert (health.status_code, health.json()) == (200, {"status": "loading"})
        assert (ready.status_code, ready.json()) == (503, {"status": "loading"})
        assert client.head("/health").status_code == 200
        assert client.head("/ready").status_code == 503
        keyed = {"Authorization": "Bearer k"}
        assert client.post("/embed", json={"inputs": "x"}, headers=keyed).status_code == 503

        loader.release()
        wait_until_not_loading(client, "/ready")
        for path in PROBES:
            response = client.get(path)
            assert (response.status_code, response.json()) == (200, {"status": "ok"}), path
            assert client.head(path).status_code == 200
        assert client.post("/embed", json={"inputs": "x"}, headers=keyed).status_code == 200


def test_a_failed_load_is_503_on_both_probes_and_names_no_cause(
    tmp_path, monkeypatch, fake_embedder
):
    error = RuntimeError("cannot read /srv/secret-model-dir/model.onnx")
    loader = GatedLoader(fake_embedder, error=error)
    with loading_app(tmp_path, monkeypatch, loader) as client:
        loader.release()
        wait_until_not_loading(client, "/health")
        for path in PROBES:
            response = client.get(path)
            assert response.status_code == 503, path
            assert response.json()["status"] == "failed"
            assert "secret" not in response.text
            assert client.head(path).status_code == 503
        keyed = client.get("/info", headers={"Authorization": "Bearer k"})
        assert keyed.status_code == 503 and "secret-model-dir" in keyed.text


# --- the access log ------------------------------------------------------------------------------


@contextmanager
def json_log_lines(caplog) -> Iterator[list[dict]]:
    """Every line the root logger writes meanwhile, through the JSON formatter, parsed (the list
    is filled when the block ends)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    caplog.set_level(logging.INFO)
    root.addHandler(handler)
    lines: list[dict] = []
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


def test_each_request_is_one_json_access_line_with_what_it_counted(
    make_client, fake_embedder, real_generator, caplog
):
    prompt = {"prompt": "The capital of France is", "max_new_tokens": 3}
    with make_client(fake_embedder, real_generator) as client:
        with json_log_lines(caplog) as lines:
            mine = {"x-request-id": "trace-7.a:b"}
            embedded = client.post("/embed", json={"inputs": ["hello", "big world"]}, headers=mine)
            generated = client.post("/generate", json=prompt).json()
            streamed = client.post("/generate", json={**prompt, "stream": True})
            missing = client.get("/documents/nope")
    assert embedded.status_code == 200 and streamed.status_code == 200
    assert missing.status_code == 404
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
    access = [line for line in lines if line["logger"] == "semsearch.access"]
    assert len(access) == 4, access  # one per request: no duplicates

    embed = access[0]
    assert embed["request_id"] == "trace-7.a:b" and embed["level"] == "INFO"
    assert (embed["method"], embed["route"], embed["status"]) == ("POST", "/embed", 200)
    assert embed["batch_size"] == 2
    expected_tokens = sum(len(fake_embedder.tokenizer.encode(t)) for t in ("hello", "big world"))
    assert embed["tokens"] == expected_tokens  # [CLS] and [SEP] included, as the model sees them
    assert isinstance(embed["duration_ms"], float) and embed["duration_ms"] > 0

    for line in access[1:3]:
        assert line["route"] == "/generate" and line["status"] == 200
        assert line["prompt_tokens"] == generated["usage"]["prompt_tokens"]
        assert line["completion_tokens"] == generated["usage"]["completion_tokens"]
        assert len(line["request_id"]) == 32  # made here: the caller sent none
    assert access[1]["request_id"] != access[2]["request_id"]

    # Unknown ids keep the route's template (no id in the label), and count nothing.
    assert access[3]["route"] == "/documents/{doc_id:path}" and access[3]["status"] == 404
    assert "batch_size" not in access[3] and "prompt_tokens" not in access[3]


def test_a_log_line_with_an_exception_stays_one_json_line():
    try:
        raise ValueError("bad\nthing")
    except ValueError as exc:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (exc,), None)
        record.exc_info = (type(exc), exc, exc.__traceback__)
    record.request_id = "r1"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed: bad\nthing" and parsed["request_id"] == "r1"
    assert "ValueError: bad" in parsed["exception"] and parsed["level"] == "ERROR"


# --- metrics -------------------------------------------------------------------------------------


def scrape(client: TestClient) -> dict[str, dict[str, float]]:
    """Family name -> {sample name with its labels: value}, as Prometheus reads /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200
    families = {}
    for family in text_string_to_metric_families(response.text):
        families[family.name] = {
            s.name + json.dumps(s.labels, sort_keys=True): s.value for s in family.samples
        }
    return families


def value(families: dict[str, dict[str, float]], family: str, sample: str) -> float:
    return families[family][sample + "{}"]


def test_metrics_time_the_queue_the_first_token_and_decoding(
    make_client, fake_embedder, real_generator
):
    with make_client(fake_embedder, real_generator) as client:
        assert client.post("/embed", json={"inputs": ["one", "two"]}).status_code == 200
        started = time.perf_counter()
        response = client.post("/generate", json={"prompt": "1, 2, 3,", "max_new_tokens": 6})
        took = time.perf_counter() - started
        families = scrape(client)
    completion = response.json()["usage"]["completion_tokens"]
    assert completion >= 2

    # The client library's own collectors, in this app's registry.
    assert value(families, "process_cpu_seconds", "process_cpu_seconds_total") > 0
    assert value(families, "process_resident_memory_bytes", "process_resident_memory_bytes") > 0
    assert "python_info" in families

    wait = "semsearch_queue_wait_seconds"
    assert value(families, wait, f"{wait}_count") == 1  # one embedding request, one wait
    assert 0 <= value(families, wait, f"{wait}_sum") < 5

    first = "semsearch_time_to_first_token_seconds"
    assert value(families, first, f"{first}_count") == 1
    assert 0 < value(families, first, f"{first}_sum") < took

    tokens = value(families, "semsearch_decode_tokens", "semsearch_decode_tokens_total")
    seconds = value(families, "semsearch_decode_seconds", "semsearch_decode_seconds_total")
    assert tokens == completion - 1  # the first token comes from prefill
    assert 0 < seconds < took
    # The existing families are still there.
    assert value(families, "semsearch_batch_size", "semsearch_batch_size_count") == 1
    decoder = families["semsearch_tokens"]['semsearch_tokens_total{"model": "decoder"}']
    assert decoder == response.json()["usage"]["prompt_tokens"] + completion
