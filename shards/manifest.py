"""Per-split `manifest.json`, merged from the shard sidecars under a lock and written atomically."""
from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from shards.files import atomic_write, read_sidecar, read_url, remove_stale_temps
from shards.layout import MANIFEST
from shards.limits import MAX_JSON_BYTES, load_json


@contextmanager
def split_lock(directory: Path) -> Iterator[None]:
    """Exclusive lock on `directory/.lock`, so concurrent ranks merge one after another."""
    with open(Path(directory) / ".lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def merge_manifest(directory: Path, header: dict[str, Any], shard_names: list[str],
                   expected_count: int) -> dict[str, Any]:
    """Merge the sidecars of `shard_names` whose fields match `header['config_hash']` into manifest.json."""
    directory = Path(directory)
    with split_lock(directory):
        shards = []
        for name in shard_names:
            record = read_sidecar(directory / name)
            if record is not None and record.get("config_hash") == header["config_hash"]:
                shards.append(record)
        present = sum(record["count"] for record in shards)
        manifest = {
            **header,
            "count": expected_count,
            "num_shards": len(shard_names),
            "present_count": present,
            "present_shards": len(shards),
            # Other ranks may still be writing; the last rank to finish sees every sidecar.
            "complete": len(shards) == len(shard_names) and present == expected_count,
            "shards": shards,
        }
        remove_stale_temps(directory, MANIFEST)
        atomic_write(directory / MANIFEST, json.dumps(manifest, sort_keys=True, indent=1).encode() + b"\n")
    return manifest


def load_manifest(path: str | Path) -> dict[str, Any]:
    """manifest.json (a path or URL) -> dict; ValueError naming it when it is unreadable or not a JSON object."""
    if str(path).startswith("pipe:"):
        raise ValueError(f"{path}: a manifest is never read from a pipe: command (no command is derived from another)")
    try:
        manifest = load_json(read_url(str(path), MAX_JSON_BYTES), str(path))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable manifest ({str(err).removeprefix(f'{path}: ')})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return manifest
