"""Which shell commands a run may start: only those the user typed on this command line.

A `pipe:CMD` location (WebDataset: the shard is CMD's stdout) runs CMD in a shell. A config file, a run folder's
config.yaml, a manifest or a URL list can come from anyone, so a `pipe:` value read from any of them is refused in
one line, unless the user typed that key on the command line (`'data.train_glob=pipe:...'`) or passed
`--allow-commands` for this one run. Nothing derives a new command from a typed one (shards.files reads no
sidecar or manifest for a `pipe:` shard).
"""
from __future__ import annotations

from typing import Iterable

from configs import ConfigError

# Every config key whose value is read as a path or URL by the data path.
LOCATION_KEYS = ("data.shards", "data.train_glob", "data.eval_glob", "speech.train_path", "speech.eval_path")
ALLOW_FLAG = "--allow-commands"


def is_command(value: object) -> bool:
    """A location that would run a shell command."""
    return isinstance(value, str) and value.strip().startswith("pipe:")


def typed_keys(overrides: Iterable[str]) -> set[str]:
    """`key=value` overrides typed on the command line -> their keys."""
    return {item.partition("=")[0].strip() for item in overrides if "=" in item}


def key_value(cfg, key: str) -> object:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def check_commands(cfg, typed: set[str], allowed: bool, source: str, keys: Iterable[str] = LOCATION_KEYS) -> None:
    """ConfigError naming the first of `keys` whose `pipe:` command came from `source` (a config file or run
    folder) rather than from this command line, unless `allowed` (--allow-commands)."""
    if allowed:
        return
    for key in keys:
        value = key_value(cfg, key)
        if is_command(value) and key not in typed:
            shown = value if len(value) <= 80 else value[:77] + "..."
            raise ConfigError(f"{key}={shown!r} comes from {source} and is a shell command (pipe:); a command runs "
                              f"only when typed on the command line ('{key}=pipe:...') or with {ALLOW_FLAG} for "
                              f"this run")
