"""Model throughput: forward+backward samples/s and peak memory, micro and seed presets, CPU and (when present) GPU.

    python benchmarks/bench_model.py                       # CPU (and GPU fp32/bf16, eager/compiled, if CUDA)
    python benchmarks/bench_model.py --sizes seed --devices cuda --batch 64 --json out.json

Each configuration runs in its own subprocess so that CPU peak memory (ru_maxrss) and torch.compile caches do
not leak between rows. FLOPs per training sample are counted with torch.utils.flop_counter.FlopCounterMode on
one forward (matmuls, convolutions, attention) at the benchmark's input length; the training step is derived
from it (see count_flops). CPU peak memory is the worker's peak RSS, torch's own import included.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_model import SSLModel  # noqa: E402
from ssl_model.metrics import two_slot_cross_entropy  # noqa: E402

# Dense peak throughput in TFLOP/s (vendor datasheets, SXM parts, no sparsity), for the fraction-of-peak column.
PEAK_TFLOPS = {
    "H100": {"float32": 67.0, "tf32": 494.7, "bfloat16": 989.4},
    "H200": {"float32": 67.0, "tf32": 494.7, "bfloat16": 989.4},
    "A100": {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0},
}


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def count_flops(size: str, seconds: float, sr: int = 16000) -> dict[str, float]:
    """FLOPs for a single sample of `seconds`: the forward counted, the training step derived from it.

    torch 2.11's FlopCounterMode counts a grouped convolution's backward as if it were dense (the depthwise
    Conv1d(1024, 1024, 31, groups=1024) backward comes out ~1000x too large), so the backward is not counted:
    each layer's backward costs two forwards (input and weight gradients), except the STFT, whose input is data
    (weight gradient only, and nothing when it is frozen).
    """
    model = SSLModel.from_preset(size)
    wave = torch.randn(1, 2, int(seconds * sr))
    with torch.no_grad(), FlopCounterMode(display=False, depth=2) as counter:
        model(wave)
    forward = float(counter.get_total_flops())
    stft = float(sum(counter.get_flop_counts().get("SSLModel.stft", {}).values()))
    stft_backward = stft if model.config.trainable_stft else 0.0
    return {
        "forward_flops": forward,
        "stft_forward_flops": stft,
        "train_flops": 3 * (forward - stft) + stft + stft_backward,
    }


def worker(spec: dict) -> dict:
    """Run one configuration in this process; returns its measurements."""
    torch.manual_seed(0)
    import_rss = rss_mib()
    device = torch.device(spec["device"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    model = SSLModel.from_preset(spec["size"]).to(device).train()
    step_model = torch.compile(model) if spec["compile"] else model
    batch, samples = spec["batch"], int(spec["seconds"] * 16000)
    wave = torch.randn(batch, 2, samples, device=device)
    classes = torch.randint(0, 36, (batch, 2), device=device).sort(-1).values
    dtype = getattr(torch, spec["dtype"])
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step() -> None:
        with autocast:
            loss = two_slot_cross_entropy(step_model(wave), classes)
        loss.backward()
        model.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(spec["warmup"]):
        step()
    sync()
    baseline_rss = rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    sync()
    elapsed = time.perf_counter() - start
    result = dict(spec)
    result["samples_per_s"] = batch * spec["steps"] / elapsed
    result["step_ms"] = 1000 * elapsed / spec["steps"]
    if device.type == "cuda":
        result["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["device_name"] = torch.cuda.get_device_name()
    else:
        result["peak_memory_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["steady_rss_mib"] = baseline_rss
        result["import_rss_mib"] = import_rss
        result["device_name"] = f"cpu ({torch.get_num_threads()} threads)"
    return result


def fraction_of_peak(result: dict, train_flops: float) -> float | None:
    name = result.get("device_name", "")
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            dtype = result["dtype"]
            peak = peaks["bfloat16"] if dtype in ("bfloat16", "float16") else peaks["float32"]
            return result["samples_per_s"] * train_flops / (peak * 1e12)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["micro", "seed"])
    parser.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu, plus cuda if present)")
    parser.add_argument("--seconds", type=float, default=3.0, help="input length per sample (the seed trains on 3 s)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: CPU 8 micro / 4 seed, GPU 64)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: CPU 5, GPU 20)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: CPU 2, GPU 5)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows on GPU")
    parser.add_argument("--json", nargs="?", const="-", default=None, help="write results as JSON (to a path or '-')")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    specs = []
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda requested but not available; skipped", file=sys.stderr)
            continue
        variants = [("float32", False)]
        if device == "cuda":
            variants = [("float32", False), ("bfloat16", False)]
            if not args.no_compile:
                variants += [("float32", True), ("bfloat16", True)]
        for size in args.sizes:
            default_batch = 64 if device == "cuda" else (8 if size == "micro" else 4)
            for dtype, compiled in variants:
                specs.append({
                    "size": size, "device": device, "dtype": dtype, "compile": compiled,
                    "batch": args.batch or default_batch, "seconds": args.seconds,
                    "steps": args.steps or (20 if device == "cuda" else 5),
                    "warmup": args.warmup if args.warmup is not None else (5 if device == "cuda" else 2),
                    "threads": args.threads,
                })

    flops = {size: count_flops(size, args.seconds) for size in args.sizes}
    params = {size: sum(p.numel() for p in SSLModel.from_preset(size).parameters()) for size in args.sizes}
    results = []
    for spec in specs:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            print(f"{spec}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["train_flops_per_sample"] = flops[spec["size"]]["train_flops"]
        result["achieved_tflops"] = result["samples_per_s"] * result["train_flops_per_sample"] / 1e12
        result["fraction_of_peak"] = fraction_of_peak(result, result["train_flops_per_sample"])
        results.append(result)
        print(f"{spec['size']:5s} {spec['device']:4s} {spec['dtype']:8s} compile={str(spec['compile']):5s} "
              f"batch={spec['batch']:3d}: {result['samples_per_s']:9.1f} samples/s, {result['step_ms']:8.1f} ms/step, "
              f"peak {result['peak_memory_mib']:6.0f} MiB"
              + (f" (after import {result['import_rss_mib']:.0f})" if "import_rss_mib" in result else "")
              + f", {result['achieved_tflops']:.3f} TFLOP/s"
              + (f" ({100 * result['fraction_of_peak']:.1f}% of peak)" if result["fraction_of_peak"] else ""),
              file=sys.stderr)
    for size in args.sizes:
        print(f"{size}: {params[size]:,} parameters; {flops[size]['forward_flops'] / 1e9:.3f} GFLOP forward "
              f"(STFT {flops[size]['stft_forward_flops'] / 1e9:.3f}), {flops[size]['train_flops'] / 1e9:.3f} GFLOP "
              f"forward+backward per {args.seconds:g} s sample",
              file=sys.stderr)
    report = {"torch": torch.__version__, "seconds": args.seconds, "parameters": params, "flops": flops,
              "results": results}
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
