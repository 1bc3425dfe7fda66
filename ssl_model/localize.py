"""Localize the two sources of stereo recordings with a trained model: the command line of ssl_model.Localizer.

    python -m ssl_model.localize FILE [FILE ...] [--run DIR | --model FILE.safetensors] [--plot out.png] [--device cpu] [-q | -v]

Without --run or --model it uses the pretrained model shipped in ssl_model/pretrained/. The model is
loaded once; each file (wav, flac or ogg, stereo: channel 0 = mic 0, channel 1 = mic 1, any sample rate)
is resampled to the model's rate, cut into windows of the training clip length (half-overlapping, the last
one aligned to the end; a recording shorter than one window is zero-padded, as training clips are),
normalized as the training mixtures were; the per-window posteriors are averaged and decoded into two
sorted angles (ssl_model/localizer.py does all of that). One JSON object per file, one per line, on stdout.
A bad file ends in a one-line `error: ...` on stderr (the other files still run) and exit code 2, never a
traceback. Weights are read from safetensors: no code is executed on load.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from ssl_model.cli_log import add_verbosity, setup_logging
from ssl_model.localizer import PRETRAINED, LocalizeError, Localizer, run_weights, torch_device

EXIT_BAD_INPUT = 2
log = logging.getLogger("ssl_model.localize")


def weights_path(run: str | None, model: str | None) -> Path:
    """--run DIR / --model FILE / neither (the shipped pretrained model) -> the weights file to load."""
    if run is not None:
        return run_weights(run)
    path = Path(model) if model is not None else PRETRAINED
    if not path.is_file():
        raise LocalizeError(f"{path}: no such weights file" + ("" if model else "; pass --run DIR or --model FILE"))
    return path


def plot_half_circle(result: dict[str, Any], path: str | Path, title: str = "",
                     truth_deg: list[float] | None = None) -> Path:
    """Both slots' posteriors as bars on a half-circle around the array (mic axis along 0-180 degrees);
    `truth_deg`, when known (a simulated scene), is marked on the rim."""
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
    add_verbosity(parser)
    return parser.parse_args(argv)


def plot_path(plot: str, file: Path, many: bool) -> Path:
    return Path(plot) / f"{file.stem}.png" if many else Path(plot)


def file_output(file: Path, result: Any, plot: str | None, many: bool) -> dict[str, Any]:
    """(file, LocalizationResult or the LocalizeError it met) -> the file's JSON object; plots it when asked."""
    if isinstance(result, LocalizeError):
        raise result
    out = {"file": str(file), **result.to_dict()}
    if plot:
        out["plot"] = str(plot_half_circle(out, plot_path(plot, file, many), title=file.name))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    try:
        localizer = Localizer.from_file(weights_path(args.run, args.model), torch_device(args.device, "--device"))
    except LocalizeError as err:
        log.error("%s", err)
        return EXIT_BAD_INPUT
    log.info("%r", localizer)
    failed = 0
    for file, result in localizer.localize_files(args.files, return_errors=True):
        try:
            out = file_output(file, result, args.plot, many=len(args.files) > 1)
        except LocalizeError as err:
            log.error("%s", err)
            failed += 1
            continue
        except (ValueError, OSError) as err:  # a bad --plot path
            log.error("%s: %s: %s", file, type(err).__name__, str(err).splitlines()[0] if str(err) else "")
            failed += 1
            continue
        print(json.dumps(out), flush=True)
    log.info("%d file(s) localized, %d failed", len(args.files) - failed, failed)
    return EXIT_BAD_INPUT if failed else 0


if __name__ == "__main__":
    sys.exit(main())
