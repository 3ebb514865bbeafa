"""Metadata filters (API.md): `{"f": value}`, `{"f": {"in": [...]}}`, `{"f": {"gte": x}}`,
`{"f": {"exists": true}}`, dotted paths into nested objects (`{"author.name": "Ada"}`; `\\.` is a
literal dot), and the combinators `{"$and": [...]}`, `{"$or": [...]}`, `{"$not": {...}}`. The
fields of one object are ANDed.

Validated once into a tree, then compiled to an SQL condition over the JSON `metadata` column, so
the store returns exactly the matching documents (pre-filtering). Typing is strict, like Python's
`==` minus bool/int mixing: a string never equals a number, `true` never equals 1, and range
operators compare numbers with numbers and strings with strings only. `ne` and `nin` also match
documents that lack the field; every other operator requires it. Every condition under a `$not` is
true or false, never SQL's NULL, so `$not` matches exactly the documents its filter does not.

No caller string is ever part of the SQL text: field paths become JSON paths and values, both
bound as parameters, except the path of a field declared for an expression index, which is written
as an escaped SQL literal (SQLite matches an index only to the same expression). The SQL's size
is bounded too: at most `max_conditions` conditions (an `in`/`nin` item counts as one) nested at
most MAX_DEPTH combinators deep, each a few parameters, an `in` list one `IN (...)` per JSON type
and a group's members joined as a balanced tree, far inside SQLite's expression-depth limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from semsearch.index.documents import INT64_MAX, INT64_MIN
from semsearch.index.errors import FilterError, shown
from semsearch.index.json_paths import json_nested_path
from semsearch.index.limits import Limits

RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OPERATORS = ("eq", "ne", "in", "nin", *RANGE_OPS, "exists")
COMBINATORS = ("$and", "$or", "$not")
Scalar = str | int | float | bool | None
MAX_FIELD_CHARS = 256  # metadata keys worth filtering on are short; this bounds the path work
MAX_DEPTH = 16  # $and / $or / $not nested in one another
_NUMBER = "IN ('integer', 'real')"  # json_type of a JSON number


@dataclass(frozen=True)
class Condition:
    field: str  # as the caller wrote it, for messages
    path: str  # its SQLite JSON path (bound as a parameter)
    op: str
    value: Any


@dataclass(frozen=True)
class Group:
    kind: str  # "AND" | "OR"
    members: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    member: Node


Node = Condition | Group | Not


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


def field_keys(field: str) -> tuple[str, ...]:
    """`"a.b"` -> ("a", "b"): the keys of a dotted path; a backslash makes the next character
    literal (`"a\\.b"` is the one key "a.b"). An empty key is a FilterError."""
    keys: list[str] = []
    current: list[str] = []
    chars = iter(field)
    for c in chars:
        if c == "\\":
            current.append(next(chars, "\\"))
        elif c == ".":
            keys.append("".join(current))
            current = []
        else:
            current.append(c)
    keys.append("".join(current))
    if not all(keys):
        raise FilterError(
            f"filter field {shown(field)} has an empty key: a path is keys joined by '.' "
            "(write a literal dot as '\\.')"
        )
    return tuple(keys)


def field_path(field: Any) -> str:
    """The SQLite JSON path of a filter field (`"author.name"`); FilterError if it has none."""
    return _path(field)


def _path(field: Any) -> str:
    if not isinstance(field, str) or not field:
        raise FilterError(f"filter field names must be non-empty strings, got {shown(field)}")
    if len(field) > MAX_FIELD_CHARS:
        raise FilterError(
            f"filter field {shown(field)} is longer than {MAX_FIELD_CHARS} characters"
        )
    if field.startswith("$"):
        raise FilterError(
            f"unknown combinator {shown(field)}; use one of {', '.join(COMBINATORS)} (a metadata "
            "key that begins with '$' is written '\\$...')"
        )
    path = json_nested_path(field_keys(field))
    if path is None:
        raise FilterError(
            f"filter field {shown(field)} cannot be addressed by this SQLite's JSON paths "
            "(a key holding both '\"' and '.' or '[' needs SQLite 3.45 or later)"
        )
    return path


class _Parser:
    """One filter's validation: counts its conditions against the limit as it goes, so a huge
    filter is refused before the rest of it is looked at."""

    def __init__(self, max_conditions: int) -> None:
        self.limit = max_conditions
        self.count = 0

    def counted(self, n: int) -> None:
        self.count += n
        if self.count > self.limit:
            raise FilterError(
                f"the filter has more than {self.limit} conditions (an 'in'/'nin' item counts as "
                "one; SEMSEARCH_MAX_FILTER_CONDITIONS)"
            )

    def filter(self, flt: Any, depth: int) -> Node:
        """A filter object: its entries ANDed."""
        if not isinstance(flt, dict):
            raise FilterError(
                f"a filter must be a JSON object of field conditions, got {shown(flt)}"
            )
        if not flt:
            raise FilterError("a filter inside $and, $or or $not must not be empty")
        if depth > MAX_DEPTH:
            raise FilterError(f"the filter nests $and, $or and $not more than {MAX_DEPTH} deep")
        members: list[Node] = []
        for key, value in flt.items():
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not value:
                    raise FilterError(
                        f"{key} takes a non-empty list of filters, got {shown(value)}"
                    )
                kind = "AND" if key == "$and" else "OR"
                members.append(Group(kind, tuple(self.filter(f, depth + 1) for f in value)))
            elif key == "$not":
                members.append(Not(self.filter(value, depth + 1)))
            else:
                members.extend(self.field(key, value))
        return members[0] if len(members) == 1 else Group("AND", tuple(members))

    def field(self, field: str, cond: Any) -> list[Node]:
        path = _path(field)
        if not isinstance(cond, dict):
            self.counted(1)
            _check_scalar(field, "eq", cond)
            return [Condition(field, path, "eq", cond)]
        if not cond:
            raise FilterError(f"filter on {shown(field)}: empty condition object")
        out: list[Node] = []
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
                self.counted(len(value))
                for item in value:
                    _check_scalar(field, op, item)
            elif op in RANGE_OPS:
                self.counted(1)
                if isinstance(value, bool) or not isinstance(value, int | float | str):
                    raise FilterError(
                        f"filter on {shown(field)}: {shown(op)} takes a number or a string, "
                        f"got {shown(value)}"
                    )
                _check_value(field, op, value)
            elif op == "exists":
                self.counted(1)
                if not isinstance(value, bool):
                    raise FilterError(
                        f"filter on {shown(field)}: 'exists' takes true or false, "
                        f"got {shown(value)}"
                    )
            else:
                self.counted(1)
                _check_scalar(field, op, value)
            out.append(Condition(field, path, op, value))
        return out


def parse(flt: Any, max_conditions: int | None = None) -> Node | None:
    """The filter as a tree (None for no filter); FilterError naming the bad part otherwise.

    More than `max_conditions` conditions (default `Limits().max_filter_conditions`; each
    `in`/`nin` item counts as one) is a FilterError, raised before the rest is looked at."""
    if flt is None:
        return None
    if isinstance(flt, dict) and not flt:
        return None  # {}: no condition, every document
    limit = Limits().max_filter_conditions if max_conditions is None else max_conditions
    return _Parser(limit).filter(flt, 0)


def sql_literal(path: str) -> str:
    """An indexed field's JSON path as an SQL string literal (SQLite matches an expression index
    only to the same expression, so a bound `?` cannot use one). Declared paths hold no NUL."""
    if "\x00" in path:
        raise FilterError("a field whose path holds a NUL character cannot be indexed")
    return "'" + path.replace("'", "''") + "'"


def _extract(path: str, indexed: frozenset[str]) -> tuple[str, list[Any]]:
    """`json_extract` of the field: the path bound as a parameter, or inlined when an expression
    index covers it."""
    if path in indexed:
        return f"json_extract(metadata, {sql_literal(path)})", []
    return "json_extract(metadata, ?)", [path]


def _compare(
    path: str, sql_op: str, values: list[Any], json_type: str, indexed: frozenset[str]
) -> tuple[str, list[Any]]:
    """`metadata[field] <op> value(s)`, only for values of one JSON type."""
    if len(values) == 1:
        rhs = f"{sql_op} ?"
    else:
        rhs = f"IN ({', '.join('?' * len(values))})"
    # Value test first: AND short-circuits, so the type test runs only on the few rows that pass
    # (json_extract gives true as 1, and an array or object as its JSON text).
    extract, params = _extract(path, indexed)
    sql = f"({extract} {rhs} AND json_type(metadata, ?) {json_type})"
    return sql, [*params, *values, path]


def _one_of(path: str, values: list[Scalar], indexed: frozenset[str]) -> tuple[str, list[Any]]:
    """SQL for `metadata[field]` equal to one of `values`, JSON types kept apart (true is not 1):
    one `IN (...)` per type, so a long list is one flat expression, not a deep OR chain."""
    strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    numbers = list(
        dict.fromkeys(v for v in values if isinstance(v, int | float) and not isinstance(v, bool))
    )
    flags = sorted({"'true'" if v else "'false'" for v in values if isinstance(v, bool)})
    alts: list[tuple[str, list[Any]]] = []
    if strings:
        alts.append(_compare(path, "=", strings, "= 'text'", indexed))
    if numbers:
        alts.append(_compare(path, "=", numbers, _NUMBER, indexed))
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


def _condition_sql(c: Condition, indexed: frozenset[str], negated: bool) -> tuple[str, list[Any]]:
    """A condition as SQL. Under a NOT (`negated`) it must be 1 or 0, never NULL; elsewhere NULL
    counts as false already, and the bare comparison lets SQLite use an expression index."""
    if c.op == "exists":
        return f"json_type(metadata, ?) IS {'NOT ' if c.value else ''}NULL", [c.path]
    if c.op in ("eq", "ne"):
        sql, params = _one_of(c.path, [c.value], indexed)
    elif c.op in ("in", "nin"):
        sql, params = _one_of(c.path, c.value, indexed)
    else:
        kind = "= 'text'" if isinstance(c.value, str) else _NUMBER
        sql, params = _compare(c.path, RANGE_OPS[c.op], [c.value], kind, indexed)
    # A missing field makes the test NULL (not false): COALESCE so NOT sees a 0.
    if c.op in ("ne", "nin"):
        return f"NOT COALESCE({sql}, 0)", params
    return (f"COALESCE({sql}, 0)" if negated else sql), params


def _node_sql(node: Node, indexed: frozenset[str], negated: bool) -> tuple[str, list[Any]]:
    if isinstance(node, Condition):
        return _condition_sql(node, indexed, negated)
    if isinstance(node, Not):
        sql, params = _node_sql(node.member, indexed, True)
        return f"NOT ({sql})", params
    parts = [_node_sql(m, indexed, negated) for m in node.members]
    return _balanced([s for s, _ in parts], node.kind), [p for _, ps in parts for p in ps]


def to_sql(
    flt: Any, max_conditions: int | None = None, indexed: frozenset[str] = frozenset()
) -> tuple[str, list[Any]]:
    """`(where_sql, params)` over a JSON `metadata` column; `("1", [])` for no filter. `indexed`:
    the JSON paths an expression index covers (their conditions are written so it is used)."""
    tree = parse(flt, max_conditions)
    return ("1", []) if tree is None else _node_sql(tree, indexed, False)
