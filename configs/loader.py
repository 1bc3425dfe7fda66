"""Dataclass configs loaded from YAML with `key.sub=value` overrides, validated with one-line errors.

Shared by `simulate`, `ssl_model` and `training` (none of which imports another for it): a config is a (nested) dataclass whose fields carry plain types
(int, float, bool, str, lists/tuples of those, Optional, Literal). `load_config` merges defaults,
a YAML file and command-line overrides, then checks every value's type before any work starts.
Each dataclass may define `validate(self)` that raises `ConfigError` for impossible values.

A `--config` that is not a file relative to the working directory but a shipped config's name (`tiny`,
`tiny.yaml` or `configs/tiny.yaml`) reads the copy installed with this package, so the shipped configs work
from any folder.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type or impossible; the message names the key."""


MAX_YAML_BYTES = 1 << 20  # characters of one config file or override; a config is a few kB
MAX_YAML_NODES = 100_000  # values of one config once its aliases are expanded


class ConfigYAMLError(ConfigError, yaml.YAMLError):
    """A config file or override that is not plain YAML (a `!!python/...` tag, a syntax error); still a
    yaml.YAMLError, so callers that catch those keep working."""


def yaml_reason(err: yaml.YAMLError) -> str:
    """A YAML error -> one line: what went wrong and where (`line N`)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if not problem:
        return " ".join(str(err).split())
    return f"{problem}, line {mark.line + 1}" if mark is not None else problem


def expanded_size(root: yaml.Node) -> int:
    """A composed YAML document -> how many nodes it holds once every alias is expanded (each distinct node is
    visited once, so an alias bomb is measured without being built)."""
    sizes: dict[int, int] = {}
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    while pending:
        node, children_done = pending.pop()
        if id(node) in sizes:
            continue
        children = node_children(node)
        if children_done or not children:
            sizes[id(node)] = min(1 + sum(sizes.get(id(c), 0) for c in children), MAX_YAML_NODES + 1)
            continue
        pending.append((node, True))
        pending.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def node_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_yaml_bounds(text: str, where: str) -> None:
    """ConfigYAMLError naming `where` when YAML text is larger than MAX_YAML_BYTES, nested deeper than the parser
    can follow, or expands (aliases) to more than MAX_YAML_NODES nodes: checked before anything is constructed."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigYAMLError(f"{where}: {len(text)} characters of YAML (a config is at most {MAX_YAML_BYTES})")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigYAMLError(f"{where}: YAML nested too deep to be a config") from None
    except yaml.YAMLError:
        return  # safe_load names the problem
    if root is not None and expanded_size(root) > MAX_YAML_NODES:
        raise ConfigYAMLError(f"{where}: YAML whose aliases expand to more than {MAX_YAML_NODES} values (an alias "
                              f"bomb?); a config is a few hundred")


def safe_yaml(text: str, where: str) -> Any:
    """YAML text -> its value, tags refused without constructing anything, size and alias expansion bounded
    first (check_yaml_bounds); ConfigYAMLError naming `where`."""
    check_yaml_bounds(text, where)
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise ConfigYAMLError(f"{where}: YAML nested too deep to be a config") from None
    except yaml.YAMLError as err:
        raise ConfigYAMLError(f"{where}: not a plain YAML config, nothing in it was run ({yaml_reason(err)})") from None


def need(ok: bool, key: str, message: str) -> None:
    """The check every `validate()` is made of: ConfigError('key: message') unless ok."""
    if not ok:
        raise ConfigError(f"{key}: {message}")


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """['a.b=1', 'c=[1,2]'] -> {'a': {'b': 1}, 'c': [1, 2]}; values are parsed as YAML scalars/lists."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        value = safe_yaml(raw, f"override {item!r}") if raw.strip() else ""
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is set both as a value and as a section")
        node[parts[-1]] = value
    return tree


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `update` wins."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` (light coercion: int->float, list->tuple)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            accepted = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"{key}: got {value!r}; accepted values: {accepted}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (mapping), got {value!r}")
        return _build(tp, value, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)} ({value!r})")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        accepted = ", ".join(sorted(fields))
        raise ConfigError(f"unknown key {prefix + unknown[0]!r}; accepted keys here: {accepted}")
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    instance = cls(**kwargs)
    validate = getattr(instance, "validate", None)
    if callable(validate):
        validate()
    return instance


def build_config(cls: type[T], data: dict[str, Any] | None = None) -> T:
    """Build and validate a config dataclass from a (nested) dict."""
    return _build(cls, data or {})


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Defaults <- YAML file <- `key.sub=value` overrides, validated. Raises ConfigError (one line)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = find_config(path)
        data = read_config_file(path)
    overrides = list(overrides)
    try:
        tree = parse_overrides(overrides)
    except ConfigError as err:
        raise ConfigError(f"command line: {err}") from None
    try:
        return _build(cls, deep_merge(data, tree))
    except ConfigError as err:
        # Blame the file only when the file alone is at fault; otherwise the command line broke it.
        blame = "command line"
        if path is not None:
            try:
                _build(cls, data)
            except ConfigError as alone:
                blame = str(path) if str(alone) == str(err) or not overrides else blame
        raise ConfigError(f"{blame}: {err}") from None


def shipped_configs() -> dict[str, Path]:
    """The configs installed with this package -> {name: file}, e.g. {'tiny': .../configs/tiny.yaml}."""
    folder = Path(str(importlib.resources.files("configs")))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def find_config(path: str | Path) -> Path:
    """--config -> the file to read: the path itself when it is a file, else the shipped config it names (`tiny`,
    `tiny.yaml`, `configs/tiny.yaml`); ConfigError listing the shipped names when neither exists."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = shipped_configs()
    by_name = path.parent in (Path("."), Path("configs")) and path.suffix in ("", ".yaml")
    if by_name and path.stem in shipped:
        return shipped[path.stem]
    raise ConfigError(f"config file {path} does not exist (shipped configs, by name: {', '.join(shipped)})")


def read_config_file(path: Path) -> dict[str, Any]:
    """A YAML config file -> its top-level mapping; ConfigError naming the file when it is not one."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({err})") from None
    loaded = safe_yaml(text, str(path))
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return loaded


def config_to_dict(config: Any) -> dict[str, Any]:
    """Dataclass -> plain dict of YAML-safe values (tuples become lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def dump_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
