"""Seed streams: the content of shard k depends only on (config, seed, split, k)."""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from simulate.config import GENERATOR_VERSION


def shard_seed(seed: int, split: str, k: int) -> int:
    """(seed, split, k) -> 63-bit generator seed; a stable hash, so splits draw from disjoint streams."""
    digest = hashlib.sha256(f"simulate|{seed}|{split}|{k}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def shard_count(count: int, shard_size: int) -> int:
    """Number of shards holding `count` samples, `shard_size` per shard (the last one may be short)."""
    return math.ceil(count / shard_size)


def shard_span(count: int, shard_size: int, k: int) -> tuple[int, int]:
    """Shard k of a split of `count` samples -> (first sample index, samples in the shard)."""
    first = k * shard_size
    return first, max(0, min(shard_size, count - first))


def config_hash(config: dict[str, Any], split: str) -> str:
    """Fingerprint of everything that shapes a split's shard content (the split counts excluded)."""
    shaping = {key: value for key, value in config.items() if key != "splits"}
    text = json.dumps({"config": shaping, "split": split, "generator": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
