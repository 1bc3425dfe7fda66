"""Train the localizer (how many talkers, 0-3, and their directions) on RIR shards, mixing speech on the
training device.

    python -m training.train --config configs/tiny.yaml --shards shards/ --run-dir runs/tiny --steps 400
    python training/train.py ...                                   # the same, by path
    accelerate launch --config_file accelerate_config.yaml training/train.py --config configs/train.yaml key=value ...
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 training/train.py ...   # 2 CPU ranks (gloo)
    python -m training.train --run-dir runs/tiny --resume          # continue from the newest saved state

A new run refuses a run folder that already holds a run (--resume continues it, --overwrite replaces it), and
one trainer at a time writes a folder (training.run_folder). A `pipe:` shard command runs only when typed on the
command line, never from a config file or a run's config.yaml, unless --allow-commands (training.config).

`train` reads top to bottom: config, resume plan and shards checked -> Accelerator -> model/optimizer ->
data -> (resume: saved state) -> run folder opened -> for each step: refresh the reservoirs, forward/backward
(accumulated) on batches mixed on the device, clip, skip the step on NaN/Inf, AdamW step -> log / eval / save.
The run folder gets config.yaml, metrics.jsonl, TensorBoard scalars (tb/), states (states/step-*) and
model.safetensors. Launching (one process per GPU, precision, trackers) lives in training.launch, the
schedule in training.schedule, what a resume may change in training.resume.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script path: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from configs import ConfigError, config_to_dict
from shards.faults import fault_point
from ssl_model import SSLModel
from ssl_model.model import SSLOutput
from ssl_model.cli_log import add_verbosity, setup_logging
from ssl_model.export import command_name, describe_non_finite, non_finite
from ssl_model.oracle import chance_binned_mae
from ssl_model.targets import angles_to_classes
from training.budget import check_run_config
from training.checkpoint import (CONFIG, WEIGHTS, CheckpointError, export_weights, latest_state, load_data_state,
                                 load_state, read_trainer_state, run_config, save_training_state, started_config)
from training.config import ALLOW_FLAG, TrainConfig, check_commands, load_train_config, typed_keys
from training.data.batches import TrainData
from training.data.eval_set import fixed_eval_set
from training.data.mixtures import Mixtures
from training.data.sources import DataError, check_sources
from training.eval.scores import metrics_from_score_sums, score_sums
from training.launch import all_gpus_command, precision_warning, resolve_mixed_precision, trackers
from training.objective import batch_loss as objective_loss
from training.resume import check_resume_changes
from training.run_folder import RunFolderError, claim_run_folder
from training.runlog import RunLog
from training.schedule import learning_rate
from training.warm_start import summary, warm_start

log = logging.getLogger("training.train")


class TrainingError(RuntimeError):
    """The run cannot go on (too many non-finite steps, weights no longer finite); the message says why and which
    key controls it."""


@dataclass
class Resume:
    """The newest complete state of the run folder, its trainer state, and the allowed config changes."""
    state_dir: Path
    trainer_state: dict
    changes: dict[str, tuple]


@dataclass
class Progress:
    """The loop's counters; the loss window is saved with each state so that logging resumes mid-window."""
    step: int = 0
    skipped: int = 0
    steps_run: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    window_skipped: int = 0
    window_start: float = field(default_factory=time.time)

    def window(self) -> dict[str, float]:
        return {"loss_sum": self.loss_sum, "loss_count": self.loss_count, "skipped": self.window_skipped}

    def reset_window(self) -> None:
        self.loss_sum, self.loss_count, self.window_skipped, self.window_start = 0.0, 0, 0, time.time()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=command_name("training.train"), description=__doc__.split("\n\n")[0],
                                epilog="Overrides: key.sub=value, e.g. run.batch_size=32 optim.lr=1e-3 target=lateral")
    p.add_argument("--config", help="YAML config (default: the seed protocol; with --resume: the run's config.yaml)")
    p.add_argument("--shards", help="shard root holding train/ and eval/ (= data.shards)")
    p.add_argument("--run-dir", help="run folder (= run.dir)")
    p.add_argument("--steps", type=int, help="optimizer steps (= run.steps)")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete state in the run folder")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a run folder that holds one, removing the old run's files")
    p.add_argument(ALLOW_FLAG, dest="allow_commands", action="store_true",
                   help="for this run, let pipe: shard commands written in --config or the run's config.yaml run "
                        "(without it only pipe: values typed on the command line run)")
    p.add_argument("overrides", nargs="*", help="key.sub=value config overrides")
    add_verbosity(p)
    return p.parse_intermixed_args(argv)  # overrides may come before or after the flags


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Flags and overrides on top of --config, or (--resume without --config) of the run's config.yaml."""
    overrides = list(args.overrides)
    for flag, key in ((args.shards, "data.shards"), (args.run_dir, "run.dir"), (args.steps, "run.steps")):
        if flag is not None:
            overrides.append(f"{key}={flag}")
    if args.resume and args.config is None:
        run_dir = Path(args.run_dir or TrainConfig().run.dir)
        if not (run_dir / CONFIG).is_file():
            raise ConfigError(f"--resume: {run_dir} holds no run (no {CONFIG}); nothing to resume, "
                              f"start without --resume")
        cfg, source = run_config(run_dir, overrides), str(run_dir / CONFIG)
    else:
        cfg, source = load_train_config(args.config, overrides), str(args.config or "the defaults")
    check_commands(cfg, typed_keys(overrides), args.allow_commands, source)
    check_run_config(cfg)
    return cfg


