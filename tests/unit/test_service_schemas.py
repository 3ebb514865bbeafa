"""The sampling fields of the four generation routes: the names and defaults docs/API.md and
OpenAI's API give them, one conversion to the decoder's `SamplingParams`, and what the published
OpenAPI document says about them. The service itself must start without torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from semsearch.decoder.sampling import SEED_LIMIT, SamplingParams
from semsearch.service.app import create_app
from semsearch.service.errors import ValidationFailed
from semsearch.service.openai_schemas import ChatCompletionRequest, CompletionRequest
from semsearch.service.sampling_schema import SEED_MAX
from semsearch.service.schemas import GenerateRequest, RagRequest
from semsearch.service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "hi"}]
NATIVE = [GenerateRequest(prompt="x"), RagRequest(query="q")]
OPENAI = [CompletionRequest(prompt="x"), ChatCompletionRequest(messages=MESSAGES)]


def test_the_native_fields_are_the_ones_api_md_lists():
    api = (REPO / "docs" / "API.md").read_text()
    listed = re.search(r"plus\s+(`max_new_tokens`.*?`stream`)", api, re.S)
    assert listed, "docs/API.md no longer lists /generate's sampling fields"
    documented = set(re.findall(r"`(\w+)`", listed.group(1)))
    own = {
        GenerateRequest: {"prompt", "messages"},
        RagRequest: {"query", "k", "filter", "score_threshold", "mode"},
    }
    for model, fields in own.items():
        assert set(model.model_fields) - fields == documented, model.__name__


def test_native_defaults_are_greedy_with_the_route_default_length():
    for request in NATIVE:
        sampling = request.sampling(128)
        assert sampling.max_new_tokens == 128 and sampling.stop == ()
        assert sampling.params == SamplingParams()  # greedy, no top-k/top-p/penalty, fresh seed
        assert sampling.params.greedy


def test_openai_defaults_are_openais():
    for request in OPENAI:
        sampling = request.sampling(16)
        assert sampling.max_new_tokens == 16
        assert sampling.params == SamplingParams(temperature=1.0)  # OpenAI samples by default
        assert not request.include_usage


def test_every_field_reaches_the_decoders_sampling_params():
    fields = {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.3, "seed": 7}
    requests = [
        GenerateRequest(prompt="x", max_new_tokens=5, stop="END", **fields),
        RagRequest(query="q", max_new_tokens=5, stop="END", **fields),
        CompletionRequest(prompt="x", max_tokens=5, stop="END", **fields),
        ChatCompletionRequest(messages=MESSAGES, max_completion_tokens=5, stop=["END"], **fields),
    ]
    for request in requests:
        sampling = request.sampling(99)
        assert isinstance(sampling.params, SamplingParams)
        assert sampling.params == SamplingParams(**fields)
        assert sampling.max_new_tokens == 5 and sampling.stop == ("END",)


def test_max_completion_tokens_wins_over_max_tokens():
    request = ChatCompletionRequest(messages=MESSAGES, max_tokens=9, max_completion_tokens=3)
    assert request.sampling(512).max_new_tokens == 3
    assert CompletionRequest(prompt="x", max_tokens=0).sampling(16).max_new_tokens == 0


def test_stream_options_ask_for_usage():
    request = CompletionRequest(prompt="x", stream_options={"include_usage": True, "other": 1})
    assert request.include_usage


def test_an_empty_stop_string_is_refused():
    with pytest.raises(ValidationFailed, match="stop") as caught:
        GenerateRequest(prompt="x", stop=["a", ""]).sampling(8)
    assert caught.value.param == "stop"


def test_the_schema_bounds_are_values_the_decoder_accepts():
    assert SEED_MAX == SEED_LIMIT - 1
    extremes = {"temperature": 100.0, "top_p": 1e-9, "repetition_penalty": 10.0, "seed": SEED_MAX}
    params = GenerateRequest(prompt="x", top_k=10**9, **extremes).sampling(1).params
    assert params == SamplingParams(top_k=10**9, **extremes)
    assert CompletionRequest(prompt="x", temperature=2.0, seed=0).sampling(1).params.seed == 0


def test_the_published_schemas_share_the_sampling_fields():
    spec = create_app(Settings(decoder="off")).openapi()
    schemas = spec["components"]["schemas"]
    shared = ("top_p", "top_k", "repetition_penalty", "stop", "seed", "stream")
    names = ("GenerateRequest", "RagRequest", "CompletionRequest", "ChatCompletionRequest")
    first = schemas[names[0]]["properties"]
    for name in names[1:]:
        for field in shared:
            assert schemas[name]["properties"][field] == first[field], (name, field)
    openai_temperature = schemas["CompletionRequest"]["properties"]["temperature"]
    assert (openai_temperature["default"], openai_temperature["maximum"]) == (1.0, 2.0)
    assert first["temperature"]["default"] == 0.0


def test_the_openai_routes_publish_their_response_schemas():
    paths = create_app(Settings(decoder="off")).openapi()["paths"]
    for path, model in (
        ("/v1/completions", "CompletionResponse"),
        ("/v1/chat/completions", "ChatCompletionResponse"),
    ):
        content = paths[path]["post"]["responses"]["200"]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
        assert "text/event-stream" in content


BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
        return None
sys.meta_path.insert(0, _NoTorch())
"""

SERVE_WITHOUT_TORCH = """
import sys, tempfile, time
from fastapi.testclient import TestClient
from semsearch.service.app import create_app
from semsearch.service.settings import Settings

app = create_app(Settings(backend="onnx-int8", decoder="off", index_dir=tempfile.mkdtemp()))
with TestClient(app) as client:
    for _ in range(300):
        if client.get("/ready").status_code == 200:
            break
        time.sleep(0.1)
    assert client.post("/search", json={"query": "q"}).status_code == 200
    assert client.post("/generate", json={"prompt": "x", "top_k": 3}).status_code == 503
    assert client.post("/v1/completions", json={"prompt": "x"}).status_code == 503
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")], "torch imported"
"""


def test_the_service_serves_without_torch(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(BLOCK_TORCH))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_TORCH],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
