"""The learning-rate schedule: linear warmup, then cosine to a floor, the seed's StepLR, or constant."""
from __future__ import annotations

import math

from training.config import OptimConfig


def learning_rate(step: int, optim: OptimConfig, total_steps: int) -> float:
    """Optimizer step (0-based) -> its learning rate.

    Cosine decay after warmup as in Loshchilov and Hutter (SGDR, ICLR 2017) without restarts:
    lr_min + (lr - lr_min) * (1 + cos(pi * progress)) / 2, with lr_min = lr * min_lr_ratio.
    """
    o = optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    if o.schedule == "step":
        return o.lr * o.gamma ** ((step - o.warmup_steps) // o.step_size)
    progress = min(1.0, (step - o.warmup_steps) / max(1, total_steps - o.warmup_steps))
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
