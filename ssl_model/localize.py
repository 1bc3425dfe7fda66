"""Localize the two sources of stereo recordings with a trained model.

    python -m ssl_model.localize FILE [FILE ...] [--run DIR | --model FILE.safetensors] [--plot out.png] [--device cpu]

Without --run or --model it uses the pretrained model shipped in ssl_model/pretrained/. The model is
loaded once; each file (wav, flac or ogg, stereo: channel 0 = mic 0, channel 1 = mic 1, any sample rate)
is resampled to the model's rate, cut into windows of the training clip length (half-overlapping, the last
one aligned to the end; a recording shorter than one window is zero-padded, as training clips are),
normalized as the training mixtures were; the per-window posteriors are averaged and decoded into two
sorted angles. One JSON object per file, one per line. A bad file ends in a one-line `error: ...` on
stderr (the other files still run) and exit code 2, never a traceback. Weights are read from safetensors:
no code is executed on load.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shards.audio import decode_audio, resample
from ssl_model.export import CheckpointError, LocalizerSpec, load_localizer
from ssl_model.features import normalize_wave
from ssl_model.targets import decode_posteriors

MIN_SECONDS = 1.0
EXIT_BAD_INPUT = 2
PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "model.safetensors"
WEIGHTS = "model.safetensors"


class LocalizeError(Exception):
    """Input the CLI refuses; the message is printed as one line."""


def read_stereo(path: str | Path) -> tuple[np.ndarray, int]:
    """audio file -> (wave float32 [2, T], sample rate); raises LocalizeError for anything but finite stereo audio."""
    path = Path(path)
    if not path.exists():
        raise LocalizeError(f"{path}: no such file")
    if not path.is_file():
        raise LocalizeError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise LocalizeError(f"{path}: empty file (0 bytes)")
    try:
        data, sr = decode_audio(path, str(path), mono=False)  # [C, T]
    except ValueError as err:
        raise LocalizeError(f"{err} (expected stereo wav, flac or ogg)") from None
    channels, frames = data.shape
    if channels != 2:
        kind = "mono" if channels == 1 else f"{channels}-channel"
        raise LocalizeError(f"{path}: {kind} audio; expected stereo (2 channels: mic 0 left, mic 1 right)")
    seconds = frames / sr
    if seconds < MIN_SECONDS:
        raise LocalizeError(f"{path}: {seconds:.3f} s of audio is too short; need at least {MIN_SECONDS:g} s")
    if not np.any(data):
        raise LocalizeError(f"{path}: silent (every sample is zero)")
    return data, int(sr)


def window_starts(num_samples: int, window: int) -> list[int]:
    """Starts of half-overlapping windows covering [0, num_samples); the last one ends at the end."""
    if num_samples <= window:
        return [0]
    hop = max(1, window // 2)
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] != num_samples - window:
        starts.append(num_samples - window)
    return starts


def cut_windows(wave: torch.Tensor, window: int) -> tuple[torch.Tensor, list[int]]:
    """wave [2, T] -> (windows [W, 2, window] zero-padded at the end, starts [W])."""
    starts = window_starts(wave.shape[-1], window)
    if wave.shape[-1] < window:
        wave = torch.nn.functional.pad(wave, (0, window - wave.shape[-1]))
    return torch.stack([wave[:, s:s + window] for s in starts]), starts


@torch.no_grad()
def window_posteriors(model: torch.nn.Module, windows: torch.Tensor, normalize: str, chunk: int = 16) -> torch.Tensor:
    """windows [W, 2, T] -> posteriors [W, slots, classes] (softmax per slot)."""
    out = []
    for i in range(0, windows.shape[0], chunk):
        batch = normalize_wave(windows[i:i + chunk], normalize)
        out.append(model(batch).float().softmax(dim=-1))
    return torch.cat(out)


def torch_device(name: str) -> torch.device:
    """--device value -> torch.device; LocalizeError for a malformed name or a CUDA device that is not there."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LocalizeError(f"--device {name}: not a torch device name (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LocalizeError(f"--device {name}: torch finds no CUDA device on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise LocalizeError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def weights_path(run: str | None, model: str | None) -> Path:
    """--run DIR / --model FILE / neither (the shipped pretrained model) -> the weights file to load."""
    if run is not None:
        run_dir = Path(run)
        if not run_dir.is_dir():
            raise LocalizeError(f"{run_dir}: run folder not found")
        path = run_dir / WEIGHTS
        if not path.is_file():
            raise LocalizeError(f"{run_dir}: not a finished run ({path} not found)")
        return path
    path = Path(model) if model is not None else PRETRAINED
    if not path.is_file():
        raise LocalizeError(f"{path}: no such weights file" + ("" if model else "; pass --run DIR or --model FILE"))
    return path


def load_model_checked(path: Path, device: torch.device) -> tuple[torch.nn.Module, LocalizerSpec]:
    try:
        return load_localizer(path, device)
    except CheckpointError as err:
        raise LocalizeError(str(err)) from None


def localize_wave(wave: np.ndarray, sr_in: int, model: torch.nn.Module, spec: LocalizerSpec,
                  device: torch.device | str = "cpu") -> dict[str, Any]:
    """wave [2, T] at sr_in -> result dict (angles_deg, target, probabilities, posteriors, windows)."""
    sr, window = spec.sr, spec.clip_samples
    x = resample(torch.from_numpy(np.asarray(wave, np.float32)), sr_in, sr).to(device)
    windows, starts = cut_windows(x, window)
    probs = window_posteriors(model, windows, spec.normalize)  # [W, S, C]
    win_classes, win_angles, _ = decode_posteriors(probs)
    classes, angles, mean = decode_posteriors(probs.mean(dim=0, keepdim=True))
    chosen = mean[0].gather(-1, classes[0][:, None])[:, 0]
    return {
        "angles_deg": [round(float(a), 2) for a in angles[0]],
        "target": spec.target,
        "classes": [int(c) for c in classes[0]],
        "probabilities": [round(float(p), 4) for p in chosen],
        "bin_deg": 180.0 / mean.shape[-1],
        "posteriors": [[round(float(p), 5) for p in slot] for slot in mean[0]],
        "windows": [
            {"start_s": round(s / sr, 3), "end_s": round(min(s + window, x.shape[-1]) / sr, 3),
             "angles_deg": [round(float(a), 2) for a in a_row],
             "classes": [int(c) for c in c_row]}
            for s, a_row, c_row in zip(starts, win_angles, win_classes)
        ],
        "sample_rate_in": sr_in,
        "sample_rate_model": sr,
        "duration_s": round(wave.shape[-1] / sr_in, 3),
        "window_s": round(window / sr, 3),
    }


def plot_half_circle(result: dict[str, Any], path: str | Path, title: str = "",
                     truth_deg: list[float] | None = None) -> Path:
    """Both slots' posteriors as bars on a half-circle around the array (mic axis along 0-180 degrees);
    `truth_deg`, when known (a simulated scene), is marked on the rim."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    posteriors = np.asarray(result["posteriors"], float)  # [S, C]
    bin_deg = float(result["bin_deg"])
    centers = np.deg2rad((np.arange(posteriors.shape[1]) + 0.5) * bin_deg)
    peak = max(float(posteriors.max()), 1e-6)
    inner = 0.35 * peak  # bars start on a ring; the array sits inside it
    top = inner + peak * 1.05
    fig = plt.figure(figsize=(7.2, 4.4))
    ax = fig.add_subplot(projection="polar")
    ax.set_thetamin(0)
    ax.set_thetamax(180)
    colors = ("tab:blue", "tab:red")
    for slot, probs in enumerate(posteriors):
        angle = result["angles_deg"][slot]
        ax.bar(centers, probs, width=np.deg2rad(bin_deg), bottom=inner, alpha=0.45, color=colors[slot % 2],
               edgecolor=colors[slot % 2], label=f"source {slot + 1}: {angle:.1f}° (p={result['probabilities'][slot]:.2f})")
        ax.plot([np.deg2rad(angle)] * 2, [0, top], color=colors[slot % 2], lw=1.5, ls="--")
    ax.plot(np.linspace(0, np.pi, 100), np.full(100, inner), color="0.5", lw=0.8)
    if truth_deg is not None:
        ax.plot(np.deg2rad(truth_deg), np.full(len(truth_deg), top * 0.97), "kv", ms=8,
                label="true: " + ", ".join(f"{a:.1f}°" for a in truth_deg))
    # The mic axis (schematic, not to scale): mic 0 at 180 degrees, mic 1 at 0 degrees (+x, from mic 0 to mic 1).
    mic_r = 0.45 * inner
    ax.plot([np.pi, 0], [mic_r, mic_r], color="k", lw=2)
    ax.plot([np.pi, 0], [mic_r, mic_r], "ks", ms=7)
    ax.annotate("mic 0", (np.pi, mic_r), xytext=(0, -13), textcoords="offset points", ha="center", fontsize=8)
    ax.annotate("mic 1", (0, mic_r), xytext=(0, -13), textcoords="offset points", ha="center", fontsize=8)
    ax.set_ylim(0, top)
    ax.set_yticks([])
    ax.set_thetagrids(range(0, 181, 30), [f"{d}°" for d in range(0, 181, 30)])
    what = ("azimuth in the horizontal plane" if result["target"] == "azimuth"
            else "lateral angle from the mic axis")
    ax.set_title((title or "Two-source posteriors") + f"\n{what} (0° = towards mic 1); bar length: posterior probability",
                 fontsize=10, y=0.9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.2), ncol=3, fontsize=8, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ssl_model.localize", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="stereo wav, flac or ogg (channel 0 = mic 0, channel 1 = mic 1), >= 1 s")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run", help="run folder holding model.safetensors (training/train.py output)")
    which.add_argument("--model", help="a weights file (default: the shipped ssl_model/pretrained/model.safetensors)")
    parser.add_argument("--plot", help="PNG of the posteriors on a half-circle (with several files: a folder, "
                                       "one FILE-stem.png each)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser.parse_args(argv)


def plot_path(plot: str, file: Path, many: bool) -> Path:
    return Path(plot) / f"{file.stem}.png" if many else Path(plot)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = torch_device(args.device)
        model, spec = load_model_checked(weights_path(args.run, args.model), device)
    except LocalizeError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    failed = 0
    for file in map(Path, args.files):
        try:
            wave, sr_in = read_stereo(file)
            result = {"file": str(file), **localize_wave(wave, sr_in, model, spec, device)}
            if args.plot:
                target = plot_path(args.plot, file, len(args.files) > 1)
                result["plot"] = str(plot_half_circle(result, target, title=file.name))
        except LocalizeError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        except (ValueError, OSError) as err:  # a bad --plot path, an input the model cannot take
            print(f"error: {file}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps(result), flush=True)
    return EXIT_BAD_INPUT if failed else 0


if __name__ == "__main__":
    sys.exit(main())
