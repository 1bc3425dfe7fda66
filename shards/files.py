"""Shard bytes: byte-reproducible tars, atomic writes, sidecars, and reading a shard from a path or any URL.

Reading goes through WebDataset's URL opener (`webdataset.gopen`): a local path, `pipe:CMD` (CMD's stdout),
`gs://`, ...; `http(s)://` goes through urllib with a timeout per read, bounded retries and one deadline for
the whole URL (read_http). A shard is read whole into memory (tens of MB), checked against the
sha256 of its sidecar where that sidecar is reachable, then parsed strictly: a cut or damaged tar is an
error naming the shard, never a quietly shorter shard.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import math
import os
import re
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Iterator

from shards.faults import fault_point
from shards.layout import is_url, manifest_url, shard_basename, sidecar_path, sidecar_url
from shards.limits import MAX_JSON_BYTES, MAX_SHARD_BYTES, load_json, read_regular_file, read_stream_bounded

# Every header field that could vary between runs or machines is pinned (2000-01-01, root, 0644).
FIXED_MTIME = 946684800
_CHUNK = 1 << 20
STALE_TEMP_S = 3600  # a temporary file from another host this old belongs to a dead writer
HTTP_TIMEOUT_S = 30.0  # per connect or read of an http(s) shard, sidecar or manifest
HTTP_TRIES = 3  # then the shard is named and skipped (a manifest: a one-line error)
HTTP_PAUSE_S = 1.0  # before the 2nd try; doubles after
# A whole URL, all tries together: a server that answers a byte at a time never trips HTTP_TIMEOUT_S.
HTTP_DEADLINE_S = 300.0
HTTP_DEADLINE_ENV = "SSL_HTTP_DEADLINE_S"  # overrides HTTP_DEADLINE_S (seconds), in every reader process
_stall_reported = False  # report_stall: the first failed try of the process is the one reported
# Temporary names carry this tag, so a cleanup never touches a file a user named `*.tmp-*` (photos.tar.tmp-2024-01-05).
TEMP_TAG = "ssl-partial"
_TEMP_NAME = re.compile(rf"^(?P<name>.+)\.tmp-{TEMP_TAG}-(?P<host>.+)-(?P<pid>\d+)$")


class ShardError(Exception):
    """A shard is missing, truncated, corrupted or does not match its manifest; names the file."""


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
    """Where `path` is written before the rename (`{name}.tmp-ssl-partial-{host}-{pid}`): a name only this program
    makes, never ending in .tar or .json."""
    return path.with_name(f"{path.name}.tmp-{TEMP_TAG}-{socket.gethostname()}-{os.getpid()}")


def _writer_gone(temp: Path) -> bool:
    """A temporary file's writer is no longer running (same host), or it is an hour old (other host)."""
    match = _TEMP_NAME.match(temp.name)
    if match is None:
        return False
    host, pid = match["host"], match["pid"]
    if host == socket.gethostname():
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


def remove_stale_temps(folder: Path, name: str = "*") -> None:
    """Delete leftovers of interrupted writes of `folder/name` (any file with name="*"), never a file another
    live process is writing, and never a file whose name temp_path did not make."""
    for temp in Path(folder).glob(f"{name}.tmp-{TEMP_TAG}-*"):
        if temp.is_file() and not temp.is_symlink() and _writer_gone(temp):
            temp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to a temporary name, fsync, then rename: readers see all of it or nothing."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:  # a full disk or a read-only folder: leave no partial file behind
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None
    fault_point(f"shard:{path.name}")
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """File -> hex sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def write_sidecar(shard: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Record the finished shard's name, bytes and sha256 (plus `fields`) beside it; returns the record."""
    shard = Path(shard)
    record = {**fields, "name": shard.name, "bytes": shard.stat().st_size, "sha256": sha256_file(shard)}
    atomic_write(sidecar_path(shard), json.dumps(record, sort_keys=True, indent=1).encode() + b"\n")
    return record


def read_sidecar(shard: Path) -> dict[str, Any] | None:
    """The shard's sidecar record, or None when it is missing or unreadable."""
    try:
        record = load_json(read_regular_file(sidecar_path(shard), MAX_JSON_BYTES), str(sidecar_path(shard)))
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


