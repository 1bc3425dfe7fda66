"""Channel-swap averaging (decoding.mirror, ssl_model/mirror.py): swapping a pair's channels mirrors every source to
180 - theta, so the swapped pass, flipped back, is a second estimate of the same talkers."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from ssl_model.localize import main
from ssl_model.localizer import Localizer
from ssl_model.mirror import average_with_mirrored, best_pairing, flip_classes
from ssl_model.talkers import Decoding
from ssl_model.targets import angle_to_class

CLASSES = 36
SAMPLE = Path(__file__).parents[1] / "examples/sample/two_talkers.wav"


def peaked(angles_deg: list[float], width: float = 0.02) -> torch.Tensor:
    """angles [S] -> posteriors [S, C] with most of each slot's mass on its angle's class."""
    probs = torch.full((len(angles_deg), CLASSES), width / CLASSES)
    probs[torch.arange(len(angles_deg)), angle_to_class(torch.tensor(angles_deg), CLASSES)] += 1 - width
    return probs / probs.sum(-1, keepdim=True)


def test_flipping_the_classes_mirrors_every_angle():
    angles = torch.tensor([2.0, 33.0, 90.5, 121.0, 178.0])
    flipped = flip_classes(torch.nn.functional.one_hot(angle_to_class(angles, CLASSES), CLASSES).float())
    assert flipped.argmax(-1).tolist() == angle_to_class(180.0 - angles, CLASSES).tolist()
    assert torch.equal(flip_classes(flip_classes(flipped)), flipped)


def test_the_pairing_follows_the_talkers_not_the_slots():
    # the swapped pass lists the talkers in the opposite order
    assert best_pairing(peaked([30.0, 100.0, 140.0]), peaked([140.0, 100.0, 30.0])) == (2, 1, 0)
    assert best_pairing(peaked([30.0, 100.0]), peaked([30.0, 100.0])) == (0, 1)


def test_a_swapped_pass_that_agrees_changes_nothing():
    # talkers at 30 and 100 degrees; swapped, they are at 80 and 150, held slots ascending: 80 (the 100) first
    posteriors = peaked([30.0, 100.0, 60.0])[None]
    exist = torch.tensor([[0.97, 0.9, 0.1]])
    track = torch.rand(1, 5, CLASSES, generator=torch.Generator().manual_seed(0))
    swapped = (flip_classes(peaked([100.0, 30.0, 60.0]))[None], exist.clone(), flip_classes(track))
    merged = average_with_mirrored((posteriors, exist, track), swapped, existence=0.5)
    assert torch.allclose(merged[0][:, :2], posteriors[:, :2])
    assert torch.equal(merged[1], exist) and torch.allclose(merged[2], track)


def test_existence_averages_slot_by_slot():
    posteriors = peaked([40.0, 120.0, 60.0])[None]
    exist, exist_swapped = torch.tensor([[0.9, 0.7, 0.1]]), torch.tensor([[0.95, 0.3, 0.2]])
    track = torch.zeros(1, 0, CLASSES)
    merged = average_with_mirrored((posteriors, exist, track), (flip_classes(posteriors), exist_swapped, track), 0.5)
    assert merged[1][0].tolist() == pytest.approx([0.925, 0.5, 0.15])


def test_decoding_checks_the_mirror_switch():
    with pytest.raises(Exception, match="decoding.mirror"):
        Decoding(mirror="yes")


@pytest.fixture(scope="module")
def mirrored_localizer() -> Localizer:
    localizer = Localizer.from_pretrained("wide")
    return localizer.with_decoding(dataclasses.replace(localizer.decoding, mirror=True))


def test_with_the_mirror_a_swapped_recording_gives_the_mirrored_talkers(mirrored_localizer):
    # the averaged pass is symmetric in the two channels, so the recording's talkers mirror exactly
    wave, sr = soundfile.read(SAMPLE, dtype="float32", always_2d=True)
    heard = mirrored_localizer(wave.T, sr, mic_spacing=0.1)
    swapped = mirrored_localizer(wave.T[::-1].copy(), sr, mic_spacing=0.1)
    assert heard.count == 2 and heard.angles_deg == pytest.approx([50.0, 125.0], abs=6.0)
    assert np.sort(180.0 - swapped.angles_deg) == pytest.approx(heard.angles_deg, abs=1e-3)
    for one, other in zip(heard.windows, swapped.windows):
        assert one.existence == pytest.approx(other.existence, abs=1e-6)
        assert np.sort(180.0 - other.angles_deg) == pytest.approx(one.angles_deg, abs=1e-3)


def test_the_cli_mirror_flag_decodes_with_both_passes(mirrored_localizer, capsys):
    wave, sr = soundfile.read(SAMPLE, dtype="float32", always_2d=True)
    expected = mirrored_localizer(wave.T, sr, mic_spacing=0.1)
    plain = mirrored_localizer.with_decoding(dataclasses.replace(mirrored_localizer.decoding, mirror=False))(
        wave.T, sr, mic_spacing=0.1)
    assert main([str(SAMPLE), "--mirror", "--quiet"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["angles_deg"] == pytest.approx(expected.angles_deg, abs=0.01)
    assert not np.allclose(plain.angles_deg, expected.angles_deg, atol=0.01)  # the flag changed what was heard
