"""One steady source from one direction: how many talkers does a localizer name, angle by angle?

    python benchmarks/bench_one_source.py [--model NAME_OR_FILE ...] [--gcc-phat] [--spacing 0.05,0.10,0.18]
                                          [--angles 5,10,...] [--seconds 4] [--json out.json]

A source is 4 s of Gaussian noise (white, pink, or white low-passed at 4 kHz), and mic 1 hears it
d cos(theta) / c later than mic 0 (an exact fractional delay, no room): the one scene where the truth is one talker
at one delay beyond doubt. A localizer that names two here names a phantom. Per model, spacing and kind, the table
gives the recording's count at each angle (bold where it is not 1), the share of windows named one and the largest
angle error of the recordings named one; the JSON holds every window's angles. `--gcc-phat` adds frame-wise GCC-PHAT
with its own count (the accuracy benchmark's counting baseline) on the same recordings. The speech rows of this
question are count20's and the real array's one-talker clips (benchmarks/bench_accuracy.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy_report import machine  # noqa: E402
from accuracy_sets import fractional_delay  # noqa: E402
from shards.array import SOUND_SPEED  # noqa: E402
from ssl_model.baselines import gcc_phat_count  # noqa: E402
from ssl_model.features import lowpass  # noqa: E402
from ssl_model.localizer import Localizer  # noqa: E402

SR = 16000
ANGLES = (5, 10, 15, 20, 45, 60, 90, 130, 160, 165, 170, 175)
KINDS = ("white", "pink", "white<4k")


def source_signal(kind: str, samples: int, rng: np.random.Generator) -> np.ndarray:
    """-> [samples] float64 of unit RMS: white or pink (power 1/f above 50 Hz) Gaussian noise, or white noise with
    nothing above 4 kHz (what an 8 kHz recording holds)."""
    white = rng.standard_normal(samples)
    if kind == "white":
        out = white
    elif kind == "pink":
        freq = np.fft.rfftfreq(samples, 1.0 / SR)
        out = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(freq, 50.0)), samples)
    elif kind == "white<4k":
        out = lowpass(torch.from_numpy(white)[None, None], torch.tensor([4000.0]), SR)[0, 0].double().numpy()
    else:
        raise ValueError(f"unknown source kind {kind!r}; expected one of {', '.join(KINDS)}")
    return out / np.sqrt(np.mean(out ** 2))


def one_source(signal: np.ndarray, angle_deg: float, spacing: float) -> np.ndarray:
    """[T] -> [2, T] float32: mic 1 hears `signal` spacing cos(angle) / c later than mic 0 (lateral angle: 0 deg is
    the mic-1 end of the axis, so the wavefront reaches mic 1 first there)."""
    late = -spacing * np.cos(np.radians(angle_deg)) / SOUND_SPEED * SR
    return (0.1 * np.stack([signal, fractional_delay(signal, late)])).astype(np.float32)


Method = Callable[[np.ndarray, float], tuple[list[float], list[list[float]]]]


def model_method(localizer: Localizer) -> Method:
    """A localizer -> (wave [2, T], spacing) -> (the recording's angles, every window's angles)."""
    def run(wave: np.ndarray, spacing: float) -> tuple[list[float], list[list[float]]]:
        result = localizer(wave, SR, mic_spacing=spacing)
        return list(result.angles_deg), [list(w.angles_deg) for w in result.windows]
    return run


def gcc_phat_method(wave: np.ndarray, spacing: float) -> tuple[list[float], list[list[float]]]:
    """Frame-wise GCC-PHAT with its own count (peak threshold, ssl_model.baselines.gcc_phat_count) over the whole
    recording: no windows."""
    found = gcc_phat_count(torch.from_numpy(wave)[None], SR, spacing, sound_speed=SOUND_SPEED)
    return [float(a) for a in found["lateral_deg"][0, : int(found["count"][0])]], []


def measure(method: Method, spacings: list[float], angles: list[float], seconds: float) -> list[dict]:
    """-> one row per spacing, kind and angle: the recording's count and angles, and every window's."""
    rows = []
    for spacing in spacings:
        for kind in KINDS:
            signal = source_signal(kind, int(seconds * SR), np.random.default_rng(0))
            for angle in angles:
                found, windows = method(one_source(signal, angle, spacing), spacing)
                rows.append({"spacing": spacing, "kind": kind, "angle": angle, "count": len(found),
                             "angles": [round(float(a), 1) for a in found],
                             "windows": [[round(float(a), 1) for a in w] for w in windows]})
    return rows


def table(name: str, rows: list[dict], angles: list[float]) -> list[str]:
    """-> a markdown table: per spacing and kind, the count at each angle (bold where not 1), the share of windows
    named one talker, and the largest angle error of the recordings named one."""
    lines = [f"### {name}", "", "| spacing | source | " + " | ".join(f"{a:g}" for a in angles)
             + " | windows named one | largest error named one (deg) |", "|---|---|" + "---|" * (len(angles) + 2)]
    for spacing in sorted({r["spacing"] for r in rows}):
        for kind in KINDS:
            picked = [r for r in rows if r["spacing"] == spacing and r["kind"] == kind]
            cells = [f"{r['count']}" if r["count"] == 1 else f"**{r['count']}**" for r in picked]
            windows = [len(w) == 1 for r in picked for w in r["windows"]]
            errors = [abs(r["angles"][0] - r["angle"]) for r in picked if r["count"] == 1]
            named_one = f"{100 * np.mean(windows):.0f}%" if windows else "-"
            worst = f"{max(errors):.1f}" if errors else "-"
            lines.append(f"| {spacing * 100:g} cm | {kind} | " + " | ".join(cells) + f" | {named_one} | {worst} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], help="a shipped model's name or a weights file "
                   "(repeatable; default: the default model)")
    p.add_argument("--spacing", default="0.05,0.10,0.18", help="mic spacings in metres, comma-separated")
    p.add_argument("--angles", default=",".join(map(str, ANGLES)), help="lateral angles in degrees, comma-separated")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--gcc-phat", action="store_true", help="also frame-wise GCC-PHAT with its own count (peak "
                   "threshold), the benchmark's counting baseline, on the same recordings")
    p.add_argument("--json", type=Path, help="write every row here")
    args = p.parse_args(argv)
    spacings = [float(s) for s in args.spacing.split(",") if s.strip()]
    angles = [float(a) for a in args.angles.split(",") if a.strip()]
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "command": " ".join(sys.argv), "models": {}}
    methods: list[tuple[str, Method]] = [(str(name or "default"), model_method(Localizer.from_pretrained(name)))
                                         for name in args.model or [None]]
    if args.gcc_phat:
        methods.append(("GCC-PHAT (frames, peak threshold)", gcc_phat_method))
    for label, method in methods:
        rows = measure(method, spacings, angles, args.seconds)
        report["models"][label] = rows
        print("\n".join(table(label, rows, angles)) + "\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
