"""Localize a recording as it arrives: chunks of any size in, a line per window out as soon as it is complete.

    python examples/live_chunks.py [--wav examples/sample/two_talkers.wav] [--chunk-ms 20] [--real-time]

A microphone gives audio in small blocks (a sounddevice or pyaudio callback, `arecord` on a pipe); here the blocks
come from a file, cut into chunks of --chunk-ms milliseconds (with --real-time, released at the pace a microphone
would release them). Localizer.stream takes any iterable of [2, n] chunks (numpy or torch, any n) and yields each
window's WindowResult as soon as its last sample is in; localize_chunks does the same and returns the recording's
result at the end. From the shell: `arecord -c 2 -r 16000 -f S16_LE -t wav | ssl-localize - --stream`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ssl_model import Localizer  # noqa: E402

SAMPLE = Path(__file__).resolve().parent / "sample" / "two_talkers.wav"


def file_as_microphone(path: Path, chunk_ms: float, real_time: bool) -> tuple[int, Iterator[np.ndarray]]:
    """A stereo file -> (its sample rate, its chunks [2, n] of chunk_ms each, paced as a microphone's with
    real_time)."""
    wave, rate = sf.read(str(path), dtype="float32", always_2d=True)  # [samples, 2]
    size = max(1, round(rate * chunk_ms / 1000))

    def chunks() -> Iterator[np.ndarray]:
        began = time.monotonic()
        for start in range(0, wave.shape[0], size):
            if real_time:  # a microphone hands over a block once it has been recorded
                time.sleep(max(0.0, began + (start + size) / rate - time.monotonic()))
            yield wave[start:start + size].T
    return rate, chunks()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wav", type=Path, default=SAMPLE, help="a stereo file standing in for the microphones")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="milliseconds per chunk (default 20)")
    parser.add_argument("--real-time", action="store_true", help="release the chunks at a microphone's pace")
    parser.add_argument("--model", default=None, help="a shipped model's name, a weights file or a folder")
    args = parser.parse_args(argv)

    localizer = Localizer.from_pretrained(args.model)
    rate, chunks = file_as_microphone(args.wav, args.chunk_ms, args.real_time)
    began = time.monotonic()
    for window in localizer.stream(chunks, rate):
        angles = ", ".join(f"{a:.1f}" for a in window.angles_deg) or "-"
        print(f"{time.monotonic() - began:6.2f} s  window {window.start_s:.2f}-{window.end_s:.2f} s: "
              f"{window.count} talker(s) at {angles} degrees", flush=True)
    rate, chunks = file_as_microphone(args.wav, args.chunk_ms, real_time=False)
    result = localizer.localize_chunks(chunks, rate)
    print(f"the recording: {result.count} talker(s) at {', '.join(f'{a:.1f}' for a in result.angles_deg)} degrees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