def http_deadline_s() -> float:
    """The whole-request deadline of one http(s) URL, all tries together: SSL_HTTP_DEADLINE_S, else
    HTTP_DEADLINE_S; OSError naming the variable when it is not a number of seconds > 0."""
    raw = os.environ.get(HTTP_DEADLINE_ENV)
    if raw is None:
        return HTTP_DEADLINE_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise OSError(f"{HTTP_DEADLINE_ENV}={raw!r}: expected a number of seconds > 0")
    return value


def report_stall(url: str, err: BaseException, attempt: int, end: float, deadline_s: float) -> None:
    """The first failed http(s) try of this process -> one line on stderr (a silent server used to cost minutes
    before any message); later ones stay quiet: each shard that still fails is named where it is skipped."""
    global _stall_reported
    if _stall_reported:
        return
    _stall_reported = True
    left = max(0.0, end - time.monotonic())
    print(f"warning: {url}: try {attempt + 1} of {HTTP_TRIES} failed ({type(err).__name__}: {err}); {left:.1f} s left "
          f"of its {deadline_s:g} s deadline ({HTTP_DEADLINE_ENV}) for more tries; later stalls are not reported",
          file=sys.stderr, flush=True)


class BodyTooLarge(OSError):
    """An http(s) answer larger than the contract allows: final at once, never retried."""


def http_try(url: str, end: float, limit: int = MAX_SHARD_BYTES) -> bytes:
    """One GET of `url` that must finish by the monotonic time `end`: each connect or read waits at most
    HTTP_TIMEOUT_S (less when the deadline is nearer), and the body is read in pieces so a server that drips
    bytes cannot hold it past the deadline by more than one read's wait; a body over `limit` bytes (claimed or
    sent) is refused before more of it is read."""
    remaining = end - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed before the request")
    with urllib.request.urlopen(url, timeout=min(HTTP_TIMEOUT_S, remaining)) as response:
        if response.length is not None and response.length > limit:
            raise BodyTooLarge(f"{url}: its answer claims {response.length} bytes, more than {limit}; refused")
        pieces, size = [], 0
        while piece := response.read1(_CHUNK):
            pieces.append(piece)
            size += len(piece)
            if size > limit:
                raise BodyTooLarge(f"{url}: more than {limit} bytes (an endless or oversized body); refused")
            if time.monotonic() > end:
                raise TimeoutError(f"deadline passed after {size} bytes")
        if response.length:  # read1 ends quietly where read() would raise: the server closed early
            raise http.client.IncompleteRead(b"", response.length)
        return b"".join(pieces)


def read_http(url: str, deadline_s: float | None = None, limit: int = MAX_SHARD_BYTES) -> bytes:
    """An http(s) URL -> its bytes: up to HTTP_TRIES tries with a doubling pause between, all within one
    deadline (`deadline_s`, else http_deadline_s()); OSError naming the URL when none succeeds (a 4xx answer is
    final at once). The first failed try of the process is reported on stderr."""
    deadline_s = http_deadline_s() if deadline_s is None else deadline_s
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    tries = 0
    for attempt in range(HTTP_TRIES):
        pause = HTTP_PAUSE_S * 2 ** (attempt - 1) if attempt else 0.0
        if time.monotonic() + pause >= end:
            break
        time.sleep(pause)
        tries += 1
        try:
            return http_try(url, end, limit)
        except BodyTooLarge:
            raise
        except urllib.error.HTTPError as err:
            if 400 <= err.code < 500:
                raise OSError(f"{url}: cannot read (HTTP {err.code} {err.reason})") from None
            last = err
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            last = err
        report_stall(url, last, attempt, end, deadline_s)
    raise OSError(f"{url}: no answer after {tries} {'try' if tries == 1 else 'tries'} ({HTTP_TIMEOUT_S:g} s timeout "
                  f"per read, {deadline_s:g} s deadline in all; {type(last).__name__}: {last})")


