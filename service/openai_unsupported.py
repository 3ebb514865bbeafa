"""OpenAI request fields this server cannot honour: a 400 naming the field, never a silent drop.

Each rule says which values are fine: the field's neutral value (OpenAI's default, or what this
server does anyway). Anything else is refused with `Unsupported` (400, OpenAI's
`invalid_request_error`, `param` = the field). Fields that only label a request (`user`,
`metadata`, `store`, `service_tier`) change nothing a client relies on and are accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from semsearch.service.errors import Unsupported


@dataclass(frozen=True)
class Rule:
    accepts: Callable[[Any], bool]
    why: str


def _neutral(*values: Any) -> Callable[[Any], bool]:
    return lambda value: value is None or any(value == v for v in values)


_ONE_CHOICE = Rule(_neutral(1), "one choice per request: n must be 1 (send n requests)")
_NO_LOGPROBS = Rule(_neutral(False, 0), "log probabilities are not returned")
_NO_TOOLS = Rule(_neutral([], "none"), "tool and function calling are not supported")
_NO_PENALTY = Rule(
    _neutral(0, 0.0), "not supported; repetition_penalty (1 = off) is this server's penalty"
)

# /v1/completions and /v1/chat/completions.
GENERATION_RULES: Mapping[str, Rule] = {
    "n": _ONE_CHOICE,
    "best_of": _ONE_CHOICE,
    "logprobs": _NO_LOGPROBS,
    "top_logprobs": _NO_LOGPROBS,
    "echo": Rule(_neutral(False), "echoing the prompt is not supported"),
    "suffix": Rule(_neutral(""), "insertion (suffix) is not supported"),
    "logit_bias": Rule(_neutral({}), "logit_bias is not supported"),
    "frequency_penalty": _NO_PENALTY,
    "presence_penalty": _NO_PENALTY,
    "tools": _NO_TOOLS,
    "tool_choice": _NO_TOOLS,
    "functions": _NO_TOOLS,
    "function_call": _NO_TOOLS,
    "response_format": Rule(
        _neutral({"type": "text"}), "only text responses: response_format must be {type: text}"
    ),
}


def refuse_unsupported(extra: Mapping[str, Any] | None, rules: Mapping[str, Rule]) -> None:
    """Raise `Unsupported` for the first field of `extra` (the request's fields beyond the model's
    own) that a rule refuses; other unknown fields are ignored, as OpenAI-compatible servers do."""
    for name, value in (extra or {}).items():
        rule = rules.get(name)
        if rule is not None and not rule.accepts(value):
            raise Unsupported(f"{name}={value!r:.80}: {rule.why}", param=name)


def refuse_other_dimensions(dimensions: int | None, dim: int) -> None:
    """`dimensions` on /v1/embeddings: only the model's own (vectors are not truncated)."""
    if dimensions is not None and dimensions != dim:
        raise Unsupported(
            f"dimensions={dimensions}: this model's embeddings have {dim} dimensions; send "
            f"{dim} or leave dimensions out",
            param="dimensions",
        )


def refuse_token_ids(inputs: list) -> None:
    """Token ids as /v1/embeddings `input`: they would be another tokenizer's (tiktoken's, from
    LangChain), and this encoder reads its own WordPiece ids only, so they are refused."""
    if any(not isinstance(item, str) for item in inputs):
        raise Unsupported(
            "input as token ids is not supported: send the texts. LangChain's OpenAIEmbeddings "
            "sends tiktoken ids unless check_embedding_ctx_length=False",
            param="input",
        )


__all__ = [
    "GENERATION_RULES",
    "Rule",
    "refuse_other_dimensions",
    "refuse_token_ids",
    "refuse_unsupported",
]
