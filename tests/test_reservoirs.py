"""Reservoir refreshes: distinct slots per put, so a slot's RIR and angles always come from one scene."""
import random

import torch

from training.data.reservoirs import SceneReservoir, SpeechReservoir, fill_slots


def scene(i: int) -> dict:
    """A scene whose every RIR sample and angle carries its id i."""
    return {"rir": torch.full((2, 2, 5), float(i)), "angles": torch.full((2, 2), float(i))}


def test_fill_slots_are_distinct_and_fill_empty_ones_first():
    rng = random.Random(0)
    slots, count = fill_slots(2, 6, 3, rng)
    assert slots == [2, 3, 4] and count == 5
    for _ in range(200):
        slots, count = fill_slots(6, 6, 5, rng)
        assert len(set(slots)) == 5 and count == 6 and all(0 <= s < 6 for s in slots)
    slots, count = fill_slots(1, 4, 10, rng)  # more items than slots: the last `capacity` are kept
    assert sorted(slots) == [0, 1, 2, 3] and slots[:3] == [1, 2, 3] and count == 4


def test_forced_collisions_keep_every_slot_consistent():
    # 4 slots, 3 new scenes per refresh: with replacement, about 2 refreshes in 3 would repeat a slot.
    res = SceneReservoir(4, 2, 2, 8, torch.device("cpu"))
    rng = random.Random(1)
    res.put([scene(i) for i in range(4)], rng)
    next_id = 4
    for _ in range(300):
        before = res.angles[:, 0, 0].clone()
        res.put([scene(next_id + k) for k in range(3)], rng)
        changed = (res.angles[:, 0, 0] != before).sum().item()
        assert changed == 3, "every new scene must land in its own slot"
        assert set(range(next_id, next_id + 3)) <= set(res.angles[:, 0, 0].tolist())
        next_id += 3
        ids = res.angles[:, 0, 0]
        assert torch.equal(res.rir[:, :, :, :5], ids[:, None, None, None].expand(-1, 2, 2, 5))
        assert torch.equal(res.angles, ids[:, None, None].expand(-1, 2, 2))


def test_speech_reservoir_refresh_writes_distinct_slots():
    res = SpeechReservoir(5, 3, torch.device("cpu"))
    rng = random.Random(2)
    res.put(torch.arange(5.0)[:, None].expand(5, 3), rng)
    for step in range(200):
        before = res.audio[:, 0].clone()
        new = torch.tensor([100.0 + 4 * step + k for k in range(4)])
        res.put(new[:, None].expand(4, 3), rng)
        assert (res.audio[:, 0] != before).sum().item() == 4
        assert set(new.tolist()) <= set(res.audio[:, 0].tolist())
