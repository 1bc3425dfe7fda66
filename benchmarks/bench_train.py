"""Training throughput: full steps (reservoir refresh, device mixing, forward, backward, AdamW), samples/s and peak memory.

    python benchmarks/bench_train.py --shards shards/ [--config configs/tiny.yaml] [--steps 30] [--json] [key=value ...]
Without --shards, a small shard set is simulated into a temporary folder first.
--flops adds the FLOPs of a training sample and the share of the device's dense peak they reach (bench_model's
counting rule and peak table); --profile PATH profiles a few more steps after the timed ones (torch.profiler) and
writes the top operators and kernels to PATH (benchmarks/gpu_check.sh). Every run also splits the timed steps
into their phases (data: reservoir refresh and device mixing; forward; loss; backward; optimizer: clipping and
AdamW), each phase closed by a device synchronization, as milliseconds per step and shares of the step.
--versus VARIANT times a second setting side by side with the first in one process, in alternating blocks of
steps (so a loaded machine slows both alike): `bf16`, `compile`, `threads=N`, or config overrides, joined by `;`
(e.g. `--versus "bf16;model.dim=96"`); it prints both rates and their ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from ssl_model import SSLModel
from shard_fixture import shards_or_simulated
from training.config import load_train_config
from training.data.batches import TrainData
from training.objective import batch_loss

# Host-device synchronizations and scalar reads the profile counts (each stalls the CPU until the GPU catches up).
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "aten::item",
               "aten::_local_scalar_dense", "aten::nonzero")


def train_flops_per_sample(model_config, samples: int) -> dict[str, float]:
    """FLOPs of one sample of `samples`: the forward counted by FlopCounterMode, the training step derived from it
    as bench_model.count_flops does (torch's counter overcounts a grouped convolution's backward, so each layer's
    backward is taken as two forwards, the STFT's as its weight gradient only, nothing when it is frozen)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = SSLModel(model_config)
    with torch.no_grad(), FlopCounterMode(display=False, depth=2) as counter:
        model(torch.randn(1, 2, samples))
    forward = float(counter.get_total_flops())
    stft = float(sum(counter.get_flop_counts().get("SSLModel.stft", {}).values()))
    stft_backward = stft if model.config.trainable_stft else 0.0
    return {"forward_flops_per_sample": forward, "train_flops_per_sample": 3 * (forward - stft) + stft + stft_backward}


def peak_tflops(device: torch.device, bf16: bool) -> tuple[str, float | None]:
    """-> (the device's name, its dense peak TFLOP/s for the step's precision from bench_model.PEAK_TFLOPS, or None)."""
    if device.type != "cuda":
        return f"cpu ({torch.get_num_threads()} threads)", None
    from bench_model import PEAK_TFLOPS

    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return name, peaks["bfloat16" if bf16 else "float32"]
    return name, None


def profile_steps(train_step, first_step: int, steps: int, device: torch.device, path: str) -> dict:
    """Run `steps` more training steps under torch.profiler; write the top operators by self device time (CPU time
    on the CPU) to `path`; -> the top entries and the host-sync counts per step."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for step in range(first_step, first_step + steps):
            train_step(step)
        if device.type == "cuda":
            torch.cuda.synchronize()
    averages = prof.key_averages()
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with open(path, "w") as out:
        out.write(f"# bench_train --profile: {steps} steps on {device}, sorted by {sort}\n")
        out.write(averages.table(sort_by=sort, row_limit=30) + "\n")
    events = sorted(averages, key=lambda e: getattr(e, sort), reverse=True)
    total = sum(getattr(e, sort) for e in averages if not e.key.startswith("ProfilerStep")) or 1.0
    top = [{"name": e.key, "calls_per_step": e.count / steps, "self_us_per_step": getattr(e, sort) / steps}
           for e in events[:15]]
    syncs = {e.key: e.count / steps for e in averages if e.key in SYNC_EVENTS}
    return {"profile_path": os.path.abspath(path), "profile_steps": steps, "profile_sort": sort,
            "profile_top": top, "profile_syncs_per_step": syncs, "profile_self_us_per_step_total": total / steps}


def step_function(cfg, data: TrainData, device: torch.device, bf16: bool, compiled: bool,
                  phase: Callable[[str], None] = lambda name: None):
    """-> (train_step(step), the model): one full optimizer step of `cfg` on `data`'s batch of that step, calling
    phase(name) as each of data, forward, loss, backward and optimizer ends."""
    model = SSLModel(cfg.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, fused=device.type == "cuda")
    forward = torch.compile(model.outputs) if compiled else model.outputs

    def train_step(step: int) -> None:
        data.refresh(step)
        mixtures = data.batch(step)
        phase("data")
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = forward(mixtures.wave, mixtures.spacing)
        phase("forward")
        loss = batch_loss(out, mixtures, cfg.model, cfg.optim.label_sigma_deg)
        phase("loss")
        loss.backward()
        phase("backward")
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        phase("optimizer")
    return train_step, model


def parse_variant(text: str) -> tuple[list[str], bool, bool, int | None]:
    """'bf16;compile;threads=1;key=value' -> (config overrides, bf16, compile, threads or None)."""
    items = [t.strip() for t in text.split(";") if t.strip()]
    threads = next((int(t.split("=", 1)[1]) for t in items if t.startswith("threads=")), None)
    overrides = [t for t in items if t not in ("bf16", "compile") and not t.startswith("threads=")]
    return overrides, "bf16" in items, "compile" in items, threads


def side_by_side(args: argparse.Namespace, cfg, device: torch.device, block: int = 5) -> dict:
    """The baseline (args) and args.versus, alternating blocks of `block` steps on their own data streams
    -> samples/s of each and the ratio versus / baseline."""
    overrides, bf16, compiled, threads = parse_variant(args.versus)
    other = load_train_config(args.config, [f"data.shards={args.shards}", *args.overrides, *overrides])
    base_threads = torch.get_num_threads()
    variants = {"baseline": (cfg, args.bf16, args.compile, base_threads),
                "versus": (other, bf16 or args.bf16, compiled or args.compile, threads or base_threads)}
    runs = {}
    for name, (c, b, k, n) in variants.items():
        data = TrainData(c, 0, 1, device)
        data.fill()
        step, model = step_function(c, data, device, b, k)
        runs[name] = {"step": step, "data": data, "threads": n, "seconds": 0.0, "batch": c.run.batch_size,
                      "parameters": sum(p.numel() for p in model.parameters())}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for start in range(-3, args.steps, block):  # the first block of each is a warm-up, not timed
        for run in runs.values():
            torch.set_num_threads(run["threads"])
            t0 = time.perf_counter()
            for step in range(max(start, 0), min(start + block, args.steps) if start >= 0 else 3):
                run["step"](step)
            sync()
            if start >= 0:
                run["seconds"] += time.perf_counter() - t0
    torch.set_num_threads(base_threads)
    out = {"steps": args.steps, "block": block, "device": str(device), "versus": args.versus}
    for name, run in runs.items():
        run["data"].close()
        out[name] = {"samples_per_s": args.steps * run["batch"] / run["seconds"], "threads": run["threads"],
                     "parameters": run["parameters"], "batch_size": run["batch"]}
    out["ratio"] = out["versus"]["samples_per_s"] / out["baseline"]["samples_per_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards")
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="autocast bf16 (GPU)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--flops", action="store_true", help="FLOPs per training sample and the share of the dense peak")
    p.add_argument("--profile", metavar="PATH", help="profile --profile-steps more steps; the top operators to PATH")
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--versus", metavar="VARIANT", help="time this variant side by side: bf16, compile, threads=N or "
                                                        "config overrides, joined by ';'")
    p.add_argument("--json", action="store_true")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    args.shards, _tmp = shards_or_simulated(args.shards)
    cfg = load_train_config(args.config, [f"data.shards={args.shards}", *args.overrides])
    device = torch.device(args.device)
    if args.versus:
        result = side_by_side(args, cfg, device)
        print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
        return
    data = TrainData(cfg, 0, 1, device)
    data.fill()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    phase_seconds: dict[str, float] = defaultdict(float)
    clock = [time.perf_counter()]

    def phase(name: str) -> None:
        """Close phase `name`: its time since the previous phase ended (after the device caught up)."""
        sync()
        now = time.perf_counter()
        phase_seconds[name] += now - clock[0]
        clock[0] = now

    train_step, model = step_function(cfg, data, device, args.bf16, args.compile, phase)

    for step in range(3):
        train_step(step)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    phase_seconds.clear()
    t0 = clock[0] = time.perf_counter()
    for step in range(args.steps):
        train_step(step)
    sync()
    elapsed = time.perf_counter() - t0
    phases = {name: {"ms_per_step": 1000 * seconds / args.steps, "share": seconds / elapsed}
              for name, seconds in phase_seconds.items()}
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    result = {"samples_per_s": args.steps * cfg.run.batch_size / elapsed, "steps": args.steps,
              "batch_size": cfg.run.batch_size, "clip_samples": cfg.clip_samples, "device": str(device),
              "bf16": args.bf16, "compile": args.compile, "peak_memory_mb": peak / 2**20,
              "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS",
              "parameters": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
              "phases": phases}
    if args.flops:
        result.update(train_flops_per_sample(cfg.model, cfg.clip_samples))
        result["device_name"], peak_tf = peak_tflops(device, args.bf16)
        result["achieved_tflops"] = result["samples_per_s"] * result["train_flops_per_sample"] / 1e12
        result["fraction_of_peak"] = result["achieved_tflops"] / peak_tf if peak_tf else None
    if args.profile:  # after the peak memory was read: the profiler's own memory is not counted
        result.update(profile_steps(train_step, 3 + args.steps, args.profile_steps, device, args.profile))
    data.close()
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