def plan_resume(cfg: TrainConfig) -> Resume:
    """The state to resume from, checked against the run's saved config before anything is written."""
    run_dir = Path(cfg.run.dir)
    state_dir = latest_state(run_dir)
    if state_dir is None:
        raise CheckpointError(f"--resume: {run_dir} holds no saved state (states/step-*/); nothing to resume, "
                              f"start without --resume")
    trainer_state = read_trainer_state(state_dir)
    started = started_config(trainer_state, state_dir) or run_config(run_dir)
    changes = check_resume_changes(started, cfg, run_dir / CONFIG)
    return Resume(state_dir, trainer_state, changes)


def already_done(cfg: TrainConfig, resume: Resume) -> bool:
    """--resume of a run whose saved state already reached run.steps: say so in one line."""
    step = int(resume.trainer_state["step"])
    if step < cfg.run.steps:
        return False
    print(f"{cfg.run.dir}: already trained {step} of run.steps={cfg.run.steps} steps, nothing to do (raise "
          f"run.steps, e.g. --steps {2 * cfg.run.steps}, to train on)", flush=True)
    return True


def make_accelerator(cfg: TrainConfig) -> tuple[Accelerator, dict]:
    """-> (the Accelerator, the start record's launch fields); trackers and precision checked first."""
    log_with = trackers(cfg)
    precision, chosen_by = resolve_mixed_precision(cfg, os.environ, torch.cuda.is_available())
    warning = precision_warning(cfg, precision, chosen_by)
    if warning:
        log.warning("%s", warning.removeprefix("warning: "))
    run_dir = Path(cfg.run.dir)
    accelerator = Accelerator(mixed_precision=precision, log_with=log_with or None,
                              project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "tb")))
    return accelerator, {"mixed_precision": precision, "mixed_precision_from": chosen_by}


def build_model(cfg: TrainConfig, accelerator: Accelerator, resuming: bool = False):
    """-> (model, AdamW), prepared by Accelerate; identical initial weights on every rank (run.init_from's where
    they fit, when the run starts)."""
    set_seed(cfg.run.seed)
    model = SSLModel(cfg.model)
    if cfg.run.init_from and not resuming:
        report = warm_start(model, cfg.run.init_from, cfg.run.init_partial, cfg.run.init_fresh)
        log.info("%s", summary(report))
        log.debug("run.init_from: copied %s", ", ".join(report["copied"]))
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.optim.lr, betas=cfg.optim.betas, fused=accelerator.device.type == "cuda")
    if cfg.run.compile:
        model = torch.compile(model)
    return accelerator.prepare(model, optimizer)  # the WebDataset loaders are NOT prepared


