"""A trained localizer in one file, and where it is found: the shipped models by name, weights files, run folders.

A weights file is safetensors whose metadata says how to use the tensors: `localizer`, a JSON object with the
model config, the sample rate, the clip length the model was trained on, the input normalization, the target
(`lateral` or `azimuth`), the mic spacing and a counting model's decoding thresholds (LocalizerSpec). So
`localize` and `evaluate` need nothing but this file, and loading it never executes code (safetensors holds tensors
and strings only). Nor is the file trusted: `load_localizer` checks every field of the metadata with the bounds of a
training config (ModelConfig, check_clip, Decoding: one set of checks), then the tensors' names and shapes against
that model (on the meta device, before the model is built), then their values (NaN or Inf is refused), each
problem a one-line CheckpointError; `save_localizer`, the one writer of the format, never writes weights that are
not finite.

    path = model_weights("two-talker")     # a shipped name, a weights file or a folder holding model.safetensors
    model, spec = load_localizer(path, "cpu")

Exporting the network as a graph for other runtimes is ssl_model.export's job.
"""
from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from configs import ConfigError, build_config, config_to_dict
from ssl_model.config import ModelConfig, Normalize
from ssl_model.model import SSLModel
from ssl_model.talkers import Decoding
from ssl_model.targets import Target
from ssl_model.weights_check import check_dtypes, check_metadata

SPEC_KEY = "localizer"
WEIGHTS = "model.safetensors"  # a run folder's exported weights, and the shipped model's file name
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
# The shipped models by name, each a folder of PRETRAINED_DIR (weights, training config, model card); the first is
# the default: the band-front-end localizer (0-3 talkers, noise, 4-20 cm), then the per-bin real-recordings
# localizer it replaced (6-16 cm) and the seed's two-talker model.
PRETRAINED_NAMES = ("wide", "real", "two-talker")
PRETRAINED = PRETRAINED_DIR / PRETRAINED_NAMES[0] / WEIGHTS


class CheckpointError(ValueError):
    """A weights file or saved state is not what it should be; nothing in it was executed."""


def model_weights(name_or_path: str | os.PathLike | None = None) -> Path:
    """A shipped model's name (PRETRAINED_NAMES; None: the default), a weights file, or a folder holding
    model.safetensors (a run folder, a shipped model's folder) -> the weights file; CheckpointError in one line
    saying which of the three was looked for and what was found instead."""
    if name_or_path is None or str(name_or_path) in PRETRAINED_NAMES:
        path = PRETRAINED_DIR / (str(name_or_path or PRETRAINED_NAMES[0])) / WEIGHTS
        if not path.is_file():
            raise CheckpointError(f"{path}: the shipped model's weights are missing (a broken install?)")
        return path
    path = Path(name_or_path)
    shipped = f"the shipped models: {', '.join(PRETRAINED_NAMES)}"
    if path.is_dir():
        if not (path / WEIGHTS).is_file():
            raise CheckpointError(f"{path}: a folder without {WEIGHTS} (a run folder gets it when training saves "
                                  f"or finishes); give a weights file, a folder holding one, or a name ({shipped})")
        return path / WEIGHTS
    if path.is_file():
        return path
    if path.suffix or len(path.parts) > 1:
        raise CheckpointError(f"{path}: no such weights file or folder")
    raise CheckpointError(f"{name_or_path!s}: neither a shipped model ({shipped}) nor a weights file or folder here")


def run_weights(run_dir: str | os.PathLike) -> Path:
    """A training run folder -> its model.safetensors; CheckpointError when the folder or the file is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run folder not found")
    path = run_dir / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a finished run ({path} not found)")
    return path


@dataclass(frozen=True)
class LocalizerSpec:
    """How to feed a trained model: its architecture, whose config carries the array record it was trained for
    (sample rate, mic spacing, speed of sound), and the input it was trained on. Checked when made, with the
    bounds of a training config (ConfigError naming the key)."""
    model: ModelConfig
    clip_samples: int
    normalize: Normalize  # ssl_model.features.normalize_wave mode
    target: Target
    decoding: Decoding = Decoding()  # a counting model's thresholds, chosen on a dev set (calibrate_decoding.py)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        self.model.validate()
        self.model.check_clip(self.clip_samples, "clip_samples")

    @property
    def sr(self) -> int:
        return self.model.sr

    @property
    def mic_spacing(self) -> float:
        """metres between mic 0 and mic 1 the model assumes when none is given"""
        return self.model.mic_spacing

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "model": config_to_dict(self.model)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LocalizerSpec":
        """Stored JSON -> the spec, every field typed and checked as a training config's (configs.build_config):
        ConfigError naming the key, or ValueError when it is not JSON. Files written before `decoding` existed
        get its defaults."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ConfigError(f"expected a JSON object, got {text[:40]!r}")
        # earlier files restate these beside the model config: they must agree with it
        restated = {key: data.pop(key) for key in ("sr", "mic_spacing") if key in data}
        for f in fields(cls):
            if f.default is MISSING and f.name not in data:
                raise ConfigError(f"{f.name}: missing")
        spec = build_config(cls, data)
        for key, value in restated.items():
            if value != getattr(spec.model, key):
                raise ConfigError(f"{key}: {value!r} differs from its model config's {getattr(spec.model, key)}")
        return spec


