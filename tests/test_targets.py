"""Targets: bin edges, 180 degrees, ties, sorting, metadata, and soft-argmax decoding."""
import pytest
import torch

from ssl_model.targets import (BIN_DEG, NUM_CLASSES, angle_to_class, angles_to_classes, class_centers, decode,
                               metadata_factors, source_angles)


def test_constants():
    assert NUM_CLASSES == 36 and BIN_DEG == 5.0


@pytest.mark.parametrize("angle, expected", [(0.0, 0), (4.99, 0), (5.0, 1), (9.999, 1), (90.0, 18),
                                             (174.99, 34), (175.0, 35), (179.99, 35), (180.0, 35)])
def test_bin_edges(angle, expected):
    assert angle_to_class(torch.tensor([angle])).item() == expected


def test_out_of_range_is_clipped():
    assert angle_to_class(torch.tensor([-0.5, 180.5])).tolist() == [0, 35]


def test_sorted_ascending_per_row_and_ties():
    angles = torch.tensor([[120.0, 30.0], [30.0, 120.0], [42.0, 42.0], [44.0, 41.0], [180.0, 0.0]])
    classes = angles_to_classes(angles)
    assert classes.dtype == torch.long
    assert classes.tolist() == [[6, 24], [6, 24], [8, 8], [8, 8], [0, 35]]
    assert (classes[:, 0] <= classes[:, 1]).all()


def test_decode_centre_and_edges():
    logits = torch.full((1, 2, 36), -30.0)
    logits[0, 0, 10] = 10.0  # confident in bin 10 -> its centre
    logits[0, 1, 20] = 10.0  # equal mass in bins 20 and 21 -> their shared edge, 105 degrees
    logits[0, 1, 21] = 10.0
    classes, angles = decode(logits)
    assert classes[0, 0].item() == 10 and classes[0, 1].item() in (20, 21)
    assert angles[0, 0].item() == pytest.approx(52.5, abs=1e-4)
    assert angles[0, 1].item() == pytest.approx(105.0, abs=1e-4)


def test_decode_refines_inside_the_bin_and_sorts():
    torch.manual_seed(0)
    logits = torch.randn(64, 2, 36) * 3
    classes, angles = decode(logits)
    assert torch.equal(classes, logits.argmax(-1))
    assert ((angles >= classes * 5.0) & (angles <= classes * 5.0 + 5.0)).all()
    assert not torch.allclose(angles, class_centers(classes))  # refined, not just centres
    sorted_classes, sorted_angles = decode(logits, sort=True)
    assert (sorted_angles[:, 0] <= sorted_angles[:, 1]).all()
    assert torch.equal(sorted_classes.sort(-1).values, classes.sort(-1).values)


def test_decode_at_the_ends():
    logits = torch.full((1, 2, 36), -30.0)
    logits[0, 0, 0] = 5.0
    logits[0, 1, 35] = 5.0
    _, angles = decode(logits)
    assert angles[0].tolist() == pytest.approx([2.5, 177.5], abs=1e-4)


def test_metadata_targets_and_factors():
    meta = [{"rt60": 0.3, "sources": [
        {"azimuth_deg": 100.0, "lateral_deg": 95.0, "elevation_deg": -20.0, "distance_m": 2.0, "tdoa_s": 1e-5},
        {"azimuth_deg": 10.0, "lateral_deg": 12.0, "elevation_deg": 5.0, "distance_m": 1.0, "tdoa_s": -2e-4}]}]
    assert source_angles(meta, "azimuth").tolist() == [[10.0, 100.0]]
    assert source_angles(meta, "lateral").tolist() == [[12.0, 95.0]]
    factors = metadata_factors(meta, "lateral")
    assert factors["distance"].tolist() == [[1.0, 2.0]] and factors["elevation"].tolist() == [[5.0, -20.0]]
    assert factors["separation"].tolist() == [83.0] and factors["rt60"].tolist() == [0.3]
    with pytest.raises(ValueError, match="target"):
        source_angles(meta, "elevation")
    with pytest.raises(ValueError, match="metadata item 0"):
        source_angles([{"sources": [{"lateral_deg": 1.0}]}], "azimuth")


def test_soft_targets_are_gaussians_over_the_classes():
    from ssl_model.targets import soft_targets

    angles = torch.tensor([[42.5, 100.0], [0.0, 180.0]])
    targets = soft_targets(angles, 36, sigma_deg=5.0)
    assert targets.shape == (2, 2, 36)
    torch.testing.assert_close(targets.sum(-1), torch.ones(2, 2))
    assert targets[0, 0].argmax().item() == 8  # 42.5 is the centre of class 8: symmetric neighbours
    torch.testing.assert_close(targets[0, 0, 7], targets[0, 0, 9])
    assert targets[0, 1, 19] == targets[0, 1, 20]  # 100 degrees: the edge between classes 19 and 20
    assert targets[1, 0].argmax().item() == 0 and targets[1, 1].argmax().item() == 35
    sharp = soft_targets(angles, 36, sigma_deg=0.01)
    assert torch.equal(sharp[0, 0].argmax(), torch.tensor(8)) and sharp[0, 0, 8] > 0.999
