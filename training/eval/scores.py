"""Scores of a batch of model outputs against its Mixtures, as sums that add across batches and ranks.

Directions are scored per slot on the slots that hold a talker in the truth (slot i against the i-th counted
talker; a model without a count head has every slot held), with the model's first `count` slots taken in
ascending angle order: the direction error given the true count. With a count head, the count accuracy is
scored beside it (the count read from the existence logits, targets.decode_count).
"""
from __future__ import annotations

import torch

from ssl_model.metrics import metric_sums, metrics_from_sums
from ssl_model.model import SSLOutput
from ssl_model.targets import decode, decode_count, decode_posteriors
from training.data.mixtures import Mixtures


def slot_angles_given_count(logits: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """logits [B, S, C], count long [B] -> angles [B, S]: the first `count` slots' decoded angles ascending, the rest
    as decoded."""
    _, angles = decode(logits)
    held = torch.arange(angles.shape[1], device=angles.device)[None, :] < count[:, None]
    key = torch.where(held, angles, torch.full_like(angles, float("inf"))).sort(dim=-1).values
    return torch.where(torch.isfinite(key), key, angles)


def score_sums(out: SSLOutput, mix: Mixtures) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (direction sums [S, 5] as ssl_model.metrics.metric_sums, count sums [2]: mixtures, correct counts)."""
    if out.exist is None:
        _, pred, _ = decode_posteriors(out.logits.float().softmax(dim=-1))
        held = torch.ones_like(pred)
        correct = torch.tensor(float(len(mix)), device=pred.device)
    else:
        pred = slot_angles_given_count(out.logits, mix.count)
        held = torch.isfinite(mix.angles).double()
        correct = (decode_count(out.exist)[0] == mix.count).sum().double()
    truth = torch.nan_to_num(mix.angles, nan=0.0)
    counts = torch.stack((torch.tensor(float(len(mix)), device=pred.device, dtype=torch.float64), correct.double()))
    return metric_sums(pred, truth, held), counts


def metrics_from_score_sums(direction: torch.Tensor, counts: torch.Tensor) -> dict[str, float]:
    """Sums of score_sums over batches (and ranks) -> metrics_from_sums' fields plus count_acc."""
    out = metrics_from_sums(direction)
    out["count_acc"] = float(counts[1] / counts[0].clamp_min(1.0))
    return out
