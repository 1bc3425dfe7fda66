"""Which part of the work this process owns: rank and world size from flags, SLURM or torchrun; which GPU."""
from __future__ import annotations

import os
from typing import Mapping

from configs import ConfigError

# Checked in this order; the first pair present wins. A job array task is one rank; torchrun's
# variables beat SLURM_PROCID/SLURM_NTASKS, which every SLURM job sets (to 0/1 under torchrun).
_ENV_PAIRS = (
    ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"),
    ("RANK", "WORLD_SIZE", None),
    ("SLURM_PROCID", "SLURM_NTASKS", None),
)


def resolve_rank(rank: int | None = None, world_size: int | None = None,
                 env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """Flags, else SLURM array / SLURM tasks / torchrun variables, else (0, 1) -> (rank, world_size)."""
    env = os.environ if env is None else env
    if rank is None and world_size is None:
        for rank_key, world_key, min_key in _ENV_PAIRS:
            if rank_key in env and world_key in env:
                try:
                    rank, world_size = int(env[rank_key]), int(env[world_key])
                    # `--array=1-8` numbers tasks from 1: shift so ranks start at 0.
                    rank -= int(env.get(min_key, "0")) if min_key else 0
                except ValueError:
                    raise ConfigError(f"{rank_key}/{world_key}: expected integers, got "
                                      f"{env[rank_key]!r}/{env[world_key]!r}") from None
                break
    rank = 0 if rank is None else rank
    world_size = 1 if world_size is None else world_size
    if world_size < 1:
        raise ConfigError(f"world_size: must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank: must be in [0, {world_size}), got {rank}")
    return rank, world_size


def resolve_device(device: str, cuda_count: int, env: Mapping[str, str] | None = None) -> str:
    """--device -> the device this process renders on. Plain `cuda` on a node running one process per GPU
    (torchrun's LOCAL_RANK, else SLURM_LOCALID) becomes `cuda:<local rank>`; `cpu` and `cuda:N` stay."""
    env = os.environ if env is None else env
    if device != "cuda":
        return device
    for key in ("LOCAL_RANK", "SLURM_LOCALID"):
        if key in env:
            try:
                local = int(env[key])
            except ValueError:
                raise ConfigError(f"{key}: expected an integer, got {env[key]!r}") from None
            if not 0 <= local < cuda_count:
                raise ConfigError(f"{key}={local}: this node has {cuda_count} visible CUDA device(s); "
                                  f"start at most one process per GPU or pass --device cuda:N")
            return f"cuda:{local}"
    return device


def owns(k: int, rank: int, world_size: int) -> bool:
    """Shard k belongs to this rank (round robin, so ranks finish at about the same time)."""
    return k % world_size == rank
