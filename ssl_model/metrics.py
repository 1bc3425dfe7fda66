"""Loss and localization metrics: the seed's sorted two-slot cross-entropy and binned MAE per slot, plus
continuous MAE, accuracy within 5 and 10 degrees, breakdowns by scene factors (the oracle floor and chance are
ssl_model.oracle's).

Metrics take angles in degrees, whatever class count a model was trained with: binned MAE is always the
seed's, |floor(pred / 5) - floor(true / 5)| * 5 (180 degrees in the last bin).

Metric sums are one float64 tensor [slots, 5] (count, binned abs error, abs error, within 5, within 10), so
data-parallel ranks can all_reduce a single tensor before `metrics_from_sums`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ssl_model.targets import BIN_DEG, NUM_CLASSES, angle_to_class

SUM_FIELDS = ("count", "binned_abs", "abs", "within5", "within10")
METRICS = ("binned_mae_deg", "mae_deg", "acc5", "acc10")

# Breakdown bin edges; values outside the outer edges count in the first/last bin (nothing dropped).
# elevation and separation are in degrees (elevation as |elevation|), distance in metres, rt60 in seconds.
DEFAULT_BINS: dict[str, tuple[float, ...]] = {
    "rt60": (0.1, 0.3, 0.5, 0.7),
    "distance": (0.2, 1.0, 2.0, 3.0, 5.0),
    "elevation": (0.0, 10.0, 20.0, 40.0, 90.0),
    "separation": (0.0, 10.0, 20.0, 40.0, 180.0),
}


def two_slot_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """logits [B, S, C], targets: classes long [B, S] or distributions [B, S, C] (targets.soft_targets) -> scalar:
    sum over slots of the batch-mean cross-entropy (the seed's loss with one-hot targets)."""
    shape = logits.shape[:2]
    flat = targets.flatten(0, 1) if targets.dim() == 3 else targets.flatten()
    per_item = F.cross_entropy(logits.float().flatten(0, 1), flat.float() if targets.dim() == 3 else flat,
                               reduction="none", label_smoothing=label_smoothing)
    return per_item.view(shape).mean(dim=0).sum()


def metric_sums(pred_deg: torch.Tensor, true_deg: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """pred and true angles [B, S] in degrees (weight optional [B, S] or [B], 0/1 mask) -> float64 sums [S, 5]
    in SUM_FIELDS order."""
    binned = (angle_to_class(pred_deg, NUM_CLASSES) - angle_to_class(true_deg, NUM_CLASSES)).abs().double() * BIN_DEG
    error = (pred_deg.double() - true_deg.double()).abs()
    if weight is None:
        weight = torch.ones_like(error)
    weight = weight.double()
    if weight.dim() == 1:
        weight = weight.unsqueeze(-1).expand_as(error)
    columns = (weight, weight * binned, weight * error, weight * (error <= 5.0), weight * (error <= 10.0))
    return torch.stack([c.sum(dim=0) for c in columns], dim=-1)


def metrics_from_sums(sums: torch.Tensor) -> dict[str, float]:
    """sums [S, 5] -> {'<metric>_slot<k>': ..., '<metric>': slot mean, 'count': n} (MAEs in degrees, accs 0..1)."""
    sums = sums.double().cpu()
    count = sums[:, 0]
    safe = count.clamp_min(1.0)
    values = {
        "binned_mae_deg": sums[:, 1] / safe,
        "mae_deg": sums[:, 2] / safe,
        "acc5": sums[:, 3] / safe,
        "acc10": sums[:, 4] / safe,
    }
    out: dict[str, float] = {"count": float(count.max())}
    empty = bool((count == 0).all())
    for name, per_slot in values.items():
        for slot, value in enumerate(per_slot.tolist()):
            out[f"{name}_slot{slot + 1}"] = float("nan") if count[slot] == 0 else value
        out[name] = float("nan") if empty else float((sums[:, 1 + METRICS.index(name)].sum() / count.sum()))
    return out


def bin_labels(edges: Sequence[float]) -> list[str]:
    return [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]


def bin_index(values: torch.Tensor, edges: Sequence[float]) -> torch.Tensor:
    """values [...] -> bin index long [...] in [0, len(edges) - 2]; outside values go to the end bins."""
    inner = torch.tensor(list(edges[1:-1]), dtype=torch.float64, device=values.device)
    return torch.bucketize(values.double().contiguous(), inner, right=True)


def localization_metrics(pred_deg: torch.Tensor, true_deg: torch.Tensor, factors: Mapping[str, torch.Tensor] | None = None,
                         bins: Mapping[str, Sequence[float]] | None = None) -> dict:
    """[N, S] each, factors {name: [N] or [N, S]} -> {metric: value, ..., 'by_<factor>': {bin label: metrics}}.

    A per-sample factor [N] (rt60, separation) puts both slots of a sample in one bin; a per-source factor
    [N, S] (distance, elevation: |elevation| is used) bins each slot by its own source.
    """
    result: dict = metrics_from_sums(metric_sums(pred_deg, true_deg))
    bins = {**DEFAULT_BINS, **(bins or {})}
    for name, values in (factors or {}).items():
        if name not in bins:
            raise ValueError(f"no bin edges for factor {name!r}; give bins={{{name!r}: (edges...)}}")
        values = values.to(pred_deg.device)
        if values.shape[0] != pred_deg.shape[0]:
            raise ValueError(f"factor {name!r} has {values.shape[0]} rows, predictions have {pred_deg.shape[0]}")
        if name == "elevation":
            values = values.abs()
        index = bin_index(values, bins[name])
        breakdown = {}
        for b, label in enumerate(bin_labels(bins[name])):
            mask = index == b
            sums = metric_sums(pred_deg, true_deg, weight=mask)
            breakdown[label] = metrics_from_sums(sums)
        result[f"by_{name}"] = breakdown
    return result


# ---------------------------------------------------------------------------------------------- counting and detection


def match_angles(pred_deg: Sequence[float], true_deg: Sequence[float]) -> list[tuple[int, int]]:
    """detected and true angles of one clip (any lengths) -> pairs (pred index, true index) that minimize the summed
    absolute angle difference (Hungarian matching, scipy.optimize.linear_sum_assignment); min(P, T) pairs."""
    if len(pred_deg) == 0 or len(true_deg) == 0:
        return []
    cost = np.abs(np.subtract.outer(np.asarray(pred_deg, float), np.asarray(true_deg, float)))
    rows, cols = linear_sum_assignment(cost)
    return list(zip(rows.tolist(), cols.tolist()))


def count_confusion(true_counts: Sequence[int], pred_counts: Sequence[int], max_count: int = 3) -> np.ndarray:
    """true and predicted talker counts [N] -> confusion int64 [max_count + 1, max_count + 1]: row = true count,
    column = predicted count (predictions above max_count land in the last column)."""
    confusion = np.zeros((max_count + 1, max_count + 1), dtype=np.int64)
    for t, p in zip(true_counts, pred_counts):
        confusion[int(t), min(int(p), max_count)] += 1
    return confusion


def detection_metrics(pred_deg: Sequence[Sequence[float]], true_deg: Sequence[Sequence[float]],
                      threshold_deg: float = 10.0, max_count: int = 3) -> dict:
    """detections and truths per clip (lists of angles in degrees, any lengths, 0 allowed) -> counting and
    location-aware detection scores over the clips.

    SELD-style (Mesaros, Adavanne, Politis, Heittola and Virtanen, "Joint measurement of localization and
    detection of sound events", WASPAA 2019): per clip, detections are matched to talkers by the Hungarian
    algorithm; a matched pair within threshold_deg is a true positive; every other detection is a false positive
    and every other talker a false negative. F1 = 2 TP / (2 TP + FP + FN) (NaN when there is nothing to find and
    nothing was found). matched_mae_deg is the mean error over all matched pairs (within the threshold or not);
    count_accuracy the share of clips whose number of detections equals the number of talkers.
    """
    if len(pred_deg) != len(true_deg):
        raise ValueError(f"detection_metrics: {len(pred_deg)} clips of detections, {len(true_deg)} of truth")
    tp = fp = fn = 0
    errors: list[float] = []
    for pred, true in zip(pred_deg, true_deg):
        pairs = match_angles(pred, true)
        error = [abs(float(pred[i]) - float(true[j])) for i, j in pairs]
        hits = sum(e <= threshold_deg for e in error)
        tp, fp, fn = tp + hits, fp + len(pred) - hits, fn + len(true) - hits
        errors.extend(error)
    true_counts, pred_counts = [len(t) for t in true_deg], [len(p) for p in pred_deg]
    denominator = 2 * tp + fp + fn
    return {
        "clips": len(true_deg),
        "count_accuracy": float(np.mean([t == p for t, p in zip(true_counts, pred_counts)])) if true_deg else float("nan"),
        "confusion": count_confusion(true_counts, pred_counts, max_count).tolist(),
        "tp": tp, "fp": fp, "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "f1": 2 * tp / denominator if denominator else float("nan"),
        "threshold_deg": threshold_deg,
        "matched_pairs": len(errors),
        "matched_mae_deg": float(np.mean(errors)) if errors else float("nan"),
    }
