"""Warm start: a new run's first weights taken from trained weights of another (compatible) architecture.

The real-recordings recipe starts from the shipped two-talker localizer: same encoder, one more slot, new heads.
Every tensor whose name and shape match is copied. A tensor of another shape is refused unless `run.init_partial`
names it (a name, or a dotted prefix such as `backbone.`): then, when it differs only in its first dimension (the
slot queries: 2 -> 3), it gets the overlapping rows, and the position table, laid out as [slots, time tokens], is
realigned so that every time token keeps its trained row. The model's tensors the file lacks (new heads) keep their
fresh initialization. Weights holding NaN or Inf are refused. Only used when a run starts: a resumed run reads its
own state.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from configs import ConfigError
from ssl_model.export import WEIGHTS, describe_non_finite, non_finite

KEY = "run.init_from"
PARTIAL_KEY = "run.init_partial"
FRESH_KEY = "run.init_fresh"


def weights_path(source: str | Path) -> Path:
    """A safetensors file, or a folder holding model.safetensors (a run folder, ssl_model/pretrained)."""
    path = Path(source)
    if path.is_dir():
        path = path / WEIGHTS
    if not path.is_file():
        raise ConfigError(f"{KEY}: {source} is neither a safetensors file nor a folder holding {WEIGHTS}")
    return path


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """safetensors file -> its tensors; ConfigError when it is unreadable or a tensor holds NaN/Inf."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ConfigError(f"{KEY}: {path} is not a readable safetensors file ({err})") from None
    bad = non_finite(tensors)
    if bad is not None:
        raise ConfigError(f"{KEY}: {path}: {bad} is not finite ({describe_non_finite(tensors[bad])}); a run "
                          f"cannot start from weights holding NaN or Inf")
    return tensors


def allowed(name: str, partial: tuple[str, ...]) -> bool:
    """Whether run.init_partial lets tensor `name` be copied in part: an entry equal to it or a dotted prefix."""
    return any(name == entry or name.startswith(entry.rstrip(".") + ".") for entry in partial)


def check_partial_names(partial: tuple[str, ...], state: dict[str, torch.Tensor], key: str = PARTIAL_KEY) -> None:
    """Every entry of run.init_partial (or `key`) names a tensor of the model (a typo would otherwise allow
    nothing)."""
    for entry in partial:
        if not any(allowed(name, (entry,)) for name in state):
            raise ConfigError(f"{key}: {entry!r} names no tensor of this model (a tensor name such as "
                              f"cls_tokens, or a dotted prefix such as backbone.)")


def shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


def classify(state: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], partial: tuple[str, ...],
             path: Path) -> dict[str, list[str]]:
    """-> names per outcome: copied (same shape), partial (first dimension differs, allowed by name), fresh (the
    model's tensors the file lacks), unused (the file's tensors the model lacks). ConfigError naming the first
    tensor whose shape differs when partial loading does not allow it."""
    report: dict[str, list[str]] = {"copied": [], "partial": [], "fresh": [], "unused": sorted(set(tensors) - set(state))}
    refused: list[str] = []
    for name, target in state.items():
        source = tensors.get(name)
        if source is None:
            report["fresh"].append(name)
        elif source.shape == target.shape:
            report["copied"].append(name)
        elif allowed(name, partial):
            if source.dim() != target.dim() or source.shape[1:] != target.shape[1:]:
                raise ConfigError(f"{KEY}: {name} is {shape(source)} in {path}, {shape(target)} in this model: it "
                                  f"differs beyond its first dimension, so it cannot be copied in part")
            report["partial"].append(name)
        else:
            refused.append(name)
    if refused:
        first = refused[0]
        raise ConfigError(f"{KEY}: {first} is {shape(tensors[first])} in {path}, {shape(state[first])} in this model "
                          f"({len(refused)} tensor(s) of another shape: a model of another size or layout); list the "
                          f"tensors meant to be copied in part in {PARTIAL_KEY} (e.g. [cls_tokens, pos_embedding] "
                          f"for more slots)")
    return report


def realign_positions(tensors: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The source's position table [slots + tokens, dim] laid out for the model's slot count: slot rows first (the
    model's own fresh rows past the source's slots), then the source's time-token rows."""
    if not {"cls_tokens", "pos_embedding"} <= set(tensors) & set(state):
        return tensors
    old_slots, new_slots = tensors["cls_tokens"].shape[0], state["cls_tokens"].shape[0]
    source, target = tensors["pos_embedding"], state["pos_embedding"]
    if old_slots == new_slots or source.shape[1:] != target.shape[1:]:
        return tensors
    table = target.clone()
    slots = min(old_slots, new_slots)
    table[:slots] = source[:slots]
    tokens = min(source.shape[0] - old_slots, target.shape[0] - new_slots)
    table[new_slots:new_slots + tokens] = source[old_slots:old_slots + tokens]
    return {**tensors, "pos_embedding": table}


def copy_in(state: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], report: dict[str, list[str]]) -> None:
    """Copy the report's copied tensors whole and its partial ones by their leading rows (the realigned position
    table, already of the model's shape, whole)."""
    aligned = realign_positions(tensors, state) if "pos_embedding" in report["partial"] else tensors
    with torch.no_grad():
        for name in report["copied"]:
            state[name].copy_(tensors[name])
        for name in report["partial"]:
            source, target = aligned[name], state[name]
            rows = min(source.shape[0], target.shape[0])
            target[:rows].copy_(source[:rows])


def warm_start(model: torch.nn.Module, source: str | Path, partial: tuple[str, ...] = (),
               fresh: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """model, weights file or folder, run.init_partial, run.init_fresh -> the copy report (classify; the tensors
    `fresh` names count as the model's own); ConfigError, with the model untouched, when the file is unreadable or
    not finite, a shape differs where partial loading is not allowed, or nothing fits."""
    path = weights_path(source)
    state = model.state_dict()
    check_partial_names(tuple(partial), state)
    check_partial_names(tuple(fresh), state, FRESH_KEY)
    tensors = {name: t for name, t in read_tensors(path).items() if not allowed(name, tuple(fresh))}
    report = classify(state, tensors, tuple(partial), path)
    if not report["copied"] and not report["partial"]:
        raise ConfigError(f"{KEY}: no tensor of {path} fits this model (another architecture?)")
    copy_in(state, tensors, report)
    return report


def summary(report: dict[str, list[str]]) -> str:
    """The copy report in one line: how many tensors were copied, and which were copied in part, left fresh or
    not used."""
    def named(key: str) -> str:
        return f" ({', '.join(report[key])})" if report[key] else ""

    line = (f"{KEY}: {len(report['copied'])} tensors copied, {len(report['partial'])} in part{named('partial')}, "
            f"{len(report['fresh'])} fresh{named('fresh')}")
    return line + (f", {len(report['unused'])} of the file not used{named('unused')}" if report["unused"] else "")
