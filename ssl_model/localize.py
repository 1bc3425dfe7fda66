"""Localize the talkers of stereo recordings with a trained model: the command line of ssl_model.Localizer.

    ssl-localize FILE [FILE ...] [--run DIR | --model NAME|FILE|DIR] [--mic-spacing 0.10] [--num-talkers K]
                 [--stream] [--plot out.png] [--device cpu] [-q | -v]       (or: python -m ssl_model.localize ...)
    arecord -c 2 -r 16000 -f S16_LE -t wav | ssl-localize - --stream           (a live WAV stream on stdin)

Without --run or --model it uses the shipped localizer `wide` (ssl_model/pretrained/wide: 0-3 talkers, noise,
4-20 cm); `--model real` is the earlier default (6-16 cm), `--model two-talker` the seed's clean two-talker model. The model is
loaded once; each file (wav, flac or ogg, stereo: channel 0 = mic 0, channel 1 = mic 1, any sample rate)
is read in chunks, resampled to the model's rate, cut into windows of the training clip length (half-overlapping,
the last one aligned to the end), and each window's talkers are combined into the recording's
(ssl_model/localizer.py does all of that). One JSON object per file, one per line, on stdout: `count`,
`angles_deg` (one per talker, ascending), `probabilities`, per-window results and the 0.2 s track (`frames`, for
a model with a frame head); with --stream, a line per window (`"kind": "window"`) as soon as it is computed,
before the file's line (`"kind": "file"`). FILE `-` is a WAV stream on standard input, read as it arrives (a
recorder's pipe: its header's length may be unknown); its window lines come out as its windows complete and its
file line when the stream ends (or at Ctrl-C). What about an input may mislead (clipping, delays the spacing cannot
produce, splices, a phase-rewriting codec) is one `warning: ...` line each on stderr. A bad file ends in a one-line `error: ...` on stderr (the other files
still run) and exit code 2, never a traceback. When the reader of stdout goes away (`| head`), it stops quietly
with exit code 141 (128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe): its output was cut,
so a pipeline under `set -o pipefail` sees it. Progress bars (many files, long files) go to stderr when it is a
terminal, never with -q. Weights are read from safetensors: no code is executed on load.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterator

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from tqdm import tqdm  # noqa: E402
from tqdm.contrib.logging import logging_redirect_tqdm  # noqa: E402

from configs.cli_log import add_verbosity, progress_wanted, setup_logging  # noqa: E402
from ssl_model.loading import PRETRAINED_NAMES, CheckpointError, model_weights  # noqa: E402
from ssl_model.localizer import (WINDOWS_PER_CALL, LocalizationResult, LocalizeError, Localizer,  # noqa: E402
                                 WindowResult, run_weights, torch_device)
from ssl_model.wav_stream import WavError, read_wav_header, wav_chunks  # noqa: E402

EXIT_BAD_INPUT = 2
EXIT_PIPE_CLOSED = 128 + 13  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away
SCRIPT = "ssl-localize"  # pyproject.toml's console script
MODULE = "python -m ssl_model.localize"
STDIN = "-"  # the FILE that names standard input
STDIN_FRAMES = 1600  # at most this many frames per chunk read from standard input (0.1 s at 16 kHz)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".svg", ".pdf", ".eps", ".ps", ".tif", ".tiff", ".webp", ".gif", ".bmp"}
log = logging.getLogger("ssl_model.localize")


def weights_path(run: str | None, model: str | None) -> Path:
    """--run DIR / --model NAME-or-FILE / neither (the default shipped model) -> the weights file to load."""
    if run is not None:
        return run_weights(run)
    try:
        return model_weights(model)
    except CheckpointError as err:
        raise LocalizeError(str(err)) from None


def plot_half_circle(result: dict[str, Any], path: str | Path, title: str = "",
                     truth_deg: list[float] | None = None) -> Path:
    """The recording's spatial spectrum (per window the summed posteriors of its talkers, averaged) as bars on a
    half-circle around the array (mic axis along 0-180 degrees), each detected talker a dashed line; `truth_deg`,
    when known (a simulated scene), is marked on the rim."""
    spectrum = np.asarray(result["spectrum"], float)  # [C]
    bin_deg = float(result["bin_deg"])
    centers = np.deg2rad((np.arange(spectrum.shape[0]) + 0.5) * bin_deg)
    peak = max(float(spectrum.max()), 1e-6)
    inner = 0.35 * peak  # bars start on a ring; the array sits inside it
    top = inner + peak * 1.05
    fig = plt.figure(figsize=(7.2, 4.4))
    ax = fig.add_subplot(projection="polar")
    ax.set_thetamin(0)
    ax.set_thetamax(180)
    ax.bar(centers, spectrum, width=np.deg2rad(bin_deg), bottom=inner, alpha=0.45, color="0.55", edgecolor="0.4")
    colors = ("tab:blue", "tab:red", "tab:green")
    for k, (angle, prob) in enumerate(zip(result["angles_deg"], result["probabilities"])):
        ax.plot([np.deg2rad(angle)] * 2, [0, top], color=colors[k % 3], lw=1.5, ls="--",
                label=f"talker {k + 1}: {angle:.1f}° (p={prob:.2f})")
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
    talkers = f"{result['count']} talker" + ("" if result["count"] == 1 else "s")
    ax.set_title((title or "Spatial spectrum") + f": {talkers}\n{what} (0° = towards mic 1); "
                 f"bar length: posterior mass per window", fontsize=10, y=0.9)
    if result["count"] or truth_deg is not None:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.2), ncol=3, fontsize=8, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def prog_name() -> str:
    """The command as it was run: `python -m ssl_model.localize` when this file is the program, else the console
    script, ssl-localize."""
    return MODULE if Path(sys.argv[0]).name == Path(__file__).name else SCRIPT


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog_name(), description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="stereo wav, flac or ogg (channel 0 = mic 0, channel 1 = mic 1), >= 1 s; - reads a WAV "
                             "stream from standard input as it arrives")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run", help="run folder holding model.safetensors (training/train.py output)")
    which.add_argument("--model", help=f"a shipped model by name ({', '.join(PRETRAINED_NAMES)}; default "
                                        f"{PRETRAINED_NAMES[0]}), a weights file or a folder holding one")
    parser.add_argument("--mic-spacing", type=float, default=None, metavar="METRES",
                        help="distance between the two mics in metres (default: the model's own, 0.10 for the shipped "
                             "model; a model trained for a range of spacings takes any spacing in it)")
    parser.add_argument("--num-talkers", type=int, default=None, metavar="K",
                        help="report exactly K talkers (a known count), not the model's own count")
    parser.add_argument("--mirror", action="store_true",
                        help="hear every window twice, the second time with its channels swapped, and average the two "
                             "(finer angles at twice the compute; the count as good on simulated rooms, a little "
                             "worse on a real array: docs/models.md)")
    parser.add_argument("--stream", action="store_true",
                        help="also print one JSON line per window as it is computed (\"kind\": \"window\")")
    parser.add_argument("--plot", help="PNG of the posteriors on a half-circle (with several files: a folder, "
                                       "one FILE-stem.png each)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_verbosity(parser)
    return parser.parse_args(argv)


def check_plot(plot: str | None, files: list[Path]) -> None:
    """--plot and the files -> LocalizeError when the plots cannot land where asked: an image name (or an existing
    file) for several files, which need a folder, or two files whose plots would share a name."""
    if plot is None or len(files) < 2:
        return
    if Path(plot).suffix.lower() in IMAGE_SUFFIXES or Path(plot).is_file():
        raise LocalizeError(f"--plot {plot}: with {len(files)} files --plot names a folder (one FILE-stem.png each), "
                            f"not an image file")
    seen: dict[str, Path] = {}
    for file in files:
        if file.stem in seen and seen[file.stem] != file:
            raise LocalizeError(f"--plot {plot}: {seen[file.stem]} and {file} would both be plotted to "
                                f"{Path(plot) / (file.stem + '.png')}")
        seen[file.stem] = file


def plot_path(plot: str, file: Path, many: bool) -> Path:
    """--plot, a file -> its PNG: FILE-stem.png in the folder (several files, or an existing folder), else the
    path given (with .png added when it has no suffix, as matplotlib would)."""
    if many or Path(plot).is_dir():
        return Path(plot) / f"{file.stem}.png"
    return Path(plot) if Path(plot).suffix else Path(plot).with_suffix(".png")


def file_output(file: Path, result: LocalizationResult, plot: str | None, many: bool, model: str = "") -> dict[str, Any]:
    """(file, its LocalizationResult) -> the file's JSON object; plots it when asked, the title naming the file and
    the `model`."""
    out = {"file": str(file), "kind": "file", **result.to_dict()}
    if plot:
        title = "standard input" if str(file) == STDIN else file.name
        out["plot"] = str(plot_half_circle(out, plot_path(plot, file, many),
                                           title=f"{title}, {model} model" if model else title))
    return out


def emit(line: dict[str, Any]) -> None:
    """One JSON line on stdout, now; never NaN or Infinity (not JSON): a ValueError instead."""
    print(json.dumps(line, allow_nan=False), flush=True)


def window_bar(localizer: Localizer, file: Path, show: bool) -> tqdm | None:
    """A progress bar over a long file's windows (more than one model pass), when bars are shown."""
    if not show:
        return None
    total = localizer.window_count(file)
    if total <= WINDOWS_PER_CALL:
        return None
    return tqdm(total=total, desc=file.name, unit="window", leave=False, file=sys.stderr, position=1)


