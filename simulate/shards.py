"""Byte-reproducible WebDataset tars, atomic writes and the per-shard sidecar."""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import tarfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

# Every header field that could vary between runs or machines is pinned (2000-01-01, root, 0644).
FIXED_MTIME = 946684800
_CHUNK = 1 << 20
STALE_TEMP_S = 3600  # a temporary file from another host this old belongs to a dead writer


class ShardError(Exception):
    """A shard is missing, truncated, corrupted or does not match its manifest; names the file."""


def npy_bytes(array: np.ndarray) -> bytes:
    """float array -> .npy bytes (little-endian float32, C order; loads with allow_pickle=False)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype="<f4"), allow_pickle=False)
    return buffer.getvalue()


def json_bytes(value: Any) -> bytes:
    """JSON-able value -> UTF-8 bytes with a stable key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """[(member name, bytes)] -> tar archive bytes, identical for identical input on any machine."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), FIXED_MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def temp_path(path: Path) -> Path:
    """Where `path` is written before the rename (`{name}.tmp-{host}-{pid}`); never ends in .tar or .json."""
    return path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def _writer_gone(temp: Path) -> bool:
    """A temporary file's writer is no longer running (same host), or it is an hour old (other host)."""
    host, _, pid = temp.name.rpartition(".tmp-")[2].rpartition("-")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return int(pid) == os.getpid()
    try:
        return time.time() - temp.stat().st_mtime > STALE_TEMP_S
    except FileNotFoundError:
        return False


def remove_stale_temps(path: Path) -> None:
    """Delete leftovers of interrupted writes of `path`, never the file another live process is writing."""
    for temp in Path(path).parent.glob(f"{Path(path).name}.tmp-*"):
        if _writer_gone(temp):
            temp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to a temporary name, fsync, then rename: readers see all of it or nothing."""
    path = Path(path)
    tmp = temp_path(path)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def sha256_file(path: Path) -> str:
    """File -> hex sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(shard: Path) -> Path:
    """`train-000003.tar` -> `train-000003.json` beside it."""
    return Path(shard).with_suffix(".json")


def write_sidecar(shard: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Record the finished shard's name, bytes and sha256 (plus `fields`) beside it; returns the record."""
    shard = Path(shard)
    record = {**fields, "name": shard.name, "bytes": shard.stat().st_size, "sha256": sha256_file(shard)}
    atomic_write(sidecar_path(shard), json.dumps(record, sort_keys=True, indent=1).encode() + b"\n")
    return record


def read_sidecar(shard: Path) -> dict[str, Any] | None:
    """The shard's sidecar record, or None when it is missing or unreadable."""
    try:
        record = json.loads(sidecar_path(shard).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def shard_is_current(shard: Path, expected: dict[str, Any]) -> dict[str, Any] | None:
    """Sidecar record when the shard exists, its sidecar carries `expected` fields and the sha256 matches."""
    shard = Path(shard)
    record = read_sidecar(shard)
    if record is None or any(record.get(key) != value for key, value in expected.items()):
        return None
    try:
        if shard.stat().st_size != record.get("bytes"):
            return None
        return record if sha256_file(shard) == record.get("sha256") else None
    except OSError:
        return None


def read_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Tar -> (key, {extension: bytes}) per sample in file order; ShardError on any damage."""
    path = Path(path)
    try:
        with tarfile.open(path, mode="r:") as tar:
            key, parts = None, {}
            for member in tar:
                if not member.isfile():
                    raise ShardError(f"{path}: member {member.name!r} is not a regular file")
                name_key, dot, ext = member.name.partition(".")
                if not dot:
                    raise ShardError(f"{path}: member {member.name!r} has no extension")
                if name_key != key:
                    if key is not None:
                        yield key, parts
                    key, parts = name_key, {}
                if ext in parts:
                    raise ShardError(f"{path}: sample {key} has two {ext!r} members")
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise ShardError(f"{path}: member {member.name!r} is truncated")
                parts[ext] = data
            if key is not None:
                yield key, parts
            end = tar.offset
        # tarfile stops quietly at a cut between members; a whole archive ends in two zero blocks.
        with open(path, "rb") as handle:
            handle.seek(end)
            if handle.read(2 * tarfile.BLOCKSIZE) != bytes(2 * tarfile.BLOCKSIZE):
                raise ShardError(f"{path}: truncated (no end-of-archive marker after {end} bytes)")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ShardError(f"{path}: unreadable tar ({type(err).__name__}: {err})") from None
