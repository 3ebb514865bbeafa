"""One error for a list of token ids that holds something else, not one per item.

Pydantic checks a `list[int]` item by item and builds an error for each bad one: a 2 MB body of
nested float lists made half a million errors and held the event loop for seconds. This check runs
first, in one pass, and stops at the first item that is not an integer.
"""

from __future__ import annotations

from typing import Any


def integers_only(value: Any) -> Any:
    """`value` unchanged if it is not a list (pydantic reports that) or holds only integers (not
    booleans); else a ValueError naming the first other item."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if type(item) is not int:
                raise ValueError(f"item {i} is not an integer token id ({type(item).__name__})")
    return value
