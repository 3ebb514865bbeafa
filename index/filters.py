"""Metadata filters (API.md): `{"f": value}`, `{"f": {"in": [...]}}`, `{"f": {"gte": x}}`...

Validated once, then compiled to an SQL condition over the JSON `metadata` column, so the store
returns exactly the matching documents (pre-filtering). Typing is strict, like Python's `==` minus
bool/int mixing: a string never equals a number, `true` never equals 1, and range operators compare
numbers with numbers and strings with strings only. `ne` and `nin` also match documents that lack
the field; every other operator requires it.

No caller string is ever part of the SQL text: field names become JSON paths and values, both
bound as parameters. The SQL's size is bounded too: at most `max_conditions` conditions (an
`in`/`nin` item counts as one), each a few parameters, an `in` list one `IN (...)` per JSON type
and the conditions joined as a balanced tree, far inside SQLite's expression-depth limit.
"""

from __future__ import annotations

import math
from typing import Any

from semsearch.index.documents import INT64_MAX, INT64_MIN
from semsearch.index.errors import FilterError, shown
from semsearch.index.limits import Limits
from semsearch.index.store import json_key_path

RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OPERATORS = ("eq", "ne", "in", "nin", *RANGE_OPS)
Scalar = str | int | float | bool | None
MAX_FIELD_CHARS = 256  # metadata keys worth filtering on are short; this bounds the path work
_NUMBER = "IN ('integer', 'real')"  # json_type of a JSON number


def _bad_value(field: str, op: str, value: Any) -> FilterError:
    return FilterError(f"filter on {shown(field)}: {shown(op)} cannot take {shown(value)}")


