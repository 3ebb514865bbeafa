"""Input files for the batch indexer's tests: JSONL rows, and a small corpus with metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORDS = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "zeta"]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """One row a line: a str as it is (a malformed line), anything else as JSON."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def docs(n: int) -> list[dict[str, Any]]:
    """`doc0` ... `doc{n-1}`: two of eight words and the row's number, `lang` in 0, 1, 2."""
    return [
        {"id": f"doc{i}", "text": f"{WORDS[i % 8]} {WORDS[i * 3 % 8]} number {i}", "lang": i % 3}
        for i in range(n)
    ]
