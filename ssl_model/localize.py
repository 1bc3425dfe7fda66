"""Localize the two sources of a stereo recording with a trained run.

    python -m ssl_model.localize FILE --run DIR [--plot out.png] [--device cpu]

Reads a stereo wav/flac at any sample rate (soundfile), resamples it to the model's rate (torchaudio),
cuts it into windows of the training clip length (half-overlapping, the last one aligned to the end;
a recording shorter than one window is zero-padded, as training clips are), normalizes each window as the
training mixtures were, averages the per-window posteriors and decodes two sorted angles. Prints one JSON
object. Bad input ends with a one-line `error: ...` on stderr and exit code 2, never a traceback.
Weights are read from safetensors (no code is executed on load).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

MIN_SECONDS = 1.0
EXIT_BAD_INPUT = 2


class LocalizeError(Exception):
    """Input the CLI refuses; the message is printed as one line."""


def read_stereo(path: str | Path) -> tuple[np.ndarray, int]:
    """audio file -> (wave float32 [2, T], sample rate); raises LocalizeError for anything but finite stereo audio."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise LocalizeError(f"{path}: no such file")
    if not path.is_file():
        raise LocalizeError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise LocalizeError(f"{path}: empty file (0 bytes)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        reason = getattr(err, "error_string", "") or str(err) or type(err).__name__
        raise LocalizeError(f"{path}: not a readable audio file (expected stereo wav or flac; {reason})") from None
    frames, channels = data.shape
    if channels != 2:
        kind = "mono" if channels == 1 else f"{channels}-channel"
        raise LocalizeError(f"{path}: {kind} audio; expected stereo (2 channels: mic 0 left, mic 1 right)")
    if frames == 0:
        raise LocalizeError(f"{path}: no audio samples")
    bad = int((~np.isfinite(data)).sum())
    if bad:
        raise LocalizeError(f"{path}: {bad} of {data.size} samples are NaN or infinite")
    seconds = frames / sr
    if seconds < MIN_SECONDS:
        raise LocalizeError(f"{path}: {seconds:.3f} s of audio is too short; need at least {MIN_SECONDS:g} s")
    if not np.any(data):
        raise LocalizeError(f"{path}: silent (every sample is zero)")
    return np.ascontiguousarray(data.T), int(sr)


def resample(wave: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """wave [C, T] at sr_in -> [C, T * sr_out / sr_in] at sr_out (torchaudio's windowed sinc)."""
    if sr_in == sr_out:
        return wave
    import torchaudio.functional as AF

    g = math.gcd(sr_in, sr_out)
    return AF.resample(wave, sr_in // g, sr_out // g)


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
    from training.mixing import normalize_wave

    out = []
    for i in range(0, windows.shape[0], chunk):
        batch = normalize_wave(windows[i:i + chunk], normalize)
        out.append(model(batch).float().softmax(dim=-1))
    return torch.cat(out)


def decode_posteriors(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """probs [B, S, C] -> (classes [B, S], angles_deg [B, S], probs [B, S, C]) with slots sorted by angle."""
    from ssl_model.targets import decode

    classes, angles = decode(probs.clamp_min(1e-12).log())
    angles, order = angles.sort(dim=-1)
    classes = classes.gather(-1, order)
    probs = probs.gather(1, order[..., None].expand_as(probs))
    return classes, angles, probs


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


def load_run_checked(run_dir: str | Path, device: torch.device) -> tuple[torch.nn.Module, Any]:
    from training.checkpoint import load_run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LocalizeError(f"{run_dir}: run folder not found")
    try:
        model, cfg = load_run(run_dir, device)
    except FileNotFoundError as err:
        raise LocalizeError(f"{run_dir}: not a finished run ({err})") from None
    except ValueError as err:  # CheckpointError (weights not loadable as safetensors) or ConfigError
        raise LocalizeError(str(err)) from None
    model.eval()
    return model, cfg


def localize_wave(wave: np.ndarray, sr_in: int, model: torch.nn.Module, cfg: Any,
                  device: torch.device | str = "cpu") -> dict[str, Any]:
    """wave [2, T] at sr_in -> result dict (angles_deg, target, probabilities, posteriors, windows)."""
    sr = int(cfg.sr)
    window = int(cfg.clip_samples)
    x = resample(torch.from_numpy(np.asarray(wave, np.float32)), sr_in, sr).to(device)
    windows, starts = cut_windows(x, window)
    probs = window_posteriors(model, windows, cfg.mix.normalize)  # [W, S, C]
    win_classes, win_angles, _ = decode_posteriors(probs)
    classes, angles, mean = decode_posteriors(probs.mean(dim=0, keepdim=True))
    num_classes = mean.shape[-1]
    bin_deg = 180.0 / num_classes
    chosen = mean[0].gather(-1, classes[0][:, None])[:, 0]
    return {
        "angles_deg": [round(float(a), 2) for a in angles[0]],
        "target": cfg.target,
        "classes": [int(c) for c in classes[0]],
        "probabilities": [round(float(p), 4) for p in chosen],
        "bin_deg": bin_deg,
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
    parser.add_argument("file", help="stereo wav or flac (channel 0 = mic 0, channel 1 = mic 1), >= 1 s")
    parser.add_argument("--run", required=True, help="run folder holding config.yaml and model.safetensors")
    parser.add_argument("--plot", help="write the posteriors on a half-circle to this PNG")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = torch_device(args.device)
        wave, sr_in = read_stereo(args.file)
        model, cfg = load_run_checked(args.run, device)
        result = localize_wave(wave, sr_in, model, cfg, device)
        result["file"] = str(args.file)
        if args.plot:
            result["plot"] = str(plot_half_circle(result, args.plot, title=f"{Path(args.file).name}"))
    except LocalizeError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, OSError) as err:  # config errors, unreadable run files, a bad --plot path
        print(f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
