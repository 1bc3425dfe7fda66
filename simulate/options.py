"""Resolving what to write (config, splits, shard numbers) from flags and overrides; no torch import."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from simulate.config import SimulateConfig
from configs import ConfigError, build_config, config_to_dict, deep_merge, parse_overrides


def resolve_config(cfg: SimulateConfig | None, splits: dict[str, int] | None,
                   overrides: Iterable[str]) -> SimulateConfig:
    """Defaults or `cfg`, then `key=value` overrides, then `splits` -> a validated SimulateConfig."""
    data = config_to_dict(cfg if cfg is not None else SimulateConfig())
    data = deep_merge(data, parse_overrides(overrides))
    if splits is not None:
        data["splits"] = dict(splits)
    return build_config(SimulateConfig, data)


def parse_splits(text: str) -> dict[str, int]:
    """'train=3000,eval=200' -> {'train': 3000, 'eval': 200}."""
    splits = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, eq, count = item.partition("=")
        if not eq or not count.strip().isdigit():
            raise ConfigError(f"--splits: expected name=count[,name=count], got {item!r}")
        splits[name.strip()] = int(count)
    if not splits:
        raise ConfigError("--splits: expected name=count[,name=count], got nothing")
    return splits


def parse_shards(text: str) -> list[int]:
    """'3,17' -> [3, 17]."""
    try:
        shards = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--shards: expected comma-separated shard numbers, got {text!r}") from None
    if not shards or min(shards) < 0:
        raise ConfigError(f"--shards: expected shard numbers >= 0, got {text!r}")
    return shards


def local_output_dir(out: str | Path) -> Path:
    """--out -> Path; a URL (s3://, gs://, http://, pipe:, ...) is a ConfigError that says how to get shards there."""
    text = str(out)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) or text.startswith("pipe:"):
        raise ConfigError(
            f"--out {text}: python -m simulate writes to a local or mounted folder, not to a URL; write the shards "
            f"locally, then copy them, e.g. `aws s3 cp --recursive shards/ s3://bucket/shards/` or "
            f"`gsutil -m cp -r shards gs://bucket/`, and train from there (README, 'Shards on object storage')")
    return Path(out)
