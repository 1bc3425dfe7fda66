"""The training objective never rewards a copy: talkers one delay apart are one target (training.objective)."""
import math

import pytest
import torch

from training.objective import merge_unresolvable

SR, C = 16000, 340.0
NAN = math.nan


def test_talkers_one_delay_apart_become_one_at_their_mean_delay():
    # 10 cm: 5 and 17 degrees are 0.19 samples apart (one talker); 60 and 120 are 4.7 apart (two)
    angles = torch.tensor([[5.0, 17.0, NAN], [60.0, 120.0, NAN], [80.0, 92.0, NAN], [NAN, NAN, NAN]])
    merged, count = merge_unresolvable(angles, torch.full((4,), 0.10), SR, C)
    assert count.tolist() == [1, 2, 2, 0]
    mean_cos = (math.cos(math.radians(5)) + math.cos(math.radians(17))) / 2
    assert merged[0, 0].item() == pytest.approx(math.degrees(math.acos(mean_cos)), abs=1e-3)
    assert merged[1, :2].tolist() == pytest.approx([60.0, 120.0], abs=1e-3)
    assert merged[2, :2].tolist() == pytest.approx([80.0, 92.0], abs=1e-3)
    assert torch.isnan(merged[0, 1:]).all() and torch.isnan(merged[3]).all()


def test_the_same_angles_resolve_on_a_wider_pair():
    angles = torch.tensor([[80.0, 92.0, NAN]])  # 0.98 samples at 10 cm, 0.49 at 5 cm
    assert merge_unresolvable(angles, torch.tensor([0.05]), SR, C)[1].tolist() == [1]
    assert merge_unresolvable(angles, torch.tensor([0.20]), SR, C)[1].tolist() == [2]


def test_three_talkers_keep_the_resolvable_ones_in_order():
    angles = torch.tensor([[30.0, 90.0, 93.0], [10.0, 12.0, 170.0]])
    merged, count = merge_unresolvable(angles, torch.full((2,), 0.10), SR, C)
    assert count.tolist() == [2, 2]
    assert merged[0, 0].item() == pytest.approx(30.0, abs=1e-3) and 90.0 < merged[0, 1].item() < 93.0
    assert 10.0 < merged[1, 0].item() < 12.0 and merged[1, 1].item() == pytest.approx(170.0, abs=1e-3)
    assert torch.isnan(merged[:, 2]).all()
