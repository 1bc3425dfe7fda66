"""Device-resident reservoirs of RIR scenes and speech segments, refreshed from the streams every step.

Each `put` writes into empty slots first, then over distinct random slots: two indexed writes of the same
batch (a scene's RIR and its angles) must land in the same slot, and PyTorch leaves `index_put_` with a
repeated index undefined (on CUDA one slot could get one scene's RIR and another scene's angles).
"""
from __future__ import annotations

import math
import random

import torch


def fill_slots(count: int, capacity: int, incoming: int, rng: random.Random) -> tuple[list[int], int]:
    """-> (distinct slots for the last min(incoming, capacity) items, the new count).

    Empty slots (count..capacity-1) are used first, in order; the rest are drawn without replacement from
    the occupied ones. When more items arrive than there are slots, only the last `capacity` are kept.
    """
    keep = min(incoming, capacity)
    empty = list(range(count, min(capacity, count + keep)))
    occupied = rng.sample(range(count), keep - len(empty)) if keep > len(empty) else []
    return empty + occupied, min(capacity, count + keep)


class SceneReservoir:
    """RIR scenes on the device: rir [N, M, S, L_max] (zero-padded), angles [N, 2, S] (azimuth, lateral),
    spacing [N] (mic 0 to mic 1 in metres; NaN where a scene did not say)."""

    def __init__(self, capacity: int, mics: int, sources: int, max_len: int, device: torch.device):
        self.rir = torch.zeros(capacity, mics, sources, max_len, device=device)
        self.angles = torch.zeros(capacity, 2, sources, device=device)
        self.spacing = torch.full((capacity,), float("nan"), device=device)
        self.capacity, self.count, self.device = capacity, 0, device

    def put(self, scenes: list[dict], rng: random.Random) -> None:
        """scenes [{rir [M, S, L], angles [2, S], spacing (optional)}] -> into empty slots first, then over distinct
        random ones."""
        slots, self.count = fill_slots(self.count, self.capacity, len(scenes), rng)
        if not slots:
            return
        scenes = scenes[len(scenes) - len(slots):]
        rir = torch.zeros(len(scenes), *self.rir.shape[1:])
        for i, scene in enumerate(scenes):
            r = scene["rir"]
            rir[i, : r.shape[0], : r.shape[1], : r.shape[2]] = r
        angles = torch.stack([s["angles"] for s in scenes])
        spacing = torch.tensor([float(s.get("spacing", float("nan"))) for s in scenes])
        index = torch.tensor(slots, device=self.device)
        self.rir[index] = rir.to(self.device, non_blocking=True)
        self.angles[index] = angles.to(self.device, non_blocking=True)
        self.spacing[index] = spacing.to(self.device, non_blocking=True)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> rir [B, M, S, L_max], angles [B, 2, S], spacing [B], drawn with replacement."""
        index = torch.randint(self.count, (batch,), generator=generator, device=generator.device).to(self.device)
        return self.rir[index], self.angles[index], self.spacing[index]


class SpeechReservoir:
    """Speech segments on the device: audio [N, T]."""

    def __init__(self, capacity: int, samples: int, device: torch.device):
        self.audio = torch.zeros(capacity, samples, device=device)
        self.capacity, self.count, self.device = capacity, 0, device

    def put(self, audio: torch.Tensor, rng: random.Random) -> None:
        """audio [K, T] (any device) -> into empty slots first, then over distinct random ones."""
        slots, self.count = fill_slots(self.count, self.capacity, audio.shape[0], rng)
        if slots:
            kept = audio[audio.shape[0] - len(slots):]
            self.audio[torch.tensor(slots, device=self.device)] = kept.to(self.device, non_blocking=True)

    def sample(self, batch: int, sources: int, generator: torch.Generator) -> torch.Tensor:
        """-> speech [B, S, T]; the sources of one mixture are distinct segments when the reservoir allows."""
        scores = torch.rand(batch, self.count, generator=generator, device=generator.device)
        index = scores.topk(min(sources, self.count), dim=1).indices
        if index.shape[1] < sources:
            index = index.repeat(1, math.ceil(sources / index.shape[1]))[:, :sources]
        return self.audio[index.to(self.device)]
