"""Warm start: a new run's first weights taken from trained weights of another (compatible) architecture.

The real-recordings recipe starts from the shipped two-talker localizer: same encoder, one more slot, new heads.
Every tensor whose name and shape match is copied; a tensor whose shape differs only in its first dimension
(the slot queries: 2 -> 3) gets the overlapping rows; the position table, laid out as [slots, time tokens], is
realigned so that every time token keeps its trained row; everything else keeps its fresh initialization. Only used
when a run starts: a resumed run reads its own state.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from configs import ConfigError
from ssl_model.export import WEIGHTS


def weights_path(source: str | Path) -> Path:
    """A safetensors file, or a folder holding model.safetensors (a run folder, ssl_model/pretrained)."""
    path = Path(source)
    if path.is_dir():
        path = path / WEIGHTS
    if not path.is_file():
        raise ConfigError(f"run.init_from: {source} is neither a safetensors file nor a folder holding {WEIGHTS}")
    return path


def copy_matching(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Copy `tensors` into the model's state where names match (module docstring). -> names per outcome:
    copied, partial (leading rows), fresh (the model's tensors nothing was copied into), unused (source only)."""
    state = model.state_dict()
    report: dict[str, list[str]] = {"copied": [], "partial": [], "fresh": [], "unused": sorted(set(tensors) - set(state))}
    with torch.no_grad():
        for name, target in state.items():
            source = tensors.get(name)
            if source is None or source.dim() != target.dim() or source.shape[1:] != target.shape[1:]:
                report["fresh"].append(name)
            elif source.shape == target.shape:
                target.copy_(source)
                report["copied"].append(name)
            else:
                rows = min(source.shape[0], target.shape[0])
                target[:rows].copy_(source[:rows])
                report["partial"].append(name)
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


def warm_start(model: torch.nn.Module, source: str | Path) -> dict[str, list[str]]:
    """model, weights file or folder -> the copy report (copy_matching); ConfigError when nothing fits."""
    path = weights_path(source)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ConfigError(f"run.init_from: {path} is not a readable safetensors file ({err})") from None
    report = copy_matching(model, realign_positions(tensors, model.state_dict()))
    if not report["copied"]:
        raise ConfigError(f"run.init_from: no tensor of {path} fits this model (another architecture?)")
    return report