def stdin_chunks(frames: int = STDIN_FRAMES) -> tuple[int, Iterator[np.ndarray]]:
    """Standard input, a WAV stream -> (its sample rate, its chunks [channels, n] as they arrive; Ctrl-C ends
    them); LocalizeError when it is not a WAV stream this reader takes."""
    try:
        fmt = read_wav_header(sys.stdin.buffer)
    except WavError as err:
        raise LocalizeError(f"standard input: {err}") from None
    if fmt.channels != 2:
        kind = "mono" if fmt.channels == 1 else f"{fmt.channels}-channel"
        raise LocalizeError(f"standard input: {kind} audio; expected stereo (2 channels: mic 0 left, mic 1 right; "
                            f"arecord -c 2)")
    return fmt.sample_rate, wav_chunks(sys.stdin.buffer, fmt, frames, stop_on_interrupt=True)


def localize_one(localizer: Localizer, file: Path, spacing: float | None, stream: bool,
                 bars: bool = False, num_talkers: int | None = None) -> LocalizationResult:
    """One file -> its result; with `stream`, each window's JSON line is printed as soon as it is computed."""
    bar = None if str(file) == STDIN else window_bar(localizer, file, bars)

    def on_window(window: WindowResult) -> None:
        if stream:
            emit({"file": str(file), "kind": "window", **window.to_dict()})
        if bar is not None:
            bar.update()
    try:
        if str(file) == STDIN:
            rate, chunks = stdin_chunks()
            return localizer.localize_chunks(chunks, rate, spacing, on_window, num_talkers, name="standard input")
        return localizer.localize_file(file, spacing, on_window=on_window, num_talkers=num_talkers)
    finally:
        if bar is not None:
            bar.close()


