"""The metadata filter semantics (index/filters.py's docstring) written out plainly in Python: the
brute-force reference the filter tests compare the SQL against. Independent of index/filters.py."""

from __future__ import annotations

import operator
from typing import Any

MISSING = object()
RANGE = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def _same_kind(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return type(a) is type(b)


def _eq(have: Any, want: Any) -> bool:
    return have is not MISSING and _same_kind(have, want) and have == want


def field_keys(field: str) -> list[str]:
    """The keys of a dotted path (`\\` makes the next character literal, a trailing one itself)."""
    keys, key, escaped = [], "", False
    for c in field:
        if escaped:
            key, escaped = key + c, False
        elif c == "\\":
            escaped = True
        elif c == ".":
            keys, key = [*keys, key], ""
        else:
            key += c
    return [*keys, key + ("\\" if escaped else "")]


def literal_field(key: str) -> str:
    """The filter field that names the top-level key `key` itself."""
    escaped = key.replace("\\", "\\\\").replace(".", "\\.")
    return "\\" + escaped if escaped.startswith("$") else escaped


def _lookup(metadata: dict[str, Any], field: str) -> Any:
    """`metadata` at the dotted path `field`, or MISSING."""
    have: Any = metadata
    for k in field_keys(field):
        if not isinstance(have, dict) or k not in have:
            return MISSING
        have = have[k]
    return have


def _condition(have: Any, op: str, want: Any) -> bool:
    if op == "eq":
        return _eq(have, want)
    if op == "ne":
        return not _eq(have, want)
    if op == "in":
        return any(_eq(have, w) for w in want)
    if op == "nin":
        return not any(_eq(have, w) for w in want)
    if op == "exists":
        return (have is not MISSING) == want
    return (
        have is not MISSING
        and isinstance(have, str | int | float)
        and _same_kind(have, want)
        and RANGE[op](have, want)
    )


def reference_match(metadata: dict[str, Any], flt: dict[str, Any]) -> bool:
    """Does `metadata` match `flt`? (`ne`/`nin` match a missing field; nothing else does.)"""
    for key, cond in flt.items():
        if key == "$and":
            ok = all(reference_match(metadata, f) for f in cond)
        elif key == "$or":
            ok = any(reference_match(metadata, f) for f in cond)
        elif key == "$not":
            ok = not reference_match(metadata, cond)
        else:
            have = _lookup(metadata, key)
            pairs = cond.items() if isinstance(cond, dict) else [("eq", cond)]
            ok = all(_condition(have, op, want) for op, want in pairs)
        if not ok:
            return False
    return True