def restore(accelerator: Accelerator, data: TrainData, resume: Resume) -> Progress:
    """Model, optimizer and RNG states (Accelerate), this rank's data state, and the loop's counters."""
    rank, world_size = accelerator.process_index, accelerator.num_processes
    load_state(accelerator, resume.state_dir)
    saved = load_data_state(resume.state_dir, rank)
    if saved is None:
        warnings.warn(f"{resume.state_dir}: no data state for rank {rank} (saved by {resume.trainer_state.get('world_size')} "
                      f"rank(s), now {world_size}): this rank refills its reservoirs from fresh streams, so the data "
                      f"drawn from here differs from the uninterrupted run's", RuntimeWarning, stacklevel=2)
        data.fill()
    else:
        try:
            data.load_state(*saved, where=str(resume.state_dir))
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{resume.state_dir}: data state of rank {rank} does not fit this config ({err})") from None
    state = resume.trainer_state
    step = int(state["step"])
    data.reopen(step)
    window = state.get("window", {})
    return Progress(step=step, skipped=int(state.get("skipped_steps", 0)), loss_sum=float(window.get("loss_sum", 0.0)),
                    loss_count=int(window.get("loss_count", 0)), window_skipped=int(window.get("skipped", 0)))


def start_record(accelerator, model, optimizer, cfg: TrainConfig, launch: dict, progress: Progress,
                 resume: Resume | None) -> dict:
    optimizer_steps = [int(s["step"]) for s in optimizer.optimizer.state.values() if "step" in s][:1]
    record = {"event": "start", "step": progress.step, "world_size": accelerator.num_processes,
              "device": str(accelerator.device), **launch,
              "resumed_from": str(resume.state_dir) if resume else None,
              "optimizer_state_steps": optimizer_steps[0] if optimizer_steps else 0,
              "parameters": sum(p.numel() for p in model.parameters()), "target": cfg.target}
    if resume is not None and resume.changes:
        record["changed_on_resume"] = {key: list(change) for key, change in resume.changes.items()}
    return record


def batch_loss(model, batch: Mixtures, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """One micro-batch's Mixtures -> (loss (scalar), whether its wave held NaN/Inf (bool scalar)); the one place
    that knows what a batch holds and which objective trains the model (training.objective)."""
    bad = ~torch.isfinite(batch.wave).all()
    wave = torch.nan_to_num(batch.wave, nan=0.0, posinf=0.0, neginf=0.0)  # keeps BatchNorm statistics clean
    swapped = None
    if cfg.optim.mirror_average:  # one forward over the windows and their channel-swapped copies
        both = model(torch.cat([wave, wave.flip(1)]), batch.spacing.repeat(2), heads=True)
        out, swapped = (SSLOutput(*(None if t is None else t.chunk(2)[half] for t in both)) for half in (0, 1))
    else:
        out = model(wave, batch.spacing, heads=True)  # through the (DDP-)wrapped forward: every head's gradients sync
    return objective_loss(out, batch, cfg.model, cfg.optim.label_sigma_deg, cfg.optim.label_smoothing,
                          cfg.optim.exist_weight, cfg.optim.slot_assignment == "permutation", cfg.optim.track_weight,
                          swapped), bad


def train_step(model, optimizer, accelerator, data: TrainData, cfg: TrainConfig, progress: Progress) -> float:
    """Forward/backward over optim.accum_steps micro-batches, clip, then the AdamW step unless the gradient is
    non-finite (skipped and counted; weights and moments untouched). -> the gradient norm."""
    loss_sum = torch.zeros((), device=accelerator.device)
    for micro in range(cfg.optim.accum_steps):
        last = micro == cfg.optim.accum_steps - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(model):
            loss, bad = batch_loss(model, data.batch(progress.step, micro), cfg)
            # A non-finite batch poisons the gradients on purpose: after DDP's all-reduce every rank sees a
            # non-finite norm and skips the same step, with no extra collective.
            loss = loss * torch.where(bad, torch.full_like(loss, float("nan")), torch.ones_like(loss))
            accelerator.backward(loss / cfg.optim.accum_steps)
        loss_sum = loss_sum + torch.nan_to_num(loss.detach(), nan=0.0, posinf=0.0)
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip or float("inf"))
    if torch.isfinite(grad_norm):
        optimizer.step()
        progress.loss_sum += loss_sum.item()
        progress.loss_count += cfg.optim.accum_steps
    else:
        progress.skipped += 1
        progress.window_skipped += 1
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


