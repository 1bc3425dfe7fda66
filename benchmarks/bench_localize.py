"""How fast `python -m ssl_model.localize` runs on one CPU core: seconds of audio localized per second.

    python benchmarks/bench_localize.py [--model FILE | --run DIR] [--seconds 3] [--files 20] [--threads 1] [--json out.json]

Writes `--files` stereo wavs of `--seconds` (noise bursts at 48 kHz, so resampling is included), loads the
model once (ssl_model.Localizer), and times Localizer.localize_file per file (read, resample, window,
normalize, model, average, decode), with torch limited to `--threads` threads. Reports the real-time factor (audio seconds per
wall second) as the median over files, beside the CLI's end-to-end time for all files in one process
(start-up and model loading included).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssl_model.localize import weights_path  # noqa: E402
from ssl_model.localizer import Localizer  # noqa: E402


def write_files(folder: Path, count: int, seconds: float, sr: int = 48000) -> list[Path]:
    """-> `count` stereo wavs of `seconds` (decaying noise bursts, mic 1 a few samples late)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        n = int(seconds * sr)
        burst = rng.standard_normal(n) * np.exp(-(np.arange(n) % (sr // 4)) / (sr / 20))
        wave = np.stack([burst, np.roll(burst, 3 + i % 5)], axis=1) * 0.1
        path = folder / f"rec{i:03d}.wav"
        sf.write(path, wave.astype(np.float32), sr)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="weights file (default: the shipped pretrained model)")
    which.add_argument("--run", help="run folder")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = weights_path(args.run, args.model)
    localizer = Localizer.from_file(path)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp), args.files, args.seconds)
        localizer.localize_file(files[0])  # warm-up
        times = []
        for file in files:
            start = time.perf_counter()
            localizer.localize_file(file)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "ssl_model.localize", *map(str, files), "--model", str(path)],
                             cwd=ROOT, capture_output=True, text=True,
                             env={"OMP_NUM_THREADS": str(args.threads), "PATH": "/usr/bin:/bin"})
        cli_s = time.perf_counter() - start
    if cli.returncode != 0:
        print(cli.stderr, file=sys.stderr)
        return 1
    per_file = statistics.median(times)
    result = {"model": str(path), "threads": args.threads, "seconds_per_file": args.seconds, "files": args.files,
              "median_s_per_file": per_file, "realtime_factor": args.seconds / per_file,
              "cli_total_s": cli_s, "cli_realtime_factor": args.files * args.seconds / cli_s,
              "parameters": sum(t.numel() for t in localizer.model.parameters()),
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)",
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    print(f"{path.name}: {args.seconds:g} s stereo files at 48 kHz, {args.threads} thread(s): "
          f"{per_file * 1000:.1f} ms per file = {result['realtime_factor']:.0f}x real time "
          f"(CLI, {args.files} files in one process incl. start-up: {cli_s:.1f} s = "
          f"{result['cli_realtime_factor']:.0f}x real time)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
