"""A window's vote for a talker weighted by what its frame head hears there (decoding.track_support): a window that
names one talker at a wrong angle, while its track hears little there, no longer makes a second talker."""
import numpy as np
import pytest

from ssl_model import Localizer
from ssl_model.results import WindowResult
from ssl_model.talkers import Decoding, track_support

SR, SPACING = 16000, 0.1


def test_support_is_the_highest_step_of_the_classes_near_the_talker():
    activity = np.zeros((4, 36))  # 5-degree classes: centres 2.5, 7.5, ...
    activity[1, 12] = 0.7  # 62.5 degrees
    activity[3, 13] = 0.4  # 67.5 degrees
    activity[2, 30] = 0.9  # 152.5 degrees
    got = track_support(activity, np.array([62.0, 66.0, 100.0, 150.0]), reach_deg=5.0)
    assert got.tolist() == pytest.approx([0.7, 0.7, 0.0, 0.9])
    # a reach narrower than a class still reads the nearest class
    assert track_support(activity, np.array([68.0]), reach_deg=0.1).tolist() == pytest.approx([0.4])
    assert track_support(np.zeros((0, 36)), np.array([60.0]), 5.0).tolist() == [0.0]  # no steps: no support
    assert track_support(activity, np.zeros(0), 5.0).shape == (0,)


@pytest.fixture(scope="module")
def wide() -> Localizer:
    return Localizer.from_pretrained("wide")


def window(localizer: Localizer, start_s: float, angle: float, existence: float, track: float) -> WindowResult:
    """A window naming one talker at `angle` with its track heard at `track` there over every step."""
    config = localizer.spec.model
    classes, steps = config.num_classes, 7
    cls = int(angle // (180.0 / classes))
    posteriors = np.full((config.num_slots, classes), 1e-4, np.float32)
    posteriors[:, cls] = 1.0
    activity = np.zeros((steps, classes), np.float32)
    activity[:, cls] = track
    return WindowResult(start_s=start_s, end_s=start_s + 1.5, count=1, angles_deg=np.array([angle]),
                        classes=np.array([cls]), probabilities=np.array([existence], np.float32), posteriors=posteriors,
                        existence=np.array([existence] + [0.05] * (config.num_slots - 1), np.float32),
                        slot_angles_deg=np.full(config.num_slots, angle), frames=(), activity=activity)


def talkers(localizer: Localizer, windows: list[WindowResult], support: bool) -> np.ndarray:
    decoding = Decoding(existence=0.5, min_share=0.2, track_support=support)
    return localizer.with_decoding(decoding).aggregate(windows, 3.0, SR, SPACING).angles_deg


def test_a_confident_window_that_its_track_does_not_hear_is_no_second_talker(wide):
    # one talker at 113 degrees; the first window names 127 (existence 0.98) while its track hears little there
    windows = [window(wide, 0.0, 127.0, 0.98, 0.2), window(wide, 0.75, 113.0, 1.0, 0.7),
               window(wide, 1.5, 113.0, 1.0, 0.7)]
    assert len(talkers(wide, windows, support=False)) == 2
    assert talkers(wide, windows, support=True) == pytest.approx([113.0], abs=1.0)


def test_two_talkers_that_take_turns_stay_two_when_both_tracks_hear_them(wide):
    windows = [window(wide, 0.0, 127.0, 0.98, 0.6), window(wide, 0.75, 60.0, 1.0, 0.7),
               window(wide, 1.5, 60.0, 1.0, 0.7)]
    assert talkers(wide, windows, support=True) == pytest.approx([60.0, 127.0], abs=1.0)


def test_track_support_is_a_checked_switch():
    with pytest.raises(Exception, match="track_support"):
        Decoding(track_support=1)
