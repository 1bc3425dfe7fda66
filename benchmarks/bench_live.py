"""Live latency: from the arrival of a window's last sample to its WindowResult, chunks fed at a microphone's pace.

    python benchmarks/bench_live.py [--model NAME|FILE|DIR] [--wav FILE] [--repeat 6] [--chunk-ms 20]
                                    [--threads 1] [--json out.json]

A thread releases the recording (`--wav`, the sample by default, looped `--repeat` times) in chunks of --chunk-ms
at real-time pace into a queue, stamping each chunk's arrival; the main thread runs Localizer.stream over the
queue, as a microphone callback would feed it. For each window, latency = the time its result is yielded minus the
arrival of the chunk holding its last sample: what a user waits after the window's audio has been spoken, the
resampler's look-ahead, the input checks and the model pass included (the chunk's own length is not: a microphone
holds a block that long before it hands it over). Also reported: the model's compute per window, timed the same
way without pacing (all chunks at once). A latency that grows window after window means the model cannot keep up
on this machine (compute per window above the hop, half a window).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssl_model.localizer import Localizer  # noqa: E402

SAMPLE = ROOT / "examples" / "sample" / "two_talkers.wav"


def paced(wave: np.ndarray, rate: int, chunk: int, arrivals: list[tuple[int, float]], pace: bool
          ) -> Iterator[np.ndarray]:
    """wave [2, T] -> its chunks [2, chunk] from a queue a producer thread fills at real-time pace (pace) or at
    once; arrivals gets (end sample, arrival time) of each chunk as it is queued."""
    box: queue.Queue = queue.Queue()

    def produce() -> None:
        began = time.perf_counter()
        for start in range(0, wave.shape[1], chunk):
            end = min(start + chunk, wave.shape[1])
            if pace:
                time.sleep(max(0.0, began + end / rate - time.perf_counter()))
            arrivals.append((end, time.perf_counter()))
            box.put(wave[:, start:end])
        box.put(None)

    threading.Thread(target=produce, daemon=True).start()
    while (item := box.get()) is not None:
        yield item


def latencies(localizer: Localizer, wave: np.ndarray, rate: int, chunk: int, pace: bool) -> list[dict[str, float]]:
    """-> per window: its end (s), and the seconds from its last sample's arrival to its result."""
    arrivals: list[tuple[int, float]] = []
    out = []
    for window in localizer.stream(paced(wave, rate, chunk, arrivals, pace), rate):
        done = time.perf_counter()
        last = round(window.end_s * rate)
        arrived = next(t for end, t in arrivals if end >= last)
        out.append({"end_s": window.end_s, "latency_s": done - arrived})
    return out


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "p90": ordered[int(0.9 * (len(ordered) - 1))],
            "max": ordered[-1]}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, load average {load:.1f} at start"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a shipped model's name, a weights file or a folder")
    parser.add_argument("--wav", type=Path, default=SAMPLE)
    parser.add_argument("--repeat", type=int, default=6, help="loop the recording this many times")
    parser.add_argument("--chunk-ms", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    localizer = Localizer.from_pretrained(args.model)
    wave, rate = sf.read(str(args.wav), dtype="float32", always_2d=True)
    wave = np.tile(wave.T, (1, args.repeat))
    chunk = max(1, round(rate * args.chunk_ms / 1000))
    latencies(localizer, wave[:, :rate * 2], rate, chunk, pace=False)  # warm-up
    live = latencies(localizer, wave, rate, chunk, pace=True)
    began = time.perf_counter()
    windows = len(latencies(localizer, wave, rate, chunk, pace=False))  # every chunk at once: compute only
    compute = (time.perf_counter() - began) / windows
    report = {
        "model": localizer.name, "date": date.today().isoformat(), "machine": machine(), "threads": args.threads,
        "chunk_ms": args.chunk_ms, "audio_s": wave.shape[1] / rate, "windows": len(live),
        "hop_s": localizer.window_s / 2, "latency_s": summary([w["latency_s"] for w in live]),
        "first_five_latencies_s": [round(w["latency_s"], 3) for w in live[:5]],
        "last_five_latencies_s": [round(w["latency_s"], 3) for w in live[-5:]],
        "compute_per_window_s": compute,
    }
    print(json.dumps(report, indent=1))
    lat = report["latency_s"]
    print(f"| {report['model']} | {args.chunk_ms:g} ms | {args.threads} | {lat['median'] * 1000:.0f} ms | "
          f"{lat['p90'] * 1000:.0f} ms | {lat['max'] * 1000:.0f} ms | {report['compute_per_window_s'] * 1000:.0f} ms |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
