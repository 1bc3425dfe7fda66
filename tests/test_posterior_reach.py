"""A window whose slot posterior is flat does not know where on the plateau its talker is: its detection reaches as
far as the plateau when clusters form (ssl_model.talkers.posterior_reach, Decoding.reach_level)."""
import numpy as np
import pytest

from ssl_model.talkers import Decoding, MAX_REACH_DEG, cluster_detections, posterior_reach

BIN = 5.0  # 36 classes over 0-180 degrees


def bump(centre_deg: float, width_deg: float) -> np.ndarray:
    """A posterior over 36 classes: a Gaussian bump of that width, normalized."""
    centres = (np.arange(36) + 0.5) * BIN
    p = np.exp(-0.5 * ((centres - centre_deg) / width_deg) ** 2)
    return p / p.sum()


def test_a_sharp_posterior_reaches_about_a_class_and_a_flat_one_its_plateau():
    sharp = posterior_reach(bump(32.5, 2.0), 32.5, BIN, 0.6)
    flat = posterior_reach(bump(27.5, 12.0), 32.4, BIN, 0.6)
    assert sharp <= BIN
    assert 10.0 < flat <= MAX_REACH_DEG
    assert posterior_reach(bump(27.5, 12.0), 32.4, BIN, 0.0) == 0.0  # level 0: off
    assert posterior_reach(np.full(36, 1 / 36), 90.0, BIN, 0.6) == MAX_REACH_DEG  # uniform: capped


def test_one_talker_read_at_two_places_of_a_plateau_is_one_talker():
    # three windows of one talker near 30 degrees: two read 32.4, the third 17.9 from a flat posterior spanning both
    angles, probs, windows = np.array([32.4, 32.3, 17.9]), np.array([0.99, 0.98, 0.98]), np.array([0, 1, 2])
    flat = posterior_reach(bump(25.0, 12.0), 17.9, BIN, 0.6)
    plain = cluster_detections(angles, probs, windows, 3, merge_deg=10.0, min_share=0.2)
    reached = cluster_detections(angles, probs, windows, 3, merge_deg=10.0, min_share=0.2,
                                 reaches=np.array([2.5, 2.5, flat]))
    assert len(plain.angles_deg) == 2
    assert len(reached.angles_deg) == 1 and 25.0 < reached.angles_deg[0] < 33.0


def test_two_talkers_each_named_sharply_stay_two():
    # two talkers 15 degrees apart, each named in its own windows with a sharp posterior: reach changes nothing
    angles, probs, windows = np.array([40.0, 55.0, 40.5, 54.5]), np.full(4, 0.95), np.array([0, 0, 1, 1])
    reaches = np.array([posterior_reach(bump(a, 2.0), a, BIN, 0.6) for a in angles])
    out = cluster_detections(angles, probs, windows, 2, merge_deg=10.0, min_share=0.2, reaches=reaches)
    assert out.angles_deg == pytest.approx([40.25, 54.75])


def test_decoding_checks_its_reach_level():
    with pytest.raises(Exception, match="reach_level"):
        Decoding(reach_level=1.0)
    assert Decoding(reach_level=0.6).reach_level == 0.6
