"""Resolution lives in delay: two talkers the pair hears at one delay are one talker (ssl_model.talkers)."""
import numpy as np
import pytest

from ssl_model.talkers import Decoding, cluster_detections, delay_samples, distinct, track_peaks

SR, C, D = 16000, 340.0, 0.10


def test_delay_is_spacing_cos_over_c():
    assert delay_samples(np.array([0.0, 90.0, 180.0]), D, SR, C) == pytest.approx([D / C * SR, 0.0, -D / C * SR])


def test_twelve_degrees_are_one_delay_at_endfire_and_two_at_broadside():
    # 5 and 17 degrees differ by 0.19 samples at 10 cm; 80 and 92 degrees by 0.98 samples
    endfire = delay_samples(np.array([5.0, 17.0]), D, SR, C)
    broadside = delay_samples(np.array([80.0, 92.0]), D, SR, C)
    assert distinct(endfire, np.array([0.9, 0.6]), 0.5).tolist() == [0]
    assert distinct(broadside, np.array([0.9, 0.6]), 0.5).tolist() == [0, 1]
    assert distinct(endfire, np.array([0.4, 0.8]), 0.5).tolist() == [1]  # the stronger one stays
    assert distinct(endfire, np.array([0.9, 0.6]), 0.0).tolist() == [0, 1]  # 0 keeps every slot


def test_a_smaller_pair_resolves_less():
    broadside = np.array([80.0, 92.0])
    assert len(distinct(delay_samples(broadside, 0.05, SR, C), np.ones(2), 0.5)) == 1  # 0.49 samples at 5 cm


def test_clusters_one_delay_apart_merge_into_the_stronger():
    angles = np.array([8.4, 22.6, 8.0, 23.0])  # a talker near endfire and its copy, in two windows
    probs = np.array([0.9, 0.6, 0.9, 0.6])
    windows = np.array([0, 0, 1, 1])
    plain = cluster_detections(angles, probs, windows, 2, merge_deg=10.0, min_share=0.2)
    assert len(plain.angles_deg) == 2  # in degrees they are two
    merged = cluster_detections(angles, probs, windows, 2, merge_deg=10.0, min_share=0.2,
                                delays=delay_samples(angles, D, SR, C), resolve_samples=0.5)
    assert merged.angles_deg.tolist() == pytest.approx([8.2])
    assert merged.shares[0] == pytest.approx(1.0)  # the copy's weight joined the talker (clipped at 1)


def test_two_resolvable_talkers_stay_two():
    angles = np.array([60.0, 120.0, 61.0, 119.0])
    out = cluster_detections(angles, np.full(4, 0.9), np.array([0, 0, 1, 1]), 2,
                             delays=delay_samples(angles, D, SR, C), resolve_samples=0.5)
    assert out.angles_deg == pytest.approx([60.5, 119.5])


def test_track_peaks_drop_a_copy_one_delay_away():
    activity = np.zeros((1, 36))
    activity[0, [1, 3]] = [0.9, 0.7]  # peaks at 7.5 and 17.5 degrees: 0.14 samples apart at 10 cm
    delay_of = lambda a: delay_samples(a, D, SR, C)  # noqa: E731
    assert len(track_peaks(activity, 5.0)[0]) == 2
    assert track_peaks(activity, 5.0, delay_of=delay_of, resolve_samples=0.5)[0] == pytest.approx([7.5], abs=1.0)


def test_decoding_checks_its_resolution():
    with pytest.raises(Exception, match="resolve_samples"):
        Decoding(resolve_samples=-1.0)


def test_the_default_localizer_names_no_two_talkers_of_one_delay():
    from pathlib import Path

    import soundfile

    from ssl_model.localizer import Localizer
    wave, sr = soundfile.read(Path(__file__).parents[1] / "examples/sample/two_talkers.wav", dtype="float32",
                              always_2d=True)
    localizer = Localizer.from_pretrained()
    result = localizer(wave.T, sr, mic_spacing=D)
    resolve = localizer.decoding.resolve_samples
    for w in (*result.windows, result):
        delays = delay_samples(w.angles_deg, D, localizer.spec.sr, localizer.spec.model.sound_speed)
        assert np.all(np.abs(delays[:, None] - delays[None, :])[np.triu_indices(len(delays), 1)] >= resolve)
    assert result.count == 2 and result.angles_deg == pytest.approx([50.0, 125.0], abs=6.0)


@pytest.mark.parametrize("angle", [5.0, 10.0, 20.0, 60.0, 130.0, 165.0, 175.0])
def test_white_noise_from_one_direction_is_one_talker(angle):
    # before the delay rule the default named a copy 2-3 degrees away at 20 and 60 degrees, in every window; before
    # broadband talkers in training (mix.broadband_prob) a phantom near 47 degrees for a source near the mic axis
    from ssl_model.localizer import Localizer
    samples = 4 * SR
    noise = np.random.default_rng(0).standard_normal(samples)
    late = -D * np.cos(np.radians(angle)) / C * SR  # mic 1 hears the source this many samples after mic 0
    spectrum = np.fft.rfft(noise) * np.exp(-2j * np.pi * np.fft.rfftfreq(samples) * late)
    wave = 0.1 * np.stack([noise, np.fft.irfft(spectrum, samples)]).astype(np.float32)
    result = Localizer.from_pretrained()(wave, SR, mic_spacing=D)
    assert result.count == 1 and all(w.count == 1 for w in result.windows)
    # near the axis many degrees are one delay: the error is judged in delay, a quarter of a sample
    found, true = delay_samples(np.array([result.angles_deg[0], angle]), D, SR, C)
    assert abs(found - true) < 0.25
