"""How the training process runs: one process per GPU, the precision rule, and the trackers.

Each is decided from the config and the environment before any model is built; each mistake is a one-line
ConfigError naming the key.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping

from accelerate.tracking import get_available_trackers
from accelerate.utils import LoggerType

from configs import ConfigError, config_to_dict
from training.config import TrainConfig

TRAIN_SCRIPT = Path(__file__).resolve().with_name("train.py")


def launched_on_cpu(env: Mapping[str, str]) -> bool:
    return env.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")


def resolve_mixed_precision(cfg: TrainConfig, env: Mapping[str, str], cuda: bool) -> tuple[str, str]:
    """-> (precision, who chose it). `accelerate launch` always exports its choice (its --mixed_precision flag,
    else its config file, else "no"), and a precision asked of accelerate wins; without it, run.mixed_precision
    decides, auto meaning bf16 on CUDA and fp32 on the CPU."""
    launched = env.get("ACCELERATE_MIXED_PRECISION")
    if launched:
        return launched, "accelerate launch"
    if cfg.run.mixed_precision != "auto":
        return cfg.run.mixed_precision, "run.mixed_precision"
    return ("bf16" if cuda and not launched_on_cpu(env) else "no"), "run.mixed_precision=auto"


def precision_warning(cfg: TrainConfig, precision: str, chosen_by: str) -> str | None:
    """The warning for a run.mixed_precision that accelerate launch overrode, or None."""
    if chosen_by != "accelerate launch" or cfg.run.mixed_precision in ("auto", precision):
        return None
    return (f"warning: run.mixed_precision={cfg.run.mixed_precision} ignored: accelerate launch asked for "
            f"{precision} (pass --mixed_precision to accelerate launch to change it)")


def all_gpus_command(argv: list[str], env: Mapping[str, str], gpus: int) -> list[str] | None:
    """The command that reruns training once per GPU under torch.distributed.run, or None.

    `accelerate launch --config_file accelerate_config.yaml` starts one process (a config file cannot say
    "every GPU": accelerate wants num_processes as a number); on a node with several visible GPUs that
    process hands over to torchrun, one process per GPU. Accelerate's choices travel in the environment.
    """
    launched_alone = "ACCELERATE_MIXED_PRECISION" in env and "LOCAL_RANK" not in env and "RANK" not in env
    if gpus < 2 or not launched_alone or launched_on_cpu(env):
        return None
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
            str(TRAIN_SCRIPT), *argv]


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


def tracker_kwargs(run_name: str, resumed_step: int | None) -> dict[str, dict]:
    """init_kwargs per tracker: wandb names the run after its folder; a resumed TensorBoard log hides the
    events past the restored step (SummaryWriter's purge_step), as metrics.jsonl drops its records."""
    kwargs: dict[str, dict] = {"wandb": {"name": run_name}}
    if resumed_step is not None:
        kwargs["tensorboard"] = {"purge_step": resumed_step + 1}
    return kwargs


def flat_config(cfg: TrainConfig) -> dict[str, int | float | str | bool]:
    """Config -> {'optim.lr': ..., ...} of scalars (lists as strings), the form trackers take as hyperparameters."""
    return {key: value if isinstance(value, (int, float, str, bool)) else str(value)
            for key, value in flatten(config_to_dict(cfg)).items()}


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """{'a': {'b': 1}} -> {'a.b': 1}: the dotted keys of a nested config dict."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
