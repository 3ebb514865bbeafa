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


def reference_match(metadata: dict[str, Any], flt: dict[str, Any]) -> bool:
    """Does `metadata` match `flt`? (`ne`/`nin` match a missing field; nothing else does.)"""
    for field, cond in flt.items():
        have = metadata.get(field, MISSING)
        for op, want in cond.items() if isinstance(cond, dict) else [("eq", cond)]:
            if op == "eq":
                ok = _eq(have, want)
            elif op == "ne":
                ok = not _eq(have, want)
            elif op == "in":
                ok = any(_eq(have, w) for w in want)
            elif op == "nin":
                ok = not any(_eq(have, w) for w in want)
            else:
                ok = (
                    have is not MISSING
                    and isinstance(have, str | int | float)
                    and _same_kind(have, want)
                    and RANGE[op](have, want)
                )
            if not ok:
                return False
    return True
