"""Data path throughput: shard streaming into the device reservoirs plus device mixing, samples/s.

    python benchmarks/bench_pipeline.py --shards shards/ [--config configs/tiny.yaml] [--steps 50] [--json]
Without --shards, a small shard set is simulated into a temporary folder first.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from shard_fixture import shards_or_simulated
from training.config import load_train_config
from training.data.batches import TrainData


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards")
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"))
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", action="store_true")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    args.shards, _tmp = shards_or_simulated(args.shards)
    cfg = load_train_config(args.config, [f"data.shards={args.shards}", *args.overrides])
    device = torch.device(args.device)
    data = TrainData(cfg, 0, 1, device)
    data.fill()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in range(3):  # warm-up
        data.refresh(step)
        data.batch(step)
    sync()
    t0 = time.perf_counter()
    for step in range(args.steps):
        data.refresh(step)
        data.batch(step)
    sync()
    elapsed = time.perf_counter() - t0
    data.close()
    result = {"samples_per_s": args.steps * cfg.run.batch_size / elapsed, "steps": args.steps,
              "batch_size": cfg.run.batch_size, "clip_samples": cfg.clip_samples, "device": str(device),
              "rir_refresh_per_step": cfg.data.rir_refresh, "speech_source": cfg.speech.source,
              "threads": torch.get_num_threads()}
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
