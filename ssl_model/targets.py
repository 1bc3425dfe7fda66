"""Class targets and decoding: `num_classes` bins over 0..180 degrees (the seed's 36 of 5 degrees by
default; `model.num_classes` sets it), two slots sorted ascending.

`azimuth` (the seed's target, |atan2(dy, dx)|) and `lateral` (angle between the source direction and the
+x array axis, mic 0 -> mic 1; the identifiable one, docs/protocol.md, fact 2) share the same binning.
The seed's floor(angle / 5) gives class 36 at exactly 180 degrees; here 180 falls in the last class.
Every prediction (training's eval, `evaluate`, `localize`) is read from posteriors by `decode_posteriors`.
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F

NUM_CLASSES = 36
BIN_DEG = 5.0
TARGETS = ("lateral", "azimuth")  # every target, in the order evaluation scores and reports them
Target = Literal["azimuth", "lateral"]


def angle_to_class(angles_deg: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """angles [...] in degrees (0..180) -> class long [...]: floor(angle / bin), clipped to [0, num_classes - 1]."""
    bin_deg = 180.0 / num_classes
    return torch.floor(angles_deg.double() / bin_deg).clamp(0, num_classes - 1).long()


def angles_to_classes(angles_deg: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """angles [B, S] in degrees -> classes long [B, S], sorted ascending per row."""
    return angle_to_class(angles_deg.sort(dim=-1).values, num_classes)


def soft_targets(angles_deg: torch.Tensor, num_classes: int, sigma_deg: float) -> torch.Tensor:
    """angles [B, S] in degrees, sorted -> target distributions [B, S, C]: a Gaussian of width sigma_deg around
    each angle, evaluated at the class centres and normalized (sigma_deg -> 0 gives the one-hot class)."""
    centers = class_centers(torch.arange(num_classes, device=angles_deg.device), num_classes)  # [C]
    distance = angles_deg.float().unsqueeze(-1) - centers  # [B, S, C]
    weights = torch.exp(-0.5 * (distance / sigma_deg) ** 2)
    own = F.one_hot(angle_to_class(angles_deg, num_classes), num_classes).float()
    weights = torch.maximum(weights, own * 1e-6)  # a far-off angle still has its own class
    return weights / weights.sum(dim=-1, keepdim=True)


def class_centers(classes: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """classes long [...] -> bin-centre angles float [...] in degrees."""
    return (classes.float() + 0.5) * (180.0 / num_classes)


def decode(logits: torch.Tensor, window: int = 1, sort: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, S, C] -> (classes long [B, S], angles_deg float [B, S]).

    Class: the argmax. Angle: a local soft-argmax, sum_j p_j * centre_j over the argmax class k and its
    `window` neighbours on each side (softmax restricted to those bins), clamped to bin k so that the angle
    and the class agree. A source on the edge between bins k and k+1 (equal logits) decodes to the edge.
    With `sort`, slots are reordered by angle (classes follow).
    """
    num_classes = logits.shape[-1]
    bin_deg = 180.0 / num_classes
    logits = logits.float()
    classes = logits.argmax(dim=-1)
    offsets = torch.arange(-window, window + 1, device=logits.device)
    neighbours = classes.unsqueeze(-1) + offsets  # [B, S, 2w+1]
    valid = (neighbours >= 0) & (neighbours < num_classes)
    local = logits.gather(-1, neighbours.clamp(0, num_classes - 1)).masked_fill(~valid, float("-inf"))
    weights = local.softmax(dim=-1)
    angles = (weights * class_centers(neighbours, num_classes)).sum(-1)
    low = classes.float() * bin_deg
    # Inside [low, high) of bin k, so floor(angle / bin) is k again (the metrics rebin decoded angles).
    high = torch.nextafter(low + bin_deg, low)
    angles = torch.minimum(torch.maximum(angles, low), high)
    if sort:
        angles, classes = sort_slots(angles, classes)
    return classes, angles