def _check_value(field: str, op: str, value: Any) -> None:
    """Refuse what SQLite cannot compare exactly: NaN/infinity, integers past 64 bits, and
    strings with lone surrogates (no UTF-8 form)."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise FilterError(
                f"filter on {shown(field)}: {value} is outside the signed 64-bit integer range"
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(
                f"filter on {shown(field)}: {shown(op)} takes finite numbers, got {shown(value)}"
            )
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_value(field, op, value) from None


def _check_scalar(field: str, op: str, value: Any) -> None:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise FilterError(
            f"filter on {shown(field)}: {shown(op)} takes a string, number, boolean or null, "
            f"got {type(value).__name__} {shown(value)}"
        )
    _check_value(field, op, value)


def _check_field(field: Any) -> None:
    if not isinstance(field, str) or not field:
        raise FilterError(f"filter field names must be non-empty strings, got {shown(field)}")
    if len(field) > MAX_FIELD_CHARS:
        raise FilterError(
            f"filter field {shown(field)} is longer than {MAX_FIELD_CHARS} characters"
        )
    if json_key_path(field) is None:
        raise FilterError(
            f"filter field {shown(field)} cannot be addressed by this SQLite's JSON paths "
            "(a key holding both '\"' and '.' or '[' needs SQLite 3.45 or later)"
        )


def normalize(flt: Any, max_conditions: int | None = None) -> list[tuple[str, str, Any]]:
    """`[(field, op, value), ...]` from a filter dict; FilterError naming the bad part otherwise.

    More than `max_conditions` conditions (default `Limits().max_filter_conditions`; each
    `in`/`nin` item counts as one) is a FilterError, raised before the rest is looked at."""
    if flt is None:
        return []
    if not isinstance(flt, dict):
        raise FilterError(f"a filter must be a JSON object of field conditions, got {shown(flt)}")
    limit = Limits().max_filter_conditions if max_conditions is None else max_conditions
    clauses: list[tuple[str, str, Any]] = []
    count = 0

    def counted(n: int) -> None:
        nonlocal count
        count += n
        if count > limit:
            raise FilterError(
                f"the filter has more than {limit} conditions (an 'in'/'nin' item counts as "
                "one; SEMSEARCH_MAX_FILTER_CONDITIONS)"
            )

    for field, cond in flt.items():
        _check_field(field)
        if not isinstance(cond, dict):
            counted(1)
            _check_scalar(field, "eq", cond)
            clauses.append((field, "eq", cond))
            continue
        if not cond:
            raise FilterError(f"filter on {shown(field)}: empty condition object")
        for op, value in cond.items():
            if op not in OPERATORS:
                raise FilterError(
                    f"filter on {shown(field)}: unknown operator {shown(op)}; "
                    f"use one of {', '.join(OPERATORS)}"
                )
            if op in ("in", "nin"):
                if not isinstance(value, list) or not value:
                    raise FilterError(
                        f"filter on {shown(field)}: {shown(op)} takes a non-empty list, "
                        f"got {shown(value)}"
                    )
                counted(len(value))
                for item in value:
                    _check_scalar(field, op, item)
            elif op in RANGE_OPS:
                counted(1)
                if isinstance(value, bool) or not isinstance(value, int | float | str):
                    raise FilterError(
                        f"filter on {shown(field)}: {shown(op)} takes a number or a string, "
                        f"got {shown(value)}"
                    )
                _check_value(field, op, value)
            else:
                counted(1)
                _check_scalar(field, op, value)
            clauses.append((field, op, value))
    return clauses


def _compare(path: str, sql_op: str, values: list[Any], json_type: str) -> tuple[str, list[Any]]:
    """`metadata[field] <op> value(s)`, only for values of one JSON type."""
    if len(values) == 1:
        rhs = f"{sql_op} ?"
    else:
        rhs = f"IN ({', '.join('?' * len(values))})"
    # Value test first: AND short-circuits, so the type test runs only on the few rows that pass
    # (json_extract gives true as 1, and an array or object as its JSON text).
    sql = f"(json_extract(metadata, ?) {rhs} AND json_type(metadata, ?) {json_type})"
    return sql, [path, *values, path]


def _one_of(path: str, values: list[Scalar]) -> tuple[str, list[Any]]:
    """SQL for `metadata[field]` equal to one of `values`, JSON types kept apart (true is not 1):
    one `IN (...)` per type, so a long list is one flat expression, not a deep OR chain."""
    strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    numbers = list(
        dict.fromkeys(v for v in values if isinstance(v, int | float) and not isinstance(v, bool))
    )
    flags = sorted({"'true'" if v else "'false'" for v in values if isinstance(v, bool)})
    alts: list[tuple[str, list[Any]]] = []
    if strings:
        alts.append(_compare(path, "=", strings, "= 'text'"))
    if numbers:
        alts.append(_compare(path, "=", numbers, _NUMBER))
    if flags:
        alts.append((f"json_type(metadata, ?) IN ({', '.join(flags)})", [path]))
    if any(v is None for v in values):
        alts.append(("json_type(metadata, ?) = 'null'", [path]))
    sql = " OR ".join(s for s, _ in alts)
    return (f"({sql})" if len(alts) > 1 else sql), [x for _, ps in alts for x in ps]


def _balanced(parts: list[str], joiner: str) -> str:
    """`parts` joined by `joiner` as a balanced tree: depth log2(n), not n (SQLite refuses an
    expression deeper than 1000). Textual order is kept, so the parameters stay aligned."""
    if len(parts) == 1:
        return parts[0]
    mid = len(parts) // 2
    return f"({_balanced(parts[:mid], joiner)} {joiner} {_balanced(parts[mid:], joiner)})"


def to_sql(flt: Any, max_conditions: int | None = None) -> tuple[str, list[Any]]:
    """`(where_sql, params)` over a JSON `metadata` column; `("1", [])` for no filter."""
    parts: list[str] = []
    params: list[Any] = []
    for field, op, value in normalize(flt, max_conditions):
        path = json_key_path(field)
        assert path is not None  # normalize refused the fields without one
        if op in ("eq", "ne"):
            sql, p = _one_of(path, [value])
        elif op in ("in", "nin"):
            sql, p = _one_of(path, value)
        else:
            kind = "= 'text'" if isinstance(value, str) else _NUMBER
            sql, p = _compare(path, RANGE_OPS[op], [value], kind)
        if op in ("ne", "nin"):
            # A missing field makes the inner test NULL (not false); COALESCE so NOT matches it.
            sql = f"NOT COALESCE({sql}, 0)"
        parts.append(sql)
        params.extend(p)
    return (_balanced(parts, "AND") if parts else "1"), params
