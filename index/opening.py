"""Opening a collection directory: finish or undo an interrupted swap, share `open.lock`, and
settle the manifest (dimension, encoder fingerprint, index settings) before any index is loaded.

Kept apart from `Collection` so that the class holds the running state and this file the rules
for what a directory may contain when it is opened.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from semsearch.index.config import IndexConfig, normalize_type
from semsearch.index.errors import (
    DimensionMismatch,
    FingerprintMismatch,
    InvalidArgument,
    KeywordIndexMissing,
    LockTimeout,
    NotFound,
)
from semsearch.index.limits import Limits
from semsearch.index.locking import OpenHold, hold_open, writer_lock
from semsearch.index.persistence import (
    Manifest,
    read_manifest,
    recover_swap,
    remove_stale_temps,
    write_manifest,
)
from semsearch.index.store import Store

log = logging.getLogger(__name__)


def hold_directory(directory: Path, read_only: bool, timeout_s: float) -> OpenHold:
    """Recover an interrupted swap, then share `open.lock` (see the module docstring).

    Looped: a crash mid-swap can make the directory vanish between the two steps."""
    deadline = time.monotonic() + timeout_s
    while True:
        recover_swap(directory, max(0.0, deadline - time.monotonic()), read_only)
        if read_only and read_manifest(directory) is None:
            raise NotFound(f"no collection in {directory} (no {directory / 'manifest.json'})")
        if not read_only:
            directory.mkdir(parents=True, exist_ok=True)
        hold = hold_open(directory, max(0.0, deadline - time.monotonic()))
        if hold is not None:
            return hold
        if time.monotonic() >= deadline:
            raise LockTimeout(f"{directory} kept vanishing while being opened (a reindex swap?)")


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    """`key: old -> new` for each key of two encoder fingerprints that differs."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def check_compatible(
    manifest: Manifest, directory: Path, dim: int | None, fingerprint: dict[str, Any] | None
) -> None:
    if dim is not None and manifest.dim is not None and dim != manifest.dim:
        raise DimensionMismatch(
            f"the collection in {directory} holds {manifest.dim}-dimensional vectors, the encoder "
            f"makes {dim}; use the encoder it was built with, or rebuild it with --reindex"
        )
    old = manifest.encoder_fingerprint
    if fingerprint is not None and old is not None and fingerprint != old:
        raise FingerprintMismatch(
            f"the collection in {directory} was built with another encoder "
            f"({fingerprint_diff(old, fingerprint)}); its vectors "
            "are not comparable. Use the original encoder, or re-embed with "
            "`semsearch index build --reindex`."
        )


def resolve_manifest(
    directory: Path,
    dim: int | None,
    encoder_fingerprint: dict[str, Any] | None,
    index_type: str | None,
    config: IndexConfig | None,
    read_only: bool,
    index_options: dict[str, Any] | None,
    limits: Limits,
) -> tuple[Manifest, IndexConfig]:
    """The manifest (checked against `dim` and `encoder_fingerprint`, updated with the requested
    settings and written back when it changed) and the index settings this handle uses."""
    if read_only:
        manifest = read_manifest(directory)
        if manifest is None:
            raise NotFound(f"no collection in {directory} (no {directory / 'manifest.json'})")
        check_compatible(manifest, directory, dim, encoder_fingerprint)
    else:
        with writer_lock(directory, limits.lock_timeout_s):
            remove_stale_temps(directory)
            on_disk = read_manifest(directory)
            manifest = on_disk or Manifest(index=(config or IndexConfig()).to_dict())
            before = manifest.to_json() if on_disk else b""
            check_compatible(manifest, directory, dim, encoder_fingerprint)
            manifest.dim = manifest.dim or dim
            manifest.encoder_fingerprint = manifest.encoder_fingerprint or encoder_fingerprint
            if config is not None:
                manifest.index = config.to_dict()
            if index_type is not None:
                manifest.index = {**manifest.index, "index_type": normalize_type(index_type)}
            if index_options:
                unknown = set(index_options) - set(IndexConfig.__dataclass_fields__)
                if unknown:
                    raise InvalidArgument(f"unknown index options {sorted(unknown)}")
                merged = IndexConfig.from_dict({**manifest.index, **index_options})
                manifest.index = merged.to_dict()  # validated by IndexConfig
            if manifest.to_json() != before:
                write_manifest(directory, manifest)
    # A read-only handle may still tune its own searches (ef_search, nprobe) through `config`.
    settings = config if read_only and config is not None else manifest.index
    if isinstance(settings, dict):
        settings = IndexConfig.from_dict(settings)
    return manifest, settings


def ensure_keywords(store: Store, directory: Path, read_only: bool, limits: Limits) -> None:
    """Build the keyword index from the stored texts unless it is ready (index/fulltext.py): a
    collection made before keyword search, or one an older version wrote to. Read-only handles
    never write: KeywordIndexMissing."""
    if store.keywords_ready():
        return
    if read_only:
        raise KeywordIndexMissing(
            f"the collection in {directory} has no up-to-date keyword index; open it for writing "
            "once (start the server on it, or run `semsearch index build`) to build it"
        )
    with writer_lock(directory, limits.lock_timeout_s):
        started = time.monotonic()
        n = store.build_keywords()
    if n >= 0:
        log.info(
            "built the keyword index of %s over %d documents in %.1f s",
            directory,
            n,
            time.monotonic() - started,
        )