def localize_all(localizer: Localizer, args: argparse.Namespace, bars: bool) -> int:
    """Every file of the command line, one JSON line each -> how many failed (each named in one error line)."""
    files = [Path(f) for f in args.files]
    failed = 0
    files_bar = tqdm(total=len(files), desc="files", unit="file", file=sys.stderr, position=0,
                     disable=not bars or len(files) < 2)
    for file in files:
        try:
            result = localize_one(localizer, file, args.mic_spacing, args.stream, bars, args.num_talkers)
            for line in result.warnings:
                log.warning("%s", line)
            emit(file_output(file, result, args.plot, many=len(files) > 1, model=localizer.name))
        except BrokenPipeError:
            raise  # not this file's fault: main stops quietly
        except LocalizeError as err:
            log.error("%s", err)
            failed += 1
        except (ValueError, OSError) as err:  # a bad --plot path; a value JSON cannot carry
            log.error("%s: %s: %s", file, type(err).__name__, str(err).splitlines()[0] if str(err) else "")
            failed += 1
        files_bar.update()
    files_bar.close()
    return failed


def stdout_gone() -> int:
    """The reader of stdout went away: point stdout at /dev/null (so the interpreter's last flush cannot fail
    again) and say so in the exit code only."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_PIPE_CLOSED


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args)
    try:
        check_plot(args.plot, [Path(f) for f in args.files])
        if args.files.count(STDIN) > 1:
            raise LocalizeError("-: standard input can be read once; name it once")
        localizer = Localizer.from_file(weights_path(args.run, args.model), torch_device(args.device, "--device"))
        if args.mirror:
            localizer = localizer.with_decoding(dataclasses.replace(localizer.decoding, mirror=True))
        localizer.check_spacing(args.mic_spacing)
        localizer.check_num_talkers(args.num_talkers)
    except LocalizeError as err:
        log.error("%s", err)
        return EXIT_BAD_INPUT
    log.info("%r", localizer)
    bars = progress_wanted(args)
    try:
        with ExitStack() as stack:
            if bars:
                stack.enter_context(logging_redirect_tqdm())  # notes and errors above the bars, not through them
            failed = localize_all(localizer, args, bars)
    except BrokenPipeError:
        return stdout_gone()
    log.info("%d file(s) localized, %d failed", len(args.files) - failed, failed)
    return EXIT_BAD_INPUT if failed else 0


if __name__ == "__main__":
    sys.exit(main())
