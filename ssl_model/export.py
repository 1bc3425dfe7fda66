"""A trained localizer in one file: safetensors weights whose metadata says how to use them.

The metadata (string to string, as safetensors stores it) holds `localizer`: a JSON object with the model
config, the sample rate, the clip length the model was trained on, the input normalization, the target
(`lateral` or `azimuth`) and the mic spacing. So `localize` and `evaluate` need nothing but this file,
and loading it never executes code (safetensors holds tensors and strings only).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from configs import ConfigError, build_config, config_to_dict
from ssl_model.config import ModelConfig
from ssl_model.model import SSLModel

SPEC_KEY = "localizer"


class CheckpointError(ValueError):
    """A weights file or saved state is not what it should be; nothing in it was executed."""


@dataclass(frozen=True)
class LocalizerSpec:
    """How to feed a trained model: its architecture and the input it was trained on."""
    model: ModelConfig
    sr: int
    clip_samples: int
    normalize: str  # ssl_model.features.normalize_wave mode
    target: str  # lateral or azimuth
    mic_spacing: float  # metres between mic 0 and mic 1

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "model": config_to_dict(self.model)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LocalizerSpec":
        data = json.loads(text)
        return cls(**{**data, "model": build_config(ModelConfig, data["model"])})


def save_localizer(model: torch.nn.Module, spec: LocalizerSpec, path: str | Path,
                   extra: dict[str, str] | None = None) -> Path:
    """Model + spec -> safetensors file (written to a temporary name, then renamed: never half-written)."""
    model_config = getattr(model, "config", None)
    if isinstance(model_config, ModelConfig) and model_config != spec.model:
        raise ValueError("the model's architecture differs from the spec's model config: the file would not load")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp), metadata={"format": "pt", SPEC_KEY: spec.to_json(), **(extra or {})})
    os.replace(tmp, path)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """A safetensors file's metadata; CheckpointError naming the file when it is not safetensors."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a safetensors file ({reason})") from None


def load_weights(model: torch.nn.Module, path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """safetensors file -> model (strict: every key must match). CheckpointError naming the file otherwise."""
    try:
        load_model(model, str(path), strict=True, device=str(device))
    except (SafetensorError, RuntimeError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a safetensors file holding this model's weights ({reason})") from None
    return model


def load_localizer(path: str | Path, device: str | torch.device = "cpu") -> tuple[SSLModel, LocalizerSpec]:
    """Weights file -> (SSLModel in eval mode on `device`, its spec); CheckpointError naming the file otherwise."""
    metadata = read_metadata(path)
    if SPEC_KEY not in metadata:
        raise CheckpointError(f"{path}: safetensors without the '{SPEC_KEY}' metadata this repository writes "
                              f"(a model exported by training/train.py or ssl_model.export.save_localizer)")
    try:
        spec = LocalizerSpec.from_json(metadata[SPEC_KEY])
    except (ValueError, TypeError, KeyError, ConfigError) as err:
        raise CheckpointError(f"{path}: unreadable '{SPEC_KEY}' metadata ({err})") from None
    model = load_weights(SSLModel(spec.model), path, device)
    return model.to(device).eval(), spec


def describe(path: str | Path) -> dict[str, Any]:
    """The metadata of a weights file, JSON values decoded where they are JSON."""
    out: dict[str, Any] = {}
    for key, value in read_metadata(path).items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out
