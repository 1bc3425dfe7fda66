"""Train the two-source localizer on RIR shards, mixing speech on the training device.

    accelerate launch --config_file accelerate_config.yaml training/train.py --config configs/train.yaml key=value ...
    python training/train.py --config configs/tiny.yaml --shards shards/ --run-dir runs/tiny --steps 400
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 training/train.py ...   # 2 CPU ranks (gloo)
    python training/train.py --run-dir runs/tiny --resume        # continue from the newest saved state

One loop, top to bottom: config -> shards checked -> Accelerator -> model/optimizer -> (resume) -> fill the
device reservoirs -> for each step: refresh, mix a batch on the device, forward/backward (accumulated),
clip, skip the step on NaN/Inf, AdamW step -> log / eval / save. The run folder gets config.yaml,
metrics.jsonl, TensorBoard scalars (tb/), Accelerate states (states/step-*) and model.safetensors.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

if __package__ in (None, ""):  # run as a script path: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from accelerate import Accelerator
from accelerate.tracking import get_available_trackers
from accelerate.utils import LoggerType, ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from configs import ConfigError, config_to_dict
from ssl_model import SSLModel
from shards.files import kill_point
from ssl_model.metrics import metric_sums, metrics_from_sums, two_slot_cross_entropy
from ssl_model.oracle import chance_binned_mae
from ssl_model.targets import angles_to_classes, decode_posteriors, soft_targets
from training.checkpoint import (CONFIG, WEIGHTS, CheckpointError, export_weights, latest_state, load_state,
                                 read_trainer_state, save_training_state)
from training.config import TrainConfig, dump_config, load_train_config
from training.batches import TrainData
from training.eval_set import fixed_eval_set
from training.sources import DataError, check_sources


class TrainingError(RuntimeError):
    """The run cannot go on (too many non-finite steps); the message says why and which key controls it."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Overrides: key.sub=value, e.g. run.batch_size=32 optim.lr=1e-3 target=lateral")
    p.add_argument("--config", help="YAML config (default: the seed protocol; with --resume: the run's config.yaml)")
    p.add_argument("--shards", help="shard root holding train/ and eval/ (= data.shards)")
    p.add_argument("--run-dir", help="run folder (= run.dir)")
    p.add_argument("--steps", type=int, help="optimizer steps (= run.steps)")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete state in the run folder")
    p.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    return p.parse_intermixed_args(argv)  # overrides may come before or after the flags


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    overrides = list(args.overrides)
    if args.shards:
        overrides.append(f"data.shards={args.shards}")
    if args.run_dir:
        overrides.append(f"run.dir={args.run_dir}")
    if args.steps is not None:
        overrides.append(f"run.steps={args.steps}")
    path = args.config
    if path is None and args.resume:
        run_dir = Path(args.run_dir or TrainConfig().run.dir)
        path = run_dir / CONFIG
        if not path.is_file():
            raise ConfigError(f"--resume: {run_dir} holds no run (no {CONFIG}); nothing to resume, "
                              f"start without --resume")
    cfg = load_train_config(path, overrides)
    if cfg.clip_samples < cfg.model.min_samples():
        raise ConfigError(f"speech.clip_seconds: {cfg.speech.clip_seconds} s is shorter than the model's "
                          f"minimum input ({cfg.model.min_samples()} samples at {cfg.sr} Hz)")
    if cfg.model.sr != cfg.sr:
        raise ConfigError(f"model.sr: must equal sr={cfg.sr}, got {cfg.model.sr}")
    return cfg