def non_finite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or Inf, or None when every one is finite."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def describe_non_finite(tensor: torch.Tensor) -> str:
    """tensor -> e.g. '3 NaN and 1 Inf of 2304 values'"""
    nans, infs = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
    return f"{nans} NaN and {infs} Inf of {tensor.numel()} values"


def save_localizer(model: torch.nn.Module, spec: LocalizerSpec, path: str | Path,
                   extra: dict[str, str] | None = None) -> Path:
    """Model + spec -> safetensors file (written to a temporary name, then renamed: never half-written)."""
    model_config = getattr(model, "config", None)
    if isinstance(model_config, ModelConfig) and model_config != spec.model:
        raise ValueError("the model's architecture differs from the spec's model config: the file would not load")
    state = model.state_dict()
    bad = non_finite(state)
    if bad is not None:
        raise ValueError(f"{path}: not written, its weights are not finite ({bad}: {describe_non_finite(state[bad])})")
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


def read_spec(path: str | Path) -> LocalizerSpec:
    """A weights file's stored spec, checked (LocalizerSpec.from_json); CheckpointError naming the file and key."""
    metadata = read_metadata(path)
    if SPEC_KEY not in metadata:
        raise CheckpointError(f"{path}: safetensors without the '{SPEC_KEY}' metadata this repository writes "
                              f"(a model exported by training/train.py or ssl_model.export.save_localizer)")
    try:
        return LocalizerSpec.from_json(metadata[SPEC_KEY])
    except ConfigError as err:
        raise CheckpointError(f"{path}: its '{SPEC_KEY}' metadata cannot work: {err}") from None
    except ValueError as err:
        raise CheckpointError(f"{path}: unreadable '{SPEC_KEY}' metadata ({err})") from None


def model_shapes(config: ModelConfig) -> dict[str, list[int]]:
    """The tensor shapes of SSLModel(config), built on the meta device: nothing is allocated."""
    with torch.device("meta"):
        model = SSLModel(config)
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


def check_shapes(path: str | Path, config: ModelConfig) -> None:
    """The file's tensors are those of a model of `config`, name and shape, before that model is built (a spec
    edited to a far bigger model would otherwise allocate it first); CheckpointError naming the first mismatch."""
    expected = model_shapes(config)
    with safe_open(str(path), framework="pt") as handle:
        stored = {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}
    for name in [*expected, *(name for name in stored if name not in expected)]:
        if expected.get(name) != stored.get(name):
            raise CheckpointError(f"{path}: its tensors do not fit the model its metadata describes: {name} is "
                                  f"{stored.get(name, 'missing')} in the file, {expected.get(name, 'absent')} in "
                                  f"that model")


def load_localizer(path: str | Path, device: str | torch.device = "cpu") -> tuple[SSLModel, LocalizerSpec]:
    """Weights file -> (SSLModel in eval mode on `device`, its spec). Checked in turn: the metadata (every field,
    with a training config's bounds), the tensors' names and shapes against it, then their values (all finite);
    CheckpointError in one line naming the file and the problem otherwise."""
    check_metadata(path, CheckpointError)  # issue 33: bounded metadata JSON (ssl_model.weights_check)
    spec = read_spec(path)
    check_shapes(path, spec.model)
    model = load_weights(SSLModel(spec.model), path, device)
    check_dtypes(path, model.state_dict(), CheckpointError)  # issue 33: no relabelled dtype loads silently
    state = model.state_dict()
    bad = non_finite(state)
    if bad is not None:
        raise CheckpointError(f"{path}: its weights are not finite ({bad}: {describe_non_finite(state[bad])}); the "
                              f"file is damaged or its training diverged")
    return model.to(device).eval(), spec
