"""Where semsearch keeps its files when no flag or variable says otherwise.

Everything lives under one data directory per user, never under the source tree (an installed
package has none): `$SEMSEARCH_DATA_DIR`, else `$XDG_DATA_HOME/semsearch`, else
`~/.local/share/semsearch`. Model files live in its `models/` (or `$SEMSEARCH_MODELS_DIR`):
`onnx/` (what `semsearch export` writes) and the decoder's GGUF. `make` points both variables at
the repository's `models/` and `data/`.

Each function reads the environment when called, never at import (the service's settings call
them when they are built).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DATA_DIR_ENV = "SEMSEARCH_DATA_DIR"
MODELS_DIR_ENV = "SEMSEARCH_MODELS_DIR"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A named collection's directory is its name as it is: letters, digits, `_` and `-` only, so no
# name reaches outside the collections directory.
COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# On the Qdrant store, the default collection is the Qdrant collection SEMSEARCH_QDRANT_COLLECTION
# (which may not hold this separator) and a named one `<that>__<name>`.
QDRANT_SEPARATOR = "__"


def qdrant_collection(base: str, name: str) -> str:
    """The Qdrant collection of the collection `name` ("default" or a COLLECTION_NAME)."""
    return base if name == "default" else f"{base}{QDRANT_SEPARATOR}{name}"


def _from_env(name: str) -> Path | None:
    value = os.environ.get(name)  # an empty variable counts as unset
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    """The per-user data directory (collections, and models unless placed elsewhere)."""
    if (path := _from_env(DATA_DIR_ENV)) is not None:
        return path
    return (_from_env("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "semsearch"


def models_dir() -> Path:
    """Model files: the ONNX artifacts (`onnx/`) and the decoder's GGUF."""
    return _from_env(MODELS_DIR_ENV) or data_dir() / "models"


def onnx_dir() -> Path:
    return models_dir() / "onnx"


def gguf_path() -> Path:
    return models_dir() / GGUF_NAME


def index_dir() -> Path:
    return data_dir() / "index"
