"""Channel-swap averaging at inference: a pair heard with its channels swapped hears every source at 180 - theta
(lateral angles; the mics are interchangeable), so the network's outputs for the swapped window, flipped back along
the direction classes, are a second estimate of the same scene. The network is not symmetric in its channels although
its training rooms are; the average of the two passes is (what it buys and costs: BENCHMARKS.md).

Slots are matched before they are averaged: the swapped pass lists the same talkers in the opposite order, and the
two passes may disagree on a window's count. Existence is ordinal (slot j: more than j talk), so it averages slot by
slot; the held slots' direction posteriors average in the pairing that overlaps most.
"""
from __future__ import annotations

import itertools

import torch

from ssl_model.targets import count_from_existence


def flip_classes(probs: torch.Tensor) -> torch.Tensor:
    """[..., C] per direction class (bins of 180/C degrees from 0) -> [..., C] for the mirrored angles 180 - theta."""
    return probs.flip(-1)


def overlap(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """posteriors [..., C], [..., C] -> [...] their Bhattacharyya coefficient (1: the same distribution, 0: disjoint)."""
    return (p.clamp_min(0) * q.clamp_min(0)).sqrt().sum(-1)


def best_pairing(posteriors: torch.Tensor, mirrored: torch.Tensor) -> tuple[int, ...]:
    """posteriors [K, C], mirrored [K, C] (K held slots of one window) -> the order of mirrored's slots that pairs
    each slot with the one it overlaps most (the largest summed overlap over the K! orders)."""
    k = posteriors.shape[0]
    similarity = overlap(posteriors[:, None, :], mirrored[None, :, :])  # [K, K]
    orders = list(itertools.permutations(range(k)))
    scores = torch.stack([similarity[torch.arange(k), list(order)].sum() for order in orders])
    return orders[int(scores.argmax())]


def average_with_mirrored(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                          swapped: tuple[torch.Tensor, torch.Tensor, torch.Tensor], existence: float
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The network's (posteriors [B, S, C], existence [B, S], track [B, steps, C]) for windows and for the same
    windows with their channels swapped -> their average, in the first's angles: existence slot by slot; the track
    step by step; the slots the averaged existence holds (above `existence`) paired by best_pairing, the rest slot
    by slot."""
    posteriors, exist, track = outputs
    posteriors_m, exist_m, track_m = flip_classes(swapped[0]), swapped[1], flip_classes(swapped[2])
    exist_avg = (exist + exist_m) / 2
    held = count_from_existence(exist_avg, existence)
    matched = posteriors_m.clone()
    for i in range(posteriors.shape[0]):
        k = int(held[i])
        if k > 1:
            order = best_pairing(posteriors[i, :k], posteriors_m[i, :k])
            matched[i, :k] = posteriors_m[i, list(order)]
    return (posteriors + matched) / 2, exist_avg, (track + track_m) / 2