def check_skip_budget(progress: Progress, cfg: TrainConfig) -> None:
    """TrainingError when too many steps were skipped (after 20 steps), or, at the end of a shorter run, all of
    them: a run that never updated its weights must not end as if it had trained."""
    if progress.step >= 20 and progress.skipped / progress.step > cfg.run.max_skip_share:
        raise TrainingError(f"{progress.skipped} of {progress.step} steps had NaN/Inf in the batch or the loss "
                            f"(> run.max_skip_share={cfg.run.max_skip_share}); weights were not updated on those steps")
    if progress.step == cfg.run.steps and progress.skipped >= progress.step:
        raise TrainingError(f"every one of the {progress.step} steps had NaN/Inf in the batch or the loss, so the "
                            f"weights were never updated and no model is written (look at run.init_from's weights, "
                            f"optim.lr and the data)")


def check_weights(model: torch.nn.Module, step: int) -> None:
    """TrainingError when a weight or buffer holds NaN/Inf, before anything is scored or saved from it: the run
    folder keeps its last good state and weights."""
    state = model.state_dict()
    bad = non_finite(state)
    if bad is not None:
        raise TrainingError(f"step {step}: the weights are not finite ({bad}: {describe_non_finite(state[bad])}); "
                            f"nothing was saved from this step, the run folder keeps its last good state")


def log_train(run: RunLog, accelerator, data: TrainData, progress: Progress, cfg: TrainConfig, lr: float,
              grad_norm: float) -> dict:
    """The window's mean loss and counters, summed over ranks -> a `train` record; the window restarts."""
    counters = data.counters()
    packed = torch.tensor([progress.loss_sum, progress.loss_count, progress.window_skipped, *counters.values()],
                          dtype=torch.float64, device=accelerator.device)
    packed = accelerator.reduce(packed, reduction="sum")
    elapsed = max(time.time() - progress.window_start, 1e-9)
    mixtures = packed[1].item() * cfg.run.batch_size  # samples of the steps taken, every rank
    record = {"event": "train", "step": progress.step, "loss": packed[0].item() / max(packed[1].item(), 1),
              "lr": lr, "grad_norm": grad_norm, "skipped_steps_window": int(packed[2].item()),
              "skipped_steps": progress.skipped, "samples_per_s": mixtures / elapsed,
              **{k: int(v) for k, v in zip(counters, packed[3:].tolist())}}
    run.log(record)
    run.scalars("train", record, progress.step)
    progress.reset_window()
    return record


@torch.no_grad()
def evaluate(model, mixtures: list[Mixtures], accelerator) -> dict[str, float]:
    """Score this rank's fixed eval mixtures (training.eval.scores); the sums are reduced across ranks once."""
    net = accelerator.unwrap_model(model)  # no DDP: ranks hold different batch counts, no collective inside
    was_training = net.training
    net.eval()
    sums = torch.zeros(net.config.num_slots, 5, dtype=torch.float64, device=accelerator.device)
    counts = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for batch in mixtures:
        with accelerator.autocast():
            out = net(batch.wave, batch.spacing, heads=True)
        direction, count = score_sums(out, batch)
        sums, counts = sums + direction.to(sums.device), counts + count.to(counts.device)
    net.train(was_training)
    return metrics_from_score_sums(accelerator.reduce(sums, reduction="sum"), accelerator.reduce(counts, reduction="sum"))


def log_eval(run: RunLog, model, accelerator, eval_set, chance: float, cfg: TrainConfig, step: int) -> None:
    metrics = evaluate(model, eval_set.mixtures, accelerator)
    run.log({"event": "eval", "step": step, "target": cfg.target, "chance_binned_mae_deg": chance, **metrics})
    run.scalars("eval", metrics, step)


def save(accelerator, model, data: TrainData, cfg: TrainConfig, progress: Progress) -> None:
    """A complete state (model, optimizer, RNG, every rank's data state, counters), the exported weights, and
    the streams reopened from this step: where a resumed run reopens them."""
    run_dir = Path(cfg.run.dir)
    trainer_state = {"skipped_steps": progress.skipped, "world_size": accelerator.num_processes,
                     "window": progress.window(), **data.counters(), "config": config_to_dict(cfg)}
    save_training_state(accelerator, run_dir, progress.step, trainer_state, cfg.run.keep_states, data.state())
    if accelerator.is_main_process:
        export_weights(accelerator.unwrap_model(model), cfg, run_dir / WEIGHTS)
    data.reopen(progress.step)