def sort_slots(angles: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """angles [B, S], others [B, S, ...] -> (angles sorted ascending per row, each of `others` in that order)."""
    angles, order = angles.sort(dim=-1)
    moved = [o.gather(1, order.view(*order.shape, *([1] * (o.dim() - 2))).expand_as(o)) for o in others]
    return (angles, *moved)


def decode_posteriors(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """posteriors [B, S, C] (softmax per slot) -> (classes long [B, S], angles_deg [B, S], posteriors [B, S, C]),
    slots sorted by angle. decode() of log-posteriors equals decode() of the logits they came from."""
    classes, angles = decode(probs.float().clamp_min(1e-12).log())
    angles, classes, probs = sort_slots(angles, classes, probs)
    return classes, angles, probs


def source_angles(metadata: Sequence[dict[str, Any]], target: Target = "azimuth") -> torch.Tensor:
    """shard json dicts (N) -> angles float64 [N, sources] in degrees, sorted ascending per row."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    key = f"{target}_deg"
    rows = []
    for index, meta in enumerate(metadata):
        try:
            rows.append([float(src[key]) for src in meta["sources"]])
        except (KeyError, TypeError) as err:
            raise ValueError(f"metadata item {index}: expected sources[...].{key} ({err!r})") from None
    return torch.tensor(rows, dtype=torch.float64).sort(dim=-1).values


def metadata_factors(metadata: Sequence[dict[str, Any]], target: Target = "lateral") -> dict[str, torch.Tensor]:
    """shard json dicts (N) -> factors for metric breakdowns: rt60 [N], separation [N] (degrees, in the
    given target angle), and per sorted slot distance [N, S] and elevation [N, S] (degrees)."""
    key = f"{target}_deg"
    rt60, distance, elevation, angle = [], [], [], []
    for meta in metadata:
        sources = sorted(meta["sources"], key=lambda s: float(s[key]))
        rt60.append(float(meta["rt60"]))
        distance.append([float(s["distance_m"]) for s in sources])
        elevation.append([float(s["elevation_deg"]) for s in sources])
        angle.append([float(s[key]) for s in sources])
    angle_t = torch.tensor(angle, dtype=torch.float64)
    return {
        "rt60": torch.tensor(rt60, dtype=torch.float64),
        "distance": torch.tensor(distance, dtype=torch.float64),
        "elevation": torch.tensor(elevation, dtype=torch.float64),
        "separation": angle_t[:, -1] - angle_t[:, 0],
    }


def count_from_existence(exist: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """existence probabilities [B, S] -> count long [B]: the slots are filled in order, so the count is the number
    of leading slots whose probability passes `threshold`."""
    return (exist > threshold).long().cumprod(dim=-1).sum(dim=-1)


def decode_count(exist_logits: torch.Tensor, threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """existence logits [B, S] -> (count long [B], existence probabilities [B, S]) (count_from_existence)."""
    probs = exist_logits.float().sigmoid()
    return count_from_existence(probs, threshold), probs


def decode_slot_posteriors(probs: torch.Tensor, exist: torch.Tensor, threshold: float = 0.5
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """posteriors [B, S, C] (softmax per slot), existence probabilities [B, S] -> (count long [B], angles_deg
    [B, S]: the held slots ascending, then NaN, posteriors [B, S, C] and existence [B, S] in that order). A model
    without a count head has existence 1 everywhere: count S, every slot sorted by angle (decode_posteriors).
    A slot holds a talker when its existence passes `threshold` (count_from_existence)."""
    count = count_from_existence(exist, threshold)
    _, angles = decode(probs.float().clamp_min(1e-12).log())
    held = torch.arange(angles.shape[1], device=angles.device)[None, :] < count[:, None]
    key = torch.where(held, angles, torch.full_like(angles, float("inf")))
    key, probs, exist = sort_slots(key, probs, exist)  # held slots ascending (the order the model was taught)
    return count, torch.where(torch.isfinite(key), key, torch.full_like(key, float("nan"))), probs, exist
