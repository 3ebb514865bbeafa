"""One check of `semsearch verify`, and the reference implementations the checks compare against.

The references (transformers, sentence-transformers, tokenizers) are test dependencies: imported
only when a check runs, with the install hint when missing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass
class Check:
    """A measured figure against its threshold."""

    name: str
    measured: str
    threshold: str
    passed: bool
    detail: str = ""


def reference_module(module: str) -> Any:
    """Import a reference implementation, or exit with the hint to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"`semsearch verify` compares against {module}, which is not installed: "
            "pip install 'semsearch[test]'"
        ) from exc


__all__ = ["Check", "reference_module"]
