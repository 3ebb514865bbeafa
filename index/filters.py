"""Metadata filters (API.md): `{"f": value}`, `{"f": {"in": [...]}}`, `{"f": {"gte": x}}`...

Validated once, then compiled to an SQL condition over the JSON `metadata` column, so the store
returns exactly the matching documents (pre-filtering). Typing is strict, like Python's `==` minus
bool/int mixing: a string never equals a number, `true` never equals 1, and range operators compare
numbers with numbers and strings with strings only. `ne` and `nin` also match documents that lack
the field; every other operator requires it.
"""

from __future__ import annotations

from typing import Any

from index.errors import FilterError

RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OPERATORS = ("eq", "ne", "in", "nin", *RANGE_OPS)
Scalar = str | int | float | bool | None


def _check_scalar(field: str, op: str, value: Any) -> None:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise FilterError(
            f"filter on {field!r}: {op!r} takes a string, number, boolean or null, "
            f"got {type(value).__name__} {value!r}"
        )


def _check_field(field: Any) -> None:
    if not isinstance(field, str) or not field:
        raise FilterError(f"filter field names must be non-empty strings, got {field!r}")
    if '"' in field or "\\" in field:
        raise FilterError(f"filter field {field!r}: '\"' and '\\' are not allowed in field names")


def normalize(flt: Any) -> list[tuple[str, str, Any]]:
    """`[(field, op, value), ...]` from a filter dict; FilterError naming the bad part otherwise."""
    if flt is None:
        return []
    if not isinstance(flt, dict):
        raise FilterError(f"a filter must be a JSON object of field conditions, got {flt!r}")
    clauses: list[tuple[str, str, Any]] = []
    for field, cond in flt.items():
        _check_field(field)
        if not isinstance(cond, dict):
            _check_scalar(field, "eq", cond)
            clauses.append((field, "eq", cond))
            continue
        if not cond:
            raise FilterError(f"filter on {field!r}: empty condition object")
        for op, value in cond.items():
            if op not in OPERATORS:
                raise FilterError(
                    f"filter on {field!r}: unknown operator {op!r}; "
                    f"use one of {', '.join(OPERATORS)}"
                )
            if op in ("in", "nin"):
                if not isinstance(value, list) or not value:
                    raise FilterError(
                        f"filter on {field!r}: {op!r} takes a non-empty list, got {value!r}"
                    )
                for item in value:
                    _check_scalar(field, op, item)
            elif op in RANGE_OPS:
                if isinstance(value, bool) or not isinstance(value, int | float | str):
                    raise FilterError(
                        f"filter on {field!r}: {op!r} takes a number or a string, got {value!r}"
                    )
            else:
                _check_scalar(field, op, value)
            clauses.append((field, op, value))
    return clauses


def _typed_equals(path: str, value: Scalar) -> tuple[str, list[Any]]:
    """SQL for `metadata[field] == value` with JSON types kept apart (true is not 1)."""
    if value is None:
        return f"json_type(metadata, '{path}') = 'null'", []
    if isinstance(value, bool):
        return f"json_type(metadata, '{path}') = '{'true' if value else 'false'}'", []
    if isinstance(value, str):
        # SQLite never equates TEXT with a number (json_extract gives true as 1): no type test.
        return f"json_extract(metadata, '{path}') = ?", [value]
    # Value test first: AND short-circuits, so the type test runs only on the few rows that pass.
    return (
        f"(json_extract(metadata, '{path}') = ? "
        f"AND json_type(metadata, '{path}') IN ('integer', 'real'))",
        [value],
    )


def to_sql(flt: Any, max_conditions: int | None = None) -> tuple[str, list[Any]]:
    """`(where_sql, params)` over a JSON `metadata` column; `("1", [])` for no filter."""
    parts: list[str] = []
    params: list[Any] = []
    for field, op, value in normalize(flt):
        path = f'$."{field}"'
        if op == "eq":
            sql, p = _typed_equals(path, value)
        elif op in ("in", "nin"):
            alts = [_typed_equals(path, v) for v in value]
            sql = "(" + " OR ".join(s for s, _ in alts) + ")"
            p = [x for _, ps in alts for x in ps]
        elif op == "ne":
            sql, p = _typed_equals(path, value)
        else:
            kind = "= 'text'" if isinstance(value, str) else "IN ('integer', 'real')"
            sql = (
                f"(json_extract(metadata, '{path}') {RANGE_OPS[op]} ? "
                f"AND json_type(metadata, '{path}') {kind})"
            )
            p = [value]
        if op in ("ne", "nin"):
            # A missing field makes the inner test NULL (not false); COALESCE so NOT matches it.
            sql = f"NOT COALESCE({sql}, 0)"
        parts.append(sql)
        params.extend(p)
    return (" AND ".join(parts) if parts else "1"), params
