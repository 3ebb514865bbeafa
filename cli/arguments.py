"""Flags several commands share, the value types argparse checks, and help text that names each
setting's default and its SEMSEARCH_* variable, both read from `service/settings.py`."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

from semsearch.cli.exits import UsageError
from semsearch.paths import COLLECTION_NAME
from semsearch.service.settings import BACKENDS, Settings


def env_name(field: str) -> str:
    """The environment variable of a setting: `index_dir` -> `SEMSEARCH_INDEX_DIR`."""
    return f"{Settings.model_config['env_prefix']}{field.upper()}"


def setting_help(what: str, field: str, default: str | None = None) -> str:
    """`what (default: $SEMSEARCH_<FIELD>, else <the setting's default>)`.

    `default` words a default that is None in the settings ("the runtime's")."""
    if default is None:
        default = str(getattr(_defaults(), field))
    return f"{what} (default: {env_name(field)}, else {default})".replace("%", "%%")


@functools.cache
def _defaults() -> Settings:
    """The settings' defaults, no SEMSEARCH_* variable applied (path defaults follow
    SEMSEARCH_DATA_DIR / SEMSEARCH_MODELS_DIR, as they do in the service)."""
    return Settings.model_construct()


def settings_from(args: argparse.Namespace, *names: str) -> Settings:
    """Flags that were given override SEMSEARCH_* variables, which override the settings file
    (SEMSEARCH_CONFIG, or a `config` flag), which overrides defaults."""
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return Settings(**given)


# --- value types: argparse reports a bad value as a usage error (exit 2) -------------------------


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def port(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 1-65535, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):  # `not >`: NaN fails it too
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


# --- shared flags --------------------------------------------------------------------------------


def add_index_dir_flag(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--index-dir", type=Path, help=setting_help("collection directory", "index_dir")
    )
    where.add_argument(
        "--collection",
        metavar="NAME",
        help="a named collection (the server's /collections/NAME) in the collections directory "
        "(default: the default collection, --index-dir)",
    )


def index_dir(args: argparse.Namespace) -> Path:
    """The local collection the command works on; with SEMSEARCH_STORE=qdrant, a usage error
    (only `index build` writes to Qdrant; the server answers for its collections)."""
    if Settings().store == "qdrant":
        raise UsageError(
            f"{getattr(args, 'prog', 'this command')} works on local collections and "
            "SEMSEARCH_STORE is qdrant: ask the server (GET /collections, POST /search), or "
            "unset SEMSEARCH_STORE"
        )
    name = getattr(args, "collection", None)
    if name is not None and name != "default":
        if not COLLECTION_NAME.fullmatch(name):
            raise UsageError(
                f"--collection {name[:80]!r}: 1 to 64 letters, digits, '_' and '-', starting "
                "with a letter or digit"
            )
        return Settings().collections_root() / name
    return args.index_dir if args.index_dir is not None else Settings().index_dir


def add_encoder_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, help=setting_help("encoder backend", "backend"))
    p.add_argument(
        "--model-dir",
        type=Path,
        help=setting_help(
            "sentence-transformers model directory",
            "model_dir",
            "the artifacts' onnx/model/ copy (ONNX backends), else the packaged all-MiniLM-L6-v2",
        ),
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        help=setting_help("encoder threads", "threads", "the runtime's default"),
    )


def load_embedder(args: argparse.Namespace) -> Any:
    """The encoder the flags name, else the settings (the ONNX options always from them)."""
    from semsearch.service.encoders import load_configured_embedder

    return load_configured_embedder(
        backend=args.backend, model_dir=args.model_dir, threads=args.threads
    )
