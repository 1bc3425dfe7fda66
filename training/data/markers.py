"""The keys of the items a sample stream carries beside its samples, declared once.

training.data.streams writes them (through an error policy, its `Handler`), `Stream` and the fixed eval set read them.
A marker is any item with a key from this list; a sample carries only `KEY` of them (WebDataset's sample key).
"""
from __future__ import annotations

KEY = "__key__"  # a sample's key: {KEY: key, "url": shard, ...}
BAD_SHARD = "__bad__"  # {BAD_SHARD: url, ERROR: why}: a shard unreadable, damaged, empty or of another setup
BAD_SAMPLE = "__bad_sample__"  # {BAD_SAMPLE: "url:key", ERROR: why}: one sample that did not decode
ERROR = "__error__"  # why a shard or a sample failed, in words
UNCHECKED = "__unchecked__"  # {UNCHECKED: url}: no reachable sidecar, so its sha256 was not checked
SHARD_OK = "__shard_ok__"  # {SHARD_OK: url, SAMPLES: n}: a shard read to its end, n samples decoded
SAMPLES = "__samples__"


def is_marker(item: dict) -> bool:
    """A stream item -> True for a marker (failure, unchecked, shard done), False for a sample."""
    return any(key.startswith("__") and key != KEY for key in item)


def failure(kind: str, name: str, error: str) -> dict:
    """(BAD_SHARD or BAD_SAMPLE, the shard url or 'url:key', why) -> the failure's marker."""
    return {kind: name, ERROR: error}
