"""The metadata filter language (index/filters.py) as a Qdrant filter with the same matches.

The filter is validated by `index.filters.parse`, the local store's own parser (same limits,
same messages), then each node is translated over the payload layout of index/qdrant/payload.py:

- a string or boolean equals: `match` on the field in the view (exact, typed: true is not 1);
- a number equals: `range` gte = lte = the number, which holds for integers and floats alike
  (1 == 1.0, as locally) and never for booleans or strings; a `match` would miss 1.0;
- null equals, and `exists`: a keyword match on the document's path tokens;
- `in`: any of the above; `ne`, `nin` and `$not`: `must_not`, true for a missing field, as
  locally; `$and`: `must`; `$or`: `should`; numeric `gt`/`gte`/`lt`/`lte`: `range`.

Refused with FilterError, since Qdrant cannot do them exactly: ranges over strings (Qdrant orders
numbers and datetimes only), and integers beyond ±2^53 (Qdrant compares numbers as 64-bit floats).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import models

from semsearch.index import filters
from semsearch.index.errors import FilterError, shown
from semsearch.index.qdrant.ids import SETTINGS_POINT
from semsearch.index.qdrant.payload import (
    EXACT_INT,
    FAMILY,
    PATHS,
    null_token,
    present_token,
    view_path,
)

Condition = models.FieldCondition | models.Filter


def _number(c: filters.Condition, value: int | float) -> float:
    if isinstance(value, int) and abs(value) > EXACT_INT:
        raise FilterError(
            f"filter on {shown(c.field)}: {value} is beyond ±2^53; the Qdrant store compares "
            "numbers as 64-bit floats, which cannot hold it exactly"
        )
    return float(value)


def _token(token: str) -> models.FieldCondition:
    return models.FieldCondition(key=PATHS, match=models.MatchValue(value=token))


def _any(members: list[Condition]) -> Condition:
    return members[0] if len(members) == 1 else models.Filter(should=members)


def _one_of(c: filters.Condition, keys: tuple[str, ...], values: list[Any]) -> Condition:
    """The field equals one of `values`, each compared within its own JSON type."""
    key = view_path(keys)
    strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    flags = sorted({v for v in values if isinstance(v, bool)})
    numbers = list(
        dict.fromkeys(
            _number(c, v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)
        )
    )
    alts: list[Condition] = []
    if len(strings) == 1:
        alts.append(models.FieldCondition(key=key, match=models.MatchValue(value=strings[0])))
    elif strings:
        alts.append(models.FieldCondition(key=key, match=models.MatchAny(any=strings)))
    alts += [models.FieldCondition(key=key, match=models.MatchValue(value=f)) for f in flags]
    alts += [models.FieldCondition(key=key, range=models.Range(gte=x, lte=x)) for x in numbers]
    if any(v is None for v in values):
        alts.append(_token(null_token(keys)))
    return _any(alts)


def _condition(c: filters.Condition) -> Condition:
    keys = filters.field_keys(c.field)
    if c.op == "exists":
        found = _token(present_token(keys))
        return found if c.value else models.Filter(must_not=[found])
    if c.op in ("eq", "in", "ne", "nin"):
        values = c.value if c.op in ("in", "nin") else [c.value]
        matched = _one_of(c, keys, values)
        return models.Filter(must_not=[matched]) if c.op in ("ne", "nin") else matched
    if isinstance(c.value, str):
        raise FilterError(
            f"filter on {shown(c.field)}: {c.op!r} with the string {shown(c.value)} needs an "
            "ordering of text, which the Qdrant store does not have (it orders numbers only); "
            "use the local store for ranges over strings"
        )
    bound = models.Range(**{c.op: _number(c, c.value)})
    return models.FieldCondition(key=view_path(keys), range=bound)


def _node(node: filters.Node) -> Condition:
    if isinstance(node, filters.Condition):
        return _condition(node)
    if isinstance(node, filters.Not):
        return models.Filter(must_not=[_node(node.member)])
    members = [_node(m) for m in node.members]
    return models.Filter(must=members) if node.kind == "AND" else _any(members)


def to_qdrant(flt: Any, max_conditions: int | None = None) -> Condition | None:
    """The Qdrant condition matching what `flt` matches locally; None for no filter.
    FilterError for a malformed filter (as locally) or one Qdrant cannot match exactly."""
    tree = filters.parse(flt, max_conditions)
    return None if tree is None else _node(tree)


def without_settings(condition: Condition | None) -> models.Filter:
    """`condition` (None: every document) as a filter that also leaves the settings point out."""
    return models.Filter(
        must=[condition] if condition is not None else None,
        must_not=[models.HasIdCondition(has_id=[SETTINGS_POINT])],
    )


def family_in(parents: Sequence[str]) -> models.FieldCondition:
    """Every stored form of these documents: each one itself, and its chunks."""
    return models.FieldCondition(key=FAMILY, match=models.MatchAny(any=list(parents)))
