"""Bounds on what untrusted bytes may ask of this program, checked before the bytes are read or allocated.

Shards, sidecars, manifests, run folders and configs can come from anyone. Every size a file *claims* (a tar
member's size, a `.npy` header's shape, an audio header's frame count, an HTTP body) is compared with a limit
derived from the data contract before anything of that size is read or allocated; JSON is parsed with its
nesting depth and number sizes bounded; and a path where a shard is expected must be a regular file (a symlink to
/dev/zero or a FIFO would never end). Every refusal is a ValueError (or OSError for files) of one line naming the
file.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

# A shard is tens of MB (256 scenes of 2 x 3 x 16k float32 each, or 256 FLAC utterances); 2 GiB is far above any
# shard this repository writes and far below what would exhaust a training machine.
MAX_SHARD_BYTES = 2 << 30
MAX_JSON_BYTES = 256 << 20  # a manifest of 10^6 shards is about 250 MB
MAX_JSON_DEPTH = 64  # the deepest JSON this repository writes is 4 levels
MAX_INT_DIGITS = 30  # seeds are 63-bit (19 digits); counts and sizes fewer
MAX_AUDIO_SAMPLES = 1 << 28  # frames x channels of one decoded file: 1 GiB of float32 (4.6 h of 16 kHz mono)
MAX_YAML_BYTES = 1 << 20  # a config is a few kB
MAX_YAML_NODES = 100_000  # scalars, lists and maps after aliases are expanded


class LimitError(ValueError):
    """A file claims or holds more than this program accepts; one line naming the file and the limit."""


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > MAX_INT_DIGITS:
        raise LimitError(f"an integer of {len(digits)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise LimitError(f"a number out of range ({text[:20]})")
    return value


def _no_constant(name: str) -> float:
    raise LimitError(f"{name} is not a JSON number")


def json_depth(value: Any) -> int:
    """The nesting depth of a parsed JSON value (a scalar is 0), walked without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        pending.extend((child, depth + 1) for child in children)
    return deepest


def load_json(data: bytes | str, where: str, constants: bool = False) -> Any:
    """JSON bytes or text -> the value, bounded: at most MAX_JSON_BYTES, MAX_JSON_DEPTH levels, integers of
    MAX_INT_DIGITS digits, finite numbers (NaN/Infinity only with `constants`); LimitError or ValueError of one
    line naming `where` otherwise."""
    if len(data) > MAX_JSON_BYTES:
        raise LimitError(f"{where}: {len(data)} bytes of JSON (at most {MAX_JSON_BYTES})")
    hooks: dict[str, Any] = {"parse_int": _bounded_int}
    if not constants:
        hooks.update(parse_float=_finite_float, parse_constant=_no_constant)
    try:
        value = json.loads(data, **hooks)
    except RecursionError:
        raise LimitError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{where}: not valid JSON ({reason})") from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise LimitError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def regular_file_size(path: str | Path, limit: int = MAX_SHARD_BYTES) -> int:
    """A local path where a file is expected -> its size; OSError of one line when it is not a regular file (a
    device such as /dev/zero, a FIFO, a folder; symlinks are followed) or is larger than `limit`."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise OSError(err.errno, f"{path}: cannot read ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path}: not a regular file ({file_kind(info.st_mode)}); a shard must be a file")
    if info.st_size > limit:
        raise OSError(f"{path}: {info.st_size} bytes, more than the {limit} a shard may have")
    return info.st_size


def file_kind(mode: int) -> str:
    """st_mode -> 'a folder', 'a FIFO', 'a device', ... for messages."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def read_regular_file(path: str | Path, limit: int = MAX_SHARD_BYTES) -> bytes:
    """A local file -> its bytes, refused before reading when it is not a regular file or exceeds `limit`; the
    file is opened without blocking (a FIFO swapped in after the check never hangs the read)."""
    regular_file_size(path, limit)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file; a shard must be a file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OSError(f"{path}: more than the {limit} bytes a shard may have")
    return data


def read_stream_bounded(stream, where: str, limit: int = MAX_SHARD_BYTES) -> bytes:
    """A readable stream -> at most `limit` bytes; OSError naming `where` when it holds more (an endless body)."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{where}: more than {limit} bytes (an endless or oversized body); refused")
    return data


def check_audio_frames(frames: int, channels: int, where: str, limit: int = MAX_AUDIO_SAMPLES) -> None:
    """An audio header's frame and channel counts -> LimitError when decoding it would allocate more than
    `limit` samples (a header may claim 2^36 samples in a few bytes)."""
    if frames < 0 or channels < 1 or frames * channels > limit:
        raise LimitError(f"{where}: its header claims {frames} frames x {channels} channel(s), more than the "
                         f"{limit} samples one file may decode to; split it into shorter files")