def read_url(url: str, limit: int = MAX_SHARD_BYTES) -> bytes:
    """A path or URL (see the module docstring) -> its bytes, at most `limit`; OSError naming it when it cannot be
    read or holds more. http(s) goes through read_http (timeouts and a bounded retry), a local path must be a
    regular file (shards.limits), everything else goes through WebDataset's gopen. Whether a `pipe:` command may
    run at all is decided where the URL was typed (training.config.check_commands), never here."""
    from webdataset.gopen import gopen  # webdataset imports torch: heavy for the writer's CLI, which never reads URLs

    if str(url).startswith(("http://", "https://")):
        return read_http(str(url), limit=limit)
    if not is_url(str(url)):
        return read_regular_file(str(url), limit)
    try:
        with gopen(str(url), "rb") as stream:
            return read_stream_bounded(stream, str(url), limit)
    except (OSError, ValueError) as err:
        raise OSError(f"{url}: cannot read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None


def sidecar_sha256(url: str) -> str | None:
    """The sha256 recorded for a shard path or URL: its sidecar's, else its split manifest's record of it (the
    manifest beside it, by file name); None where neither is reachable, and always for a `pipe:` command: no
    command is ever derived from another (its sidecar would be a new command)."""
    if str(url).startswith("pipe:"):
        return None
    try:
        record = load_json(read_url(sidecar_url(str(url)), MAX_JSON_BYTES), sidecar_url(str(url)))
    except (OSError, ValueError):
        record = None
    digest = record.get("sha256") if isinstance(record, dict) else None
    return digest if isinstance(digest, str) else manifest_sha256(str(url))


def manifest_sha256(url: str) -> str | None:
    """A shard path or URL -> the sha256 its split's manifest.json (beside it) records for its file name, or None."""
    name = shard_basename(url)
    if str(url).startswith("pipe:"):
        return None
    try:
        manifest = load_json(read_url(manifest_url(url), MAX_JSON_BYTES), manifest_url(url)) if name else None
    except (OSError, ValueError):
        return None
    records = manifest.get("shards") if isinstance(manifest, dict) else None
    digests = [r.get("sha256") for r in records or [] if isinstance(r, dict) and r.get("name") == name]
    return digests[0] if digests and isinstance(digests[0], str) else None


def iter_samples(data: bytes, where: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Tar bytes -> (key, {extension: bytes}) per sample in file order; ShardError naming `where` on any damage."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            key, parts = None, {}
            for member in tar:
                check_member(member, len(data), where)
                name_key, dot, ext = member.name.partition(".")
                if not dot:
                    raise ShardError(f"{where}: member {member.name!r} has no extension")
                if name_key != key:
                    if key is not None:
                        yield key, parts
                    key, parts = name_key, {}
                if ext in parts:
                    raise ShardError(f"{where}: sample {key} has two {ext!r} members")
                member_data = tar.extractfile(member).read()
                if len(member_data) != member.size:
                    raise ShardError(f"{where}: member {member.name!r} is truncated")
                parts[ext] = member_data
            if key is not None:
                yield key, parts
            end = tar.offset
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ShardError(f"{where}: unreadable tar ({type(err).__name__}: {err})") from None
    # tarfile stops quietly at a cut between members; a whole archive ends in two zero blocks.
    if data[end:end + 2 * tarfile.BLOCKSIZE] != bytes(2 * tarfile.BLOCKSIZE):
        raise ShardError(f"{where}: truncated (no end-of-archive marker after {end} bytes)")


def check_member(member: tarfile.TarInfo, available: int, where: str) -> None:
    """A tar member's header -> ShardError unless it is a plain regular file whose claimed size fits in the bytes
    the shard holds (checked before its payload is read: a sparse member may claim gigabytes in a few bytes)."""
    if not member.isfile() or member.issparse() or member.sparse is not None:
        kind = "a sparse file" if member.issparse() or member.sparse is not None else "not a regular file"
        raise ShardError(f"{where}: member {member.name!r} is {kind}")
    if member.size < 0 or member.offset_data + member.size > available:
        raise ShardError(f"{where}: member {member.name!r} claims {member.size} bytes, more than the shard holds "
                         f"({available}); truncated or forged")


def read_samples(url: str | Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """A shard's path or URL -> its samples (iter_samples), without a sha256 check."""
    try:
        data = read_url(str(url))
    except OSError as err:
        raise ShardError(str(err)) from None
    return iter_samples(data, str(url))
