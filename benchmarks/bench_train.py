"""Training throughput: full steps (reservoir refresh, device mixing, forward, backward, AdamW), samples/s and peak memory.

    python benchmarks/bench_train.py --shards shards/ [--config configs/tiny.yaml] [--steps 30] [--json] [key=value ...]
Without --shards, a small shard set is simulated into a temporary folder first.
--flops adds the FLOPs of a training sample and the share of the device's dense peak they reach (bench_model's
counting rule and peak table); --profile PATH profiles a few more steps after the timed ones (torch.profiler) and
writes the top operators and kernels to PATH (benchmarks/gpu_check.sh).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

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
    p.add_argument("--json", action="store_true")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    args.shards, _tmp = shards_or_simulated(args.shards)
    cfg = load_train_config(args.config, [f"data.shards={args.shards}", *args.overrides])
    device = torch.device(args.device)
    data = TrainData(cfg, 0, 1, device)
    data.fill()
    model = SSLModel(cfg.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, fused=device.type == "cuda")
    forward = torch.compile(model.outputs) if args.compile else model.outputs
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def train_step(step: int) -> None:
        data.refresh(step)
        mixtures = data.batch(step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            out = forward(mixtures.wave, mixtures.spacing)
        loss = batch_loss(out, mixtures, cfg.model, cfg.optim.label_sigma_deg)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for step in range(3):
        train_step(step)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for step in range(args.steps):
        train_step(step)
    sync()
    elapsed = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    result = {"samples_per_s": args.steps * cfg.run.batch_size / elapsed, "steps": args.steps,
              "batch_size": cfg.run.batch_size, "clip_samples": cfg.clip_samples, "device": str(device),
              "bf16": args.bf16, "compile": args.compile, "peak_memory_mb": peak / 2**20,
              "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS",
              "parameters": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads()}
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