def finish(run: RunLog, accelerator, model, data: TrainData, cfg: TrainConfig, progress: Progress) -> None:
    """Final weights, this rank's marker, the `end` record, and one line saying where everything is."""
    run_dir = Path(cfg.run.dir)
    if accelerator.is_main_process:
        export_weights(accelerator.unwrap_model(model), cfg, run_dir / WEIGHTS)
    marker = run_dir / "ranks" / f"rank-{accelerator.process_index}.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"rank": accelerator.process_index, "world_size": accelerator.num_processes,
                                  "step": progress.step, "steps_run": progress.steps_run, "pid": os.getpid(),
                                  "skipped_steps": progress.skipped, **data.counters()}))
    run.log({"event": "end", "step": progress.step, "skipped_steps": progress.skipped})
    data.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    run.close()
    if accelerator.is_main_process:
        print(f"trained {progress.step} steps: weights {run_dir / WEIGHTS}, run {run_dir} "
              f"(config.yaml, metrics.jsonl, tb/, states/)", flush=True)


def train(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)  # nothing is built or written before these checks pass
    resume = plan_resume(cfg) if args.resume else None
    if resume is not None and already_done(cfg, resume):
        return 0
    train_sources, eval_sources = check_sources(cfg, int(os.environ.get("WORLD_SIZE", "1")))  # resolved once
    lock = None  # held until the process ends: one trainer per run folder
    if os.environ.get("RANK", "0") == "0":
        lock = claim_run_folder(cfg.run.dir, resume is not None, args.overwrite)
    accelerator, launch = make_accelerator(cfg)
    model, optimizer = build_model(cfg, accelerator, resuming=resume is not None)
    run = RunLog(accelerator, Path(cfg.run.dir))
    data = TrainData(cfg, accelerator.process_index, accelerator.num_processes, accelerator.device, log=run.log,
                     sources=train_sources)
    eval_set = fixed_eval_set(cfg, device=accelerator.device, rank=accelerator.process_index,
                              world_size=accelerator.num_processes, sources=eval_sources)
    progress = restore(accelerator, data, resume) if resume else Progress()
    for key, (old, new) in (resume.changes.items() if resume else ()):
        log.warning("--resume: %s changed from %r to %r (recorded in metrics.jsonl)", key, old, new)
    run.open(cfg, progress.step if resume else None)
    run.log(start_record(accelerator, model, optimizer, cfg, launch, progress, resume))
    if resume is None:
        data.fill()
    chance = chance_binned_mae(angles_to_classes(eval_set.angles)).mean().item()

    bar = tqdm(total=cfg.run.steps, initial=progress.step, unit="step",
               disable=not (accelerator.is_main_process and cfg.run.progress) or args.quiet)
    model.train()
    while progress.step < cfg.run.steps:
        lr = learning_rate(progress.step, cfg.optim, cfg.run.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        data.refresh(progress.step)
        grad_norm = train_step(model, optimizer, accelerator, data, cfg, progress)
        progress.step += 1
        progress.steps_run += 1
        bar.update(1)
        fault_point(f"step:{progress.step}")
        check_skip_budget(progress, cfg)
        last = progress.step == cfg.run.steps
        evaluating = bool(cfg.eval.every and progress.step % cfg.eval.every == 0) or last
        saving = progress.step % cfg.run.save_every == 0 or last
        if evaluating or saving:
            check_weights(accelerator.unwrap_model(model), progress.step)
        if progress.step % cfg.run.log_every == 0 or last:
            record = log_train(run, accelerator, data, progress, cfg, lr, grad_norm)
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{lr:.2e}")
        if evaluating:
            log_eval(run, model, accelerator, eval_set, chance, cfg, progress.step)
        if saving:
            save(accelerator, model, data, cfg, progress)
    bar.close()
    finish(run, accelerator, model, data, cfg, progress)
    del lock
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    setup_logging(args, default=logging.INFO)  # notes (the warm start's report) show unless -q
    if args.quiet:
        warnings.simplefilter("ignore")  # -q: errors only
    relaunch = all_gpus_command(argv, os.environ, torch.cuda.device_count())
    if relaunch is not None:
        log.info("accelerate launch started one process; starting one per GPU: %s ...", " ".join(relaunch[1:5]))
        return subprocess.call(relaunch)
    try:
        return train(args)
    except (ConfigError, DataError, TrainingError, CheckpointError, RunFolderError, FileNotFoundError) as err:
        log.error("%s", err)
        return 2
    except OSError as err:  # a disk that fills up or turns read-only mid-run: one line, not a traceback
        log.error("%s: cannot write (%s)", getattr(err, "filename", None) or "run.dir", err.strerror or err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
