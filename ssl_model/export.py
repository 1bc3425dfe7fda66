"""A trained localizer in one file: safetensors weights whose metadata says how to use them.

The metadata (string to string, as safetensors stores it) holds `localizer`: a JSON object with the model
config, the sample rate, the clip length the model was trained on, the input normalization, the target
(`lateral` or `azimuth`), the mic spacing and a counting model's decoding thresholds. So `localize` and
`evaluate` need nothing but this file, and loading it never executes code (safetensors holds tensors and
strings only). Nor is the file trusted: `load_localizer` checks every field of the metadata with the bounds of a
training config (ModelConfig, check_clip, Decoding: one set of checks), then the tensors' names and shapes against
that model (on the meta device, before the model is built), then their values (NaN or Inf is refused), each
problem a one-line CheckpointError; `save_localizer` never writes weights that are not finite.

For use outside this repository the localizer's network (Posteriors: normalization, model, softmax) is
exported as a graph, with the spec beside it:

    python -m ssl_model.export [--model FILE.safetensors] --out DIR [--onnx] [-q | -v]

writes DIR/localizer.pt2 (torch.export.save; torch.export.load(path).module() runs it, the spec is its extra
file localizer.json), DIR/localizer.json, and with --onnx DIR/localizer.onnx (needs the onnx and onnxscript
packages, which this project does not install). Input: windows [batch, 2, clip_samples] at spec.sr, any batch,
and the mic spacing [batch] in metres; output: (posteriors [batch, slots, classes], existence [batch, slots], track
[batch, steps, classes]) (Posteriors). Cutting a recording into windows and decoding the outputs into talkers is
ssl_model.localizer's job (window_starts, targets.decode_slot_posteriors). One JSON line on stdout names
the files and the largest difference between the exported graph and the eager model on a test input.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import warnings
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from configs import ConfigError, build_config, config_to_dict
from ssl_model.cli_log import add_verbosity, setup_logging
from ssl_model.config import ModelConfig, Normalize
from ssl_model.features import normalize_wave
from ssl_model.model import SSLModel
from ssl_model.talkers import Decoding
from ssl_model.targets import Target

SPEC_KEY = "localizer"
WEIGHTS = "model.safetensors"  # a run folder's exported weights, and the shipped model's file name
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
# The shipped models by name, each a folder of PRETRAINED_DIR (weights, training config, model card); the first is
# the default: the real-recordings localizer (0-3 talkers, noise, 6-16 cm), then the seed's two-talker model.
PRETRAINED_NAMES = ("real", "two-talker")
PRETRAINED = PRETRAINED_DIR / PRETRAINED_NAMES[0] / WEIGHTS
PROGRAM, ONNX, SPEC_FILE = "localizer.pt2", "localizer.onnx", "localizer.json"
MAX_BATCH = 4096  # the exported batch dimension's upper bound
# torch's own notes when it writes and reads a CPU archive (weights stored once, read as read-only views)
TORCH_ARCHIVE_NOTES = "No complete tensor found|The given buffer is not writable"
log = logging.getLogger("ssl_model.export")


class CheckpointError(ValueError):
    """A weights file or saved state is not what it should be; nothing in it was executed."""


def model_weights(name_or_path: str | Path | None = None) -> Path:
    """A shipped model's name (PRETRAINED_NAMES; None: the default), or a weights file, or a folder holding
    model.safetensors -> the weights file; CheckpointError when there is none."""
    if name_or_path is None or str(name_or_path) in PRETRAINED_NAMES:
        path = PRETRAINED_DIR / (str(name_or_path or PRETRAINED_NAMES[0])) / WEIGHTS
        if not path.is_file():
            raise CheckpointError(f"{path}: the shipped model's weights are missing (a broken install?)")
        return path
    path = Path(name_or_path)
    if path.is_dir():
        path = path / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{name_or_path}: neither a weights file nor a shipped model "
                              f"({', '.join(PRETRAINED_NAMES)})")
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
    spec = read_spec(path)
    check_shapes(path, spec.model)
    model = load_weights(SSLModel(spec.model), path, device)
    state = model.state_dict()
    bad = non_finite(state)
    if bad is not None:
        raise CheckpointError(f"{path}: its weights are not finite ({bad}: {describe_non_finite(state[bad])}); the "
                              f"file is damaged or its training diverged")
    return model.to(device).eval(), spec


class Posteriors(nn.Module):
    """The localizer's network: windows [B, 2, clip_samples] at the model's rate, mic spacing [B] or one for all
    [] (metres) ->
    (posteriors [B, slots, classes] (softmax per slot), existence [B, slots] (probability that each slot holds a
    talker: 1 for a model without a count head), track [B, steps, classes] (per-step activity probability per
    direction class; steps = 0 for a model without a frame head)). Each window is normalized as the training
    mixtures were; the spacing steers the model's spatial features (ignored by a model trained for one spacing)."""

    def __init__(self, model: nn.Module, normalize: str):
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, windows: torch.Tensor, mic_spacing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(normalize_wave(windows, self.normalize), mic_spacing, heads=True)
        posteriors = out.logits.float().softmax(dim=-1)
        exist = torch.ones_like(posteriors[..., 0]) if out.exist is None else out.exist.float().sigmoid()
        track = posteriors.new_zeros(posteriors.shape[0], 0, posteriors.shape[-1]) if out.track is None \
            else out.track.float().sigmoid()
        return posteriors, exist, track


