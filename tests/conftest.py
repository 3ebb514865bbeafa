"""Test-wide setup: model files come from the repository's `models/` (what `make setup` builds),
and tests are marked by their folder (`unit`, `conformance`, `integration`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# `make` sets these too; pytest run by hand gets the same files. No test writes to the data dir:
# collections live in tmp_path.
os.environ.setdefault("SEMSEARCH_MODELS_DIR", str(REPO / "models"))
os.environ.setdefault("SEMSEARCH_DATA_DIR", str(REPO / "data"))

FOLDERS = ("unit", "conformance", "integration")
_FOLDER_MARKS = {name: getattr(pytest.mark, name) for name in FOLDERS}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.path)).relative_to(REPO / "tests").parts[0]
        if folder in _FOLDER_MARKS:
            item.add_marker(_FOLDER_MARKS[folder])
