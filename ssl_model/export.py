"""A trained localizer's network as a graph for other runtimes, with the spec of its input beside it.

    python -m ssl_model.export [--model NAME|FILE|FOLDER] --out DIR [--onnx] [-q | -v]     (= ssl-export)

writes DIR/localizer.pt2 (torch.export.save; torch.export.load(path).module() runs it, the spec is its extra
file localizer.json), DIR/localizer.json, and with --onnx DIR/localizer.onnx (needs the onnx and onnxscript
packages, which this project does not install). Input: windows [batch, 2, clip_samples] at spec.sr, any batch,
and the mic spacing [batch] in metres; output: (posteriors [batch, slots, classes], existence [batch, slots], track
[batch, steps, classes]) (Posteriors). Cutting a recording into windows and decoding the outputs into talkers is
ssl_model.localizer's job (window_starts, targets.decode_slot_posteriors). One JSON line on stdout names
the files and the largest difference between the exported graph and the eager model on a test input.

The weights file it reads (safetensors with its usage in the metadata), its checks and the shipped models by name
are ssl_model.loading's.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from configs.cli_log import add_verbosity, command_name, setup_logging
from ssl_model.features import normalize_wave
from ssl_model.loading import PRETRAINED_NAMES, CheckpointError, LocalizerSpec, load_localizer, model_weights
# training/ still imports these from here (its owner moves them to ssl_model.loading); not used below
from ssl_model.loading import WEIGHTS, describe_non_finite, non_finite, save_localizer  # noqa: F401

PROGRAM, ONNX, SPEC_FILE = "localizer.pt2", "localizer.onnx", "localizer.json"
MAX_BATCH = 4096  # the exported batch dimension's upper bound
# torch's own notes when it writes and reads a CPU archive (weights stored once, read as read-only views)
TORCH_ARCHIVE_NOTES = "No complete tensor found|The given buffer is not writable"
log = logging.getLogger("ssl_model.export")


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=command_name("ssl_model.export"),
        description="Write a trained localizer's network as a torch.export program (localizer.pt2) with its input "
                    "spec (localizer.json), and as ONNX with --onnx, for other runtimes.")
    p.add_argument("--model", default=PRETRAINED_NAMES[0],
                   help=f"a shipped model ({', '.join(PRETRAINED_NAMES)}; default {PRETRAINED_NAMES[0]}), a weights "
                        f"file or a folder holding model.safetensors")
    p.add_argument("--out", required=True, help="output folder (exported/ is ignored by git)")
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