def resolve_mixed_precision(cfg: TrainConfig, env: Mapping[str, str], cuda: bool) -> tuple[str, str]:
    """-> (precision, who chose it). `accelerate launch` always exports its choice (its --mixed_precision flag,
    else its config file, else "no"), and a precision asked of accelerate wins; without it, run.mixed_precision
    decides, auto meaning bf16 on CUDA and fp32 on the CPU."""
    launched = env.get("ACCELERATE_MIXED_PRECISION")
    if launched:
        return launched, "accelerate launch"
    if cfg.run.mixed_precision != "auto":
        return cfg.run.mixed_precision, "run.mixed_precision"
    on_cpu = env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    return ("bf16" if cuda and not on_cpu else "no"), "run.mixed_precision=auto"


def all_gpus_command(argv: list[str], env: Mapping[str, str], gpus: int) -> list[str] | None:
    """The command that reruns this script once per GPU under torch.distributed.run, or None.

    `accelerate launch --config_file accelerate_config.yaml` starts one process (a config file cannot say
    "every GPU": accelerate wants num_processes as a number); on a node with several visible GPUs that
    process hands over to torchrun, one process per GPU. Accelerate's choices travel in the environment.
    """
    launched_alone = "ACCELERATE_MIXED_PRECISION" in env and "LOCAL_RANK" not in env and "RANK" not in env
    if gpus < 2 or not launched_alone or env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"):
        return None
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
            str(Path(__file__).resolve()), *argv]


def trackers(cfg: TrainConfig) -> list[str]:
    """run.log_with -> accelerate tracker names; ConfigError for an unknown or uninstalled one."""
    names = [n.strip() for n in cfg.run.log_with.split(",") if n.strip() and n.strip() != "none"]
    known = [t for t in LoggerType.list() if t != "all"]
    installed = [str(t) for t in get_available_trackers()]
    for name in names:
        if name not in known:
            raise ConfigError(f"run.log_with: unknown tracker {name!r}; accelerate supports {', '.join(known)} "
                              f"(comma-separated), or none")
        if name not in installed:
            raise ConfigError(f"run.log_with: {name} is not installed here (pip install {name}); installed: "
                              f"{', '.join(installed) or 'none'}")
    return names


