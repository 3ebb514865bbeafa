"""The service's seams (service/protocols.py) against the real models: both encoder backends, the
fake the service tests use, and the decoder have every member the service calls, with signatures
that take the service's calls (positional in the protocol's order, and by the protocol's names)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

from semsearch.encoder import load_embedder
from semsearch.encoder.wordpiece import WordPieceTokenizer
from semsearch.service.protocols import Embedder, PromptTokenizer, StreamEvent, TextGenerator


def _methods(protocol: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in vars(protocol).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }


def _properties(protocol: type) -> list[str]:
    return [name for name, member in vars(protocol).items() if isinstance(member, property)]


def assert_satisfies(obj: object, protocol: type) -> None:
    """`obj` has every member of `protocol`, and each method takes every call the protocol
    allows: all arguments in order, the optional ones by name, and the required ones alone."""
    assert isinstance(obj, protocol), f"{type(obj).__name__} is not a {protocol.__name__}"
    for name in _properties(protocol):
        assert not callable(getattr(obj, name)), f"{name} must be data, not a method"
    for name, member in _methods(protocol).items():
        wanted = list(inspect.signature(member).parameters.values())[1:]  # without self
        actual = inspect.signature(getattr(obj, name))
        where = f"{type(obj).__name__}.{name}{actual} for {protocol.__name__}.{name}"
        positional = [p for p in wanted if p.kind is p.POSITIONAL_OR_KEYWORD]
        keyword = {p.name: None for p in wanted if p.kind is p.KEYWORD_ONLY}
        required = [p for p in positional if p.default is p.empty]
        optional = {p.name: None for p in positional if p.default is not p.empty}
        try:
            actual.bind(*[None] * len(positional), **keyword)
            actual.bind(*[None] * len(required), **optional, **keyword)
            actual.bind(*[None] * len(required))
        except TypeError as exc:
            raise AssertionError(f"{where}: {exc}") from None


@pytest.fixture(scope="module")
def artifact_embedders():
    return [load_embedder(backend=b) for b in ("onnx", "onnx-int8", "openvino", "openvino-int8")]


def test_every_encoder_backend_is_an_embedder(real_embedder, artifact_embedders):
    for embedder in (real_embedder, *artifact_embedders):
        assert_satisfies(embedder, Embedder)
        assert isinstance(embedder.tokenizer, WordPieceTokenizer)
        assert isinstance(embedder.dim, int) and isinstance(embedder.max_length, int)
        assert embedder.backend in ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
        arrays = embedder.tokenizer.pad(embedder.tokenizer.encode_batch(["a b", "c"]))
        rows = embedder.encode_batch_arrays(
            arrays["input_ids"], arrays["attention_mask"], arrays["token_type_ids"], normalize=False
        )
        assert rows.shape == (2, embedder.dim) and rows.dtype == np.float32
        assert embedder.fingerprint()["dim"] == embedder.dim


def test_the_fake_the_service_tests_use_is_an_embedder(fake_embedder):
    assert_satisfies(fake_embedder, Embedder)


def test_the_scripted_decoder_the_stream_tests_use_is_a_text_generator():
    from fakes import ScriptedGenerator

    generator = ScriptedGenerator()
    assert_satisfies(generator, TextGenerator)
    assert_satisfies(generator.tokenizer, PromptTokenizer)
    events = list(generator.stream(generator.tokenizer.encode("Hi"), max_new_tokens=2))
    for event in events:
        assert_satisfies(event, StreamEvent)
    assert [e.finish_reason for e in events] == [None, "length"]


def test_the_decoder_is_a_text_generator(real_generator):
    assert_satisfies(real_generator, TextGenerator)
    assert_satisfies(real_generator.tokenizer, PromptTokenizer)
    assert isinstance(real_generator.context_length, int)
    ids = real_generator.tokenizer.encode("The capital of France is")
    events = real_generator.stream(ids, max_new_tokens=3, temperature=0.0, stop=None, seed=None)
    # The engine closes the stream when a client leaves: it must be a generator, not any iterator.
    assert inspect.isgenerator(events)
    first = next(events)
    assert_satisfies(first, StreamEvent)
    assert first.finish_reason is None and first.usage is None
    events.close()
    last = list(real_generator.stream(ids, max_new_tokens=1))[-1]
    assert last.finish_reason in ("stop", "length") and last.usage["completion_tokens"] == 1


def test_a_missing_member_or_an_incompatible_signature_is_caught(real_generator):
    class NoStream:
        context_length = 8
        tokenizer = real_generator.tokenizer

        def chat_ids(self, messages, add_generation_prompt=True):
            return []

        def fingerprint(self):
            return {}

    class RenamedArgument(NoStream):
        def stream(self, prompt_ids, max_tokens=32, temperature=0.0, top_p=1.0, top_k=0,
                   repetition_penalty=1.0, stop=None, seed=None):  # fmt: skip
            yield from ()

    with pytest.raises(AssertionError, match="not a TextGenerator"):
        assert_satisfies(NoStream(), TextGenerator)
    with pytest.raises(AssertionError, match="max_new_tokens"):
        assert_satisfies(RenamedArgument(), TextGenerator)