def example_windows(spec: LocalizerSpec, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded test input: (noise windows [batch, 2, clip_samples], the model's spacing [batch]) (batch 2: export
    keeps a batch of 1 static)."""
    windows = torch.randn(batch, 2, spec.clip_samples, generator=torch.Generator().manual_seed(seed))
    return windows, torch.full((batch,), spec.model.mic_spacing)


def export_program(model: nn.Module, spec: LocalizerSpec) -> torch.export.ExportedProgram:
    """Model + spec -> torch.export program of Posteriors on the CPU, batch dimension dynamic (1..MAX_BATCH)."""
    network = Posteriors(model.cpu().eval(), spec.normalize).eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        return torch.export.export(network, example_windows(spec),
                                   dynamic_shapes={"windows": {0: batch}, "mic_spacing": {0: batch}})


def onnx_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxscript"))


def write_exports(weights: str | Path, out: str | Path, onnx: bool = False) -> dict[str, str | float]:
    """weights file -> DIR/localizer.pt2, DIR/localizer.json (and DIR/localizer.onnx) -> {name: path,
    'max_abs_diff': largest |exported - eager| posterior on example_windows(spec, seed=1)}."""
    model, spec = load_localizer(weights, "cpu")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    program = export_program(model, spec)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCH_ARCHIVE_NOTES)
        torch.export.save(program, out / PROGRAM, extra_files={SPEC_FILE: spec.to_json()})
    (out / SPEC_FILE).write_text(spec.to_json() + "\n")
    written: dict[str, str | float] = {"pt2": str(out / PROGRAM), "spec": str(out / SPEC_FILE)}
    if onnx:
        torch.onnx.export(program, example_windows(spec), str(out / ONNX), dynamo=True)
        written["onnx"] = str(out / ONNX)
    check = example_windows(spec, batch=3, seed=1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCH_ARCHIVE_NOTES)
        eager = Posteriors(model, spec.normalize)(*check)
        exported = torch.export.load(out / PROGRAM).module()(*check)
    written["max_abs_diff"] = max(float((e - x).abs().max()) if e.numel() else 0.0 for e, x in zip(eager, exported))
    return written


def command_name(module: str) -> str:
    """The command this process was started as, for a usage line: `python -m MODULE` when run as that module,
    `python PATH` for a script path, else the program's name (a console script such as ssl-export)."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) == module or not sys.argv or not sys.argv[0]:
        return f"python -m {module}"
    program = Path(sys.argv[0])
    return f"python {sys.argv[0]}" if program.suffix == ".py" else program.name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=command_name("ssl_model.export"), description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=PRETRAINED_NAMES[0],
                   help=f"a shipped model ({', '.join(PRETRAINED_NAMES)}; default {PRETRAINED_NAMES[0]}) or a weights file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--onnx", action="store_true", help="also write localizer.onnx (needs onnx and onnxscript)")
    add_verbosity(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    if args.onnx and not onnx_available():
        log.error("--onnx: the onnx and onnxscript packages are not installed (pip install onnx onnxscript)")
        return 2
    try:
        written = write_exports(model_weights(args.model), args.out, args.onnx)
    except CheckpointError as err:
        log.error("%s", err)
        return 2
    except OSError as err:  # --out is a file, read-only, full
        log.error("%s: %s", args.out, err.strerror or err)
        return 2
    log.info("exported %s to %s", args.model, args.out)
    print(json.dumps(written), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
