"""Loading a BERT checkpoint from `.safetensors`: the only file in the project that opens one.

Strict, like `nn.Module.load_state_dict(strict=True)` but with one error that lists every missing,
unexpected and mis-shaped key at once (a wrong config shows up as dozens of shape mismatches; seeing
them all says which field is off). Keys may carry transformers' `bert.` prefix (checkpoints saved
from `BertFor...` heads); keys this encoder knowingly does not use (the pooler, MLM/NSP heads, the
`position_ids` buffer) are skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

logger = logging.getLogger(__name__)

PREFIX = "bert."
IGNORED_KEYS = frozenset({"embeddings.position_ids"})
IGNORED_PREFIXES = ("pooler.", "cls.")
_MAX_LISTED = 200  # per category; a totally wrong file would otherwise print thousands of lines


class WeightsError(ValueError):
    """The checkpoint does not fit the model: every problem is listed in the message."""


def read_tensors(path: str | Path) -> dict[str, Tensor]:
    """All tensors of a `.safetensors` file, on CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"cannot read {path} as safetensors: {e}") from e


def _is_ignored(name: str) -> bool:
    return name in IGNORED_KEYS or name.startswith(IGNORED_PREFIXES)


def _section(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    shown = [f"    {line}" for line in lines[:_MAX_LISTED]]
    if len(lines) > _MAX_LISTED:
        shown.append(f"    ... and {len(lines) - _MAX_LISTED} more")
    return [f"  {title} ({len(lines)}):", *shown]


def match_state_dict(
    tensors: dict[str, Tensor], model: nn.Module, where: str = "checkpoint"
) -> dict[str, Tensor]:
    """Map checkpoint tensors onto `model.state_dict()` names; raise `WeightsError` listing every
    missing, unexpected, duplicated and mis-shaped key."""
    expected = model.state_dict()
    matched: dict[str, Tensor] = {}
    source: dict[str, str] = {}
    unexpected: list[str] = []
    duplicated: list[str] = []
    mis_shaped: list[str] = []
    wrong_dtype: list[str] = []
    for key in sorted(tensors):
        name = key.removeprefix(PREFIX)
        tensor = tensors[key]
        if name not in expected:
            if _is_ignored(name):
                logger.debug("ignoring unused checkpoint key %s", key)
            else:
                unexpected.append(f"{key} {tuple(tensor.shape)}")
            continue
        if name in source:
            duplicated.append(f"{name} (as {source[name]} and {key})")
            continue
        source[name] = key
        want = expected[name]
        if tuple(tensor.shape) != tuple(want.shape):
            mis_shaped.append(f"{key}: checkpoint {tuple(tensor.shape)}, model {tuple(want.shape)}")
        elif not tensor.is_floating_point():
            wrong_dtype.append(f"{key}: {tensor.dtype}, expected a floating-point tensor")
        else:
            matched[name] = tensor.to(want.dtype)
    missing = [f"{name} {tuple(expected[name].shape)}" for name in expected if name not in source]
    problems = (
        _section("missing from the checkpoint", missing)
        + _section("unexpected in the checkpoint", unexpected)
        + _section("mis-shaped", mis_shaped)
        + _section("duplicated (with and without the 'bert.' prefix)", duplicated)
        + _section("not floating point", wrong_dtype)
    )
    if problems:
        counts = {
            "missing": missing,
            "unexpected": unexpected,
            "mis-shaped": mis_shaped,
            "duplicated": duplicated,
            "not floating point": wrong_dtype,
        }
        summary = ", ".join(f"{len(v)} {k}" for k, v in counts.items() if v)
        raise WeightsError(
            f"{where} does not match the model ({summary}):\n"
            + "\n".join(problems)
            + "\nCheck that config.json belongs to these weights."
        )
    return matched


@torch.no_grad()
def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a `.safetensors` checkpoint into `model` in place, strictly (see `match_state_dict`)."""
    path = Path(path)
    matched = match_state_dict(read_tensors(path), model, where=str(path))
    model.load_state_dict(matched, strict=True)
    logger.debug("loaded %d tensors from %s", len(matched), path)