def flat_config(cfg: TrainConfig) -> dict[str, int | float | str | bool]:
    """Config -> {'optim.lr': ..., ...} of scalars (lists as strings), the form trackers take as hyperparameters."""
    flat = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}{key}.", sub)
        else:
            flat[prefix[:-1]] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk("", config_to_dict(cfg))
    return flat


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine to lr * min_lr_ratio (or the seed's StepLR, or constant)."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    if o.schedule == "step":
        return o.lr * o.gamma ** ((step - o.warmup_steps) // o.step_size)
    progress = min(1.0, (step - o.warmup_steps) / max(1, cfg.run.steps - o.warmup_steps))
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model, batches, accelerator) -> dict[str, float]:
    """Score this rank's fixed eval batches; the metric sums are reduced across ranks once."""
    net = accelerator.unwrap_model(model)  # no DDP: ranks hold different batch counts, no collective inside
    was_training = net.training
    net.eval()
    sums = torch.zeros(net.config.num_slots, 5, dtype=torch.float64, device=accelerator.device)
    for wave, angles, _ in batches:
        with accelerator.autocast():
            logits = net(wave)
        _, pred_deg, _ = decode_posteriors(logits.float().softmax(dim=-1))
        sums = sums + metric_sums(pred_deg, angles).to(sums.device)
    net.train(was_training)
    return metrics_from_sums(accelerator.reduce(sums, reduction="sum"))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    relaunch = all_gpus_command(argv, os.environ, torch.cuda.device_count())
    if relaunch is not None:
        print(f"accelerate launch started one process; starting one per GPU: {' '.join(relaunch[1:5])} ...",
              file=sys.stderr, flush=True)
        return subprocess.call(relaunch)
    try:
        return train(args)
    except (ConfigError, DataError, TrainingError, CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def train(args: argparse.Namespace) -> int:
    # -------------------------------------------------- config and shards, before any model is built
    cfg = resolve_config(args)
    check_sources(cfg, int(os.environ.get("WORLD_SIZE", "1")))
    run_dir = Path(cfg.run.dir)
    resume_from = None
    if args.resume:
        resume_from = latest_state(run_dir)
        if resume_from is None:
            raise CheckpointError(f"--resume: {run_dir} holds no saved state (states/step-*/); nothing to resume, "
                                  f"start without --resume")
    log_with = trackers(cfg)
    mixed_precision, precision_from = resolve_mixed_precision(cfg, os.environ, torch.cuda.is_available())
    if precision_from == "accelerate launch" and cfg.run.mixed_precision not in ("auto", mixed_precision):
        print(f"warning: run.mixed_precision={cfg.run.mixed_precision} ignored: accelerate launch asked for "
              f"{mixed_precision} (pass --mixed_precision to accelerate launch to change it)", file=sys.stderr)

    accelerator = Accelerator(mixed_precision=mixed_precision, log_with=log_with or None,
                              project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "tb")))
    device, rank, world_size = accelerator.device, accelerator.process_index, accelerator.num_processes
    main_process = accelerator.is_main_process
    if main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / CONFIG)
        # TensorBoard writes under RUN/tb; wandb names the run after its folder.
        accelerator.init_trackers("dual-mic-ssl", config=flat_config(cfg), init_kwargs={"wandb": {"name": run_dir.name}})
    metrics_file = open(run_dir / "metrics.jsonl", "a") if main_process else None

    def log(record: dict) -> None:
        if metrics_file is not None:
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()

    # -------------------------------------------------- model, optimizer
    set_seed(cfg.run.seed)  # identical initial weights on every rank
    model = SSLModel(cfg.model)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.optim.lr, betas=cfg.optim.betas, fused=device.type == "cuda")
    if cfg.run.compile:
        model = torch.compile(model)
    model, optimizer = accelerator.prepare(model, optimizer)  # the WebDataset loaders are NOT prepared

    step, skipped, first_state = 0, 0, {}
    if resume_from is not None:
        load_state(accelerator, resume_from)  # model, optimizer, RNG states (weights_only loads)
        first_state = read_trainer_state(resume_from)
        step, skipped = int(first_state["step"]), int(first_state.get("skipped_steps", 0))
    optimizer_steps = [int(s["step"]) for s in optimizer.optimizer.state.values() if "step" in s][:1]
    log({"event": "start", "step": step, "world_size": world_size, "device": str(device),
         "mixed_precision": mixed_precision, "mixed_precision_from": precision_from, "resumed_from": str(resume_from) if resume_from else None,
         "optimizer_state_steps": optimizer_steps[0] if optimizer_steps else 0,
         "parameters": sum(p.numel() for p in model.parameters()), "target": cfg.target})

    # -------------------------------------------------- data: device reservoirs and the fixed eval set
    data = TrainData(cfg, rank, world_size, device, start_step=step, log=log)
    data.fill()
    eval_set = fixed_eval_set(cfg, device=device, rank=rank, world_size=world_size)
    chance = chance_binned_mae(angles_to_classes(eval_set.angles)).mean().item()
    samples_per_step = cfg.run.batch_size * cfg.optim.accum_steps * world_size

    # -------------------------------------------------- the loop
    bar = tqdm(total=cfg.run.steps, initial=step, disable=not (main_process and cfg.run.progress), unit="step")
    loss_sum = torch.zeros((), device=device)
    loss_count, window_skipped, t_window, steps_run = 0, 0, time.time(), 0
    last_saved = step
    model.train()
    while step < cfg.run.steps:
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        data.refresh(step)
        for micro in range(cfg.optim.accum_steps):
            wave, angles = data.batch(step, micro)  # fp32, mixed on the device outside autocast
            bad = ~torch.isfinite(wave).all()
            wave = torch.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)  # keeps BatchNorm statistics clean
            if cfg.optim.label_sigma_deg > 0:
                classes = soft_targets(angles, cfg.model.num_classes, cfg.optim.label_sigma_deg)
            else:
                classes = angles_to_classes(angles, cfg.model.num_classes)
            last = micro == cfg.optim.accum_steps - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(model):
                logits = model(wave)
                loss = two_slot_cross_entropy(logits, classes, cfg.optim.label_smoothing)
                # A non-finite batch poisons the gradients on purpose: after DDP's all-reduce every rank sees a
                # non-finite norm and skips the same step, with no extra collective.
                loss = loss * torch.where(bad, torch.full_like(loss, float("nan")), torch.ones_like(loss))
                accelerator.backward(loss / cfg.optim.accum_steps)
            loss_sum = loss_sum + torch.nan_to_num(loss.detach(), nan=0.0, posinf=0.0)
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip or float("inf"))
        if torch.isfinite(grad_norm):
            optimizer.step()
            loss_count += cfg.optim.accum_steps
        else:  # skipped and counted; the weights and the optimizer moments are untouched
            skipped += 1
            window_skipped += 1
        optimizer.zero_grad(set_to_none=True)
        step += 1
        steps_run += 1
        bar.update(1)
        kill_point(f"step:{step}")
        if step >= 20 and skipped / step > cfg.run.max_skip_share:
            raise TrainingError(f"{skipped} of {step} steps had NaN/Inf in the batch or the loss "
                                f"(> run.max_skip_share={cfg.run.max_skip_share}); weights were not updated on those steps")

        if step % cfg.run.log_every == 0 or step == cfg.run.steps:
            counters = data.counters()
            packed = torch.tensor([loss_sum.item(), loss_count, window_skipped, *counters.values()],
                                  dtype=torch.float64, device=device)
            packed = accelerator.reduce(packed, reduction="sum")
            elapsed = time.time() - t_window
            record = {"event": "train", "step": step, "loss": packed[0].item() / max(packed[1].item(), 1),
                      "lr": lr, "grad_norm": float(grad_norm), "skipped_steps_window": int(packed[2].item()),
                      "skipped_steps": skipped, "samples_per_s": samples_per_step * loss_count / cfg.optim.accum_steps / max(elapsed, 1e-9)
                      if loss_count else 0.0,
                      **{k: int(v) for k, v in zip(counters, packed[3:].tolist())}}
            log(record)
            accelerator.log({f"train/{k}": v for k, v in record.items() if isinstance(v, (int, float))}, step=step)
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.2e}")
            loss_sum.zero_()
            loss_count, window_skipped, t_window = 0, 0, time.time()

        if (cfg.eval.every and step % cfg.eval.every == 0) or step == cfg.run.steps:
            metrics = evaluate(model, eval_set.batches, accelerator)
            log({"event": "eval", "step": step, "target": cfg.target, "chance_binned_mae_deg": chance, **metrics})
            accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
            model.train()

        if step % cfg.run.save_every == 0 or step == cfg.run.steps:
            trainer_state = {"skipped_steps": skipped, "world_size": world_size, **data.counters()}
            save_training_state(accelerator, run_dir, step, trainer_state, cfg.run.keep_states)
            if main_process:
                export_weights(accelerator.unwrap_model(model), cfg, run_dir / WEIGHTS)
            last_saved = step

    # -------------------------------------------------- the end
    bar.close()
    if last_saved != step:
        save_training_state(accelerator, run_dir, step, {"skipped_steps": skipped, "world_size": world_size}, cfg.run.keep_states)
    if main_process:
        export_weights(accelerator.unwrap_model(model), cfg, run_dir / WEIGHTS)
    marker = run_dir / "ranks" / f"rank-{rank}.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"rank": rank, "world_size": world_size, "step": step, "steps_run": steps_run,
                                  "pid": os.getpid(), "skipped_steps": skipped, **data.counters()}))
    log({"event": "end", "step": step, "skipped_steps": skipped})
    data.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if metrics_file is not None:
        metrics_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
