"""Names and places: shards, samples, sidecars, manifests and split folders, and the per-shard seed.

    {root}/{split}/{split}-{k:06d}.tar     RIR shard k of a split; samples `{split}-{index:09d}`
    {root}/{split}/{split}-{k:06d}.json    its sidecar (count, bytes, sha256, ...)
    {root}/{split}/manifest.json           the split, merged from the sidecars
    {root}/dataset.json                    the folder's config fingerprint and its splits (one config per folder)
    {folder}/speech-{k:06d}.tar            speech shard k; samples `speech-{index:09d}`

A URL's sidecar is the same URL with its last `.tar` turned into `.json`, so `pipe:` commands and
`http(s)://` addresses find theirs too.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

MANIFEST = "manifest.json"
DATASET = "dataset.json"  # {root}/dataset.json: the config fingerprint and every split the folder holds
SPEECH = "speech"  # name prefix of speech shards and their samples
MAX_SHARDS = 10**6  # per split: shard numbers keep 6 digits, so names sort in shard order
MAX_SAMPLES = 10**9  # per split: sample indices keep 9 digits


def shard_name(prefix: str, k: int) -> str:
    """(split or 'speech', k) -> `{prefix}-{k:06d}.tar`."""
    return f"{prefix}-{k:06d}.tar"


def sample_key(prefix: str, index: int) -> str:
    """(split or 'speech', sample index) -> WebDataset key `{prefix}-{index:09d}`."""
    return f"{prefix}-{index:09d}"


def shard_glob(folder: str | Path, prefix: str) -> str:
    """A local folder of `prefix` shards -> the glob of its shards, `{folder}/{prefix}-*.tar`."""
    return str(Path(folder) / f"{prefix}-*.tar")


def split_glob(root: str | Path, split: str) -> str:
    """A local shard root -> the glob of one split's shards, `{root}/{split}/{split}-*.tar`."""
    return shard_glob(Path(root) / split, split)


def sidecar_path(shard: str | Path) -> Path:
    """`train-000003.tar` -> `train-000003.json` beside it."""
    return Path(shard).with_suffix(".json")


def sidecar_url(url: str) -> str:
    """A shard's path or URL -> its sidecar's: the last `.tar` becomes `.json` (works inside `pipe:` commands)."""
    head, dot_tar, tail = url.rpartition(".tar")
    return head + ".json" + tail if dot_tar else url + ".json"


def manifest_url(shard: str) -> str:
    """A shard's path or URL -> its split's manifest beside it: the shard's file name becomes `manifest.json`
    (works inside `pipe:` commands)."""
    name = shard_basename(shard)
    head, _, tail = shard.rpartition(name)
    return head + MANIFEST + tail


def shard_basename(shard: str) -> str:
    """A shard's path or URL (`pipe:cat /x/train-000001.tar -`) -> its file name, `train-000001.tar`."""
    head, dot_tar, _ = str(shard).rpartition(".tar")
    return head.replace("\\", "/").rsplit("/", 1)[-1].rsplit(" ", 1)[-1] + dot_tar if dot_tar else ""


def is_url(location: str) -> bool:
    """`pipe:...`, `http(s)://...`, `s3://...` and other schemes -> True; a local path -> False."""
    scheme, sep, _ = location.partition(":")
    return location.startswith("pipe:") or (bool(sep) and len(scheme) > 1 and location[len(scheme):].startswith("://"))


def stable_seed(*parts: object) -> int:
    """Any parts -> a 63-bit seed from their sha256 (Python's hash() is salted per process)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def shard_seed(seed: int, split: str, k: int) -> int:
    """(seed, split, k) -> the generator seed of shard k: splits draw from disjoint streams."""
    return stable_seed("simulate", seed, split, k)


def shard_count(count: int, shard_size: int) -> int:
    """Number of shards holding `count` samples, `shard_size` per shard (the last one may be short)."""
    return math.ceil(count / shard_size)


def shard_span(count: int, shard_size: int, k: int) -> tuple[int, int]:
    """Shard k of a split of `count` samples -> (first sample index, samples in the shard)."""
    first = k * shard_size
    return first, max(0, min(shard_size, count - first))
