"""How fast `python -m ssl_model.localize` runs on one CPU core: seconds of audio localized per second.

    python benchmarks/bench_localize.py [--model FILE | --run DIR] [--seconds 3] [--files 20] [--threads 1]
                                        [--long-minutes 10] [--json out.json]

Writes `--files` stereo wavs of `--seconds` (noise bursts at 48 kHz, so resampling is included), loads the
model once (ssl_model.Localizer), and times Localizer.localize_file per file (read, resample, window,
normalize, model, average, decode), with torch limited to `--threads` threads. Reports the real-time factor (audio seconds per
wall second) as the median over files, beside the CLI's end-to-end time for all files in one process
(start-up and model loading included). With --long-minutes M it also streams a 1-minute and an M-minute file
through the CLI (`--stream`, one process each) and reports their real-time factors and the peak resident memory
of each process: bounded memory means the two peaks are about equal.
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


def stream_cli(path: Path, file: Path, threads: int) -> dict[str, float]:
    """One `localize --stream` process on one file -> its wall seconds, window lines and peak resident memory (MB,
    the child's own VmHWM)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", PEAK_SNIPPET, str(file), str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"})
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(err[-2000:])
    lines = out.splitlines()
    return {"wall_s": time.perf_counter() - start, "peak_rss_mb": float(lines[-1]), "window_lines": len(lines) - 2}


# localize --stream in this process, then its own peak resident memory (VmHWM) in MB on the last line
PEAK_SNIPPET = """
import sys
from ssl_model.localize import main
code = main([sys.argv[1], "--model", sys.argv[2], "--stream", "-q"])
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(int(peak) / 1024)
sys.exit(code)
"""


def write_long(folder: Path, minutes: float, sr: int = 48000) -> Path:
    """-> one stereo 16-bit wav of `minutes`, written block by block (never whole in memory)."""
    path = folder / f"long{minutes:g}min.wav"
    rng = np.random.default_rng(1)
    with sf.SoundFile(path, "w", samplerate=sr, channels=2, subtype="PCM_16") as handle:
        for _ in range(int(minutes * 60)):
            burst = rng.standard_normal(sr) * np.exp(-(np.arange(sr) % (sr // 4)) / (sr / 20)) * 0.1
            handle.write(np.stack([burst, np.roll(burst, 4)], axis=1))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="a shipped model (wide, real, two-talker) or a weights file (default: wide)")
    which.add_argument("--run", help="run folder")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--long-minutes", type=float, default=0.0, help="also stream a 1-minute and a file this long")
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
        long = {}
        if args.long_minutes > 0:
            for minutes in (1.0, args.long_minutes):
                run = stream_cli(path, write_long(Path(tmp), minutes), args.threads)
                long[f"{minutes:g} min"] = {**run, "realtime_factor": minutes * 60 / run["wall_s"]}
    if cli.returncode != 0:
        print(cli.stderr, file=sys.stderr)
        return 1
    per_file = statistics.median(times)
    result = {"model": str(path), "threads": args.threads, "seconds_per_file": args.seconds, "files": args.files,
              "median_s_per_file": per_file, "realtime_factor": args.seconds / per_file,
              "cli_total_s": cli_s, "cli_realtime_factor": args.files * args.seconds / cli_s,
              "parameters": sum(t.numel() for t in localizer.model.parameters()),
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)",
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "stream": long}
    print(f"{path.name}: {args.seconds:g} s stereo files at 48 kHz, {args.threads} thread(s): "
          f"{per_file * 1000:.1f} ms per file = {result['realtime_factor']:.0f}x real time "
          f"(CLI, {args.files} files in one process incl. start-up: {cli_s:.1f} s = "
          f"{result['cli_realtime_factor']:.0f}x real time)")
    for name, run in long.items():
        print(f"  localize --stream, {name} at 48 kHz: {run['wall_s']:.1f} s = {run['realtime_factor']:.0f}x real time "
              f"(start-up included), {run['window_lines']} window lines, peak memory {run['peak_rss_mb']:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
