"""Training throughput: full steps (reservoir refresh, device mixing, forward, backward, AdamW), samples/s and peak memory.

    python benchmarks/bench_train.py --shards shards/ [--config configs/tiny.yaml] [--steps 30] [--json] [key=value ...]
Without --shards, a small shard set is simulated into a temporary folder first.
"""
from __future__ import annotations

import argparse
import json
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
from training.batches import TrainData
from training.objective import batch_loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards")
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="autocast bf16 (GPU)")
    p.add_argument("--compile", action="store_true")
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
    data.close()
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    result = {"samples_per_s": args.steps * cfg.run.batch_size / elapsed, "steps": args.steps,
              "batch_size": cfg.run.batch_size, "clip_samples": cfg.clip_samples, "device": str(device),
              "bf16": args.bf16, "compile": args.compile, "peak_memory_mb": peak / 2**20,
              "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS",
              "parameters": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads()}
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
