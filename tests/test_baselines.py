"""GCC-PHAT: sign convention, two known TDOAs in an anechoic two-source mixture, silence, batching."""
import math

import pytest
import torch

from ssl_model.baselines import duet, gcc_phat, gcc_phat_count, lateral_to_tdoa, tdoa_to_lateral

SR = 16000


def fractional_delay(x, delay_samples):
    """x [T] float64 -> x delayed by a fractional number of samples (band-limited, zero-padded FFT shift)."""
    n = x.shape[-1]
    freqs = torch.fft.rfftfreq(2 * n, dtype=torch.float64)
    shifted = torch.fft.rfft(x, n=2 * n) * torch.exp(-2j * math.pi * freqs * delay_samples)
    return torch.fft.irfft(shifted, n=2 * n)[..., :n]


def speech_like(samples, generator):
    """Noise gated on and off at a syllable-like rate (~10 Hz segments), [samples] float64."""
    noise = torch.randn(samples, generator=generator, dtype=torch.float64)
    gates = (torch.rand(samples // 1600 + 2, generator=generator, dtype=torch.float64) > 0.4).double()
    envelope = torch.nn.functional.interpolate(gates[None, None], size=samples, mode="linear")[0, 0]
    return noise * envelope


def anechoic_mixture(laterals, generator, seconds=3.0):
    """Far-field sources at the given lateral angles -> wave [1, 2, T]: mic 1 hears each at its TDOA after mic 0."""
    samples = int(seconds * SR)
    pad = 2000
    mic0 = torch.zeros(samples + 2 * pad, dtype=torch.float64)
    mic1 = torch.zeros_like(mic0)
    for lateral in laterals:
        signal = speech_like(samples + 2 * pad, generator)
        tdoa = lateral_to_tdoa(torch.tensor(float(lateral), dtype=torch.float64))
        mic0 += signal
        mic1 += fractional_delay(signal, float(tdoa) * SR)
    return torch.stack((mic0, mic1))[None, :, pad:pad + samples].float()


def test_angle_tdoa_round_trip_and_sign():
    lateral = torch.tensor([0.0, 30.0, 90.0, 150.0, 180.0], dtype=torch.float64)
    tdoa = lateral_to_tdoa(lateral)
    assert tdoa[0] < 0 < tdoa[-1]  # lateral 0 lies on +x, next to mic 1, which hears it first
    torch.testing.assert_close(tdoa_to_lateral(tdoa), lateral)


def test_single_delayed_source_sign():
    # Mic 1 lags mic 0 by 3.2 samples: tdoa > 0, the source is on the mic-0 side, lateral > 90 degrees.
    g = torch.Generator().manual_seed(0)
    x = speech_like(20000, g)
    wave = torch.stack((x, fractional_delay(x, 3.2)))[None].float()
    lateral, tdoa = gcc_phat(wave, return_tdoa=True)
    expected = tdoa_to_lateral(torch.tensor(3.2 / SR, dtype=torch.float64)).item()
    assert expected > 90
    assert lateral[0].tolist() == pytest.approx([expected, expected], abs=1.0)
    assert tdoa[0, 0].item() == pytest.approx(3.2 / SR, abs=0.1 / SR)


@pytest.mark.parametrize("laterals", [(50.0, 120.0), (30.0, 100.0), (80.0, 95.0), (15.0, 165.0)])
def test_votes_find_two_sources_within_two_degrees(laterals):
    g = torch.Generator().manual_seed(int(sum(laterals)))
    wave = anechoic_mixture(laterals, g)
    estimate = gcc_phat(wave, sr=SR, mic_spacing=0.1)
    assert estimate.shape == (1, 2)
    assert estimate[0].tolist() == pytest.approx(sorted(laterals), abs=2.0)


def test_whole_signal_form_on_well_separated_sources():
    g = torch.Generator().manual_seed(5)
    wave = anechoic_mixture((40.0, 130.0), g)
    estimate = gcc_phat(wave, method="whole")
    assert estimate[0].tolist() == pytest.approx([40.0, 130.0], abs=2.0)


def test_silent_frames_do_not_vote_and_batches_are_independent():
    g = torch.Generator().manual_seed(7)
    first = anechoic_mixture((60.0, 110.0), g)
    second = anechoic_mixture((25.0, 140.0), g)
    # Long digital silence plus a faint uncorrelated hiss in front of the first scene.
    hiss = 1e-4 * torch.randn(1, 2, 32000, generator=g)
    padded = torch.cat((hiss, first), dim=-1)[..., :48000]
    batch = torch.cat((padded, second), dim=0)
    estimate = gcc_phat(batch)
    assert estimate[0].tolist() == pytest.approx([60.0, 110.0], abs=2.0)
    assert estimate[1].tolist() == pytest.approx([25.0, 140.0], abs=2.0)
    torch.testing.assert_close(estimate[1:], gcc_phat(second))


def test_input_checks():
    with pytest.raises(ValueError, match="batch, 2, samples"):
        gcc_phat(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="method"):
        gcc_phat(torch.zeros(1, 2, 1000), method="music")


@pytest.mark.slow
def test_agrees_with_pyroomacoustics_srp_phat():
    """Independent cross-check: pyroomacoustics' SRP-PHAT over a 0.5-degree half-plane grid, same inputs."""
    np = pytest.importorskip("numpy")
    pra = pytest.importorskip("pyroomacoustics")
    for laterals, seed in (((50.0, 120.0), 3), ((35.0, 95.0), 4)):
        wave = anechoic_mixture(laterals, torch.Generator().manual_seed(seed))
        channels = wave[0].double().numpy()
        spectra = np.array([pra.transform.stft.analysis(ch, 512, 256).T for ch in channels])  # [mics, freqs, frames]
        mics = np.array([[-0.05, 0.05], [0.0, 0.0]])
        srp = pra.doa.algorithms["SRP"](mics, SR, 512, c=340.0, num_src=2,
                                        azimuth=np.deg2rad(np.arange(0.0, 180.5, 0.5)))
        srp.locate_sources(spectra, freq_range=[300.0, 7000.0])
        reference = sorted(np.rad2deg(srp.azimuth_recon).tolist())
        assert gcc_phat(wave)[0].tolist() == pytest.approx(reference, abs=3.0)
        assert reference == pytest.approx(sorted(laterals), abs=3.0)


def delays_in_samples(laterals):
    return sorted(float(lateral_to_tdoa(torch.tensor(a, dtype=torch.float64))) * SR for a in laterals)


@pytest.mark.parametrize("laterals, seed", [((50.0, 120.0), 1), ((30.0, 100.0), 2), ((70.0, 150.0), 6)])
def test_duet_finds_both_delays_and_the_count_of_an_anechoic_two_talker_mixture(laterals, seed):
    wave = anechoic_mixture(laterals, torch.Generator().manual_seed(seed))
    found = duet(wave)
    assert found["count"].tolist() == [2]
    delays = sorted((found["tdoa_s"][0, :2] * SR).tolist())
    assert delays == pytest.approx(delays_in_samples(laterals), abs=0.15)
    torch.testing.assert_close(found["lateral_deg"], tdoa_to_lateral(found["tdoa_s"]))  # the delays' far-field angles
    assert found["alpha"][0, :2].abs().max() <= 0.1  # equal gains at both mics: no attenuation


def test_duet_reads_a_gain_difference_as_attenuation_and_one_talker_as_one():
    g = torch.Generator().manual_seed(4)
    wave = anechoic_mixture((70.0,), g)
    wave[:, 1] *= 10 ** (2 / 20)  # mic 1 2 dB hotter: a = 1.26, alpha = a - 1/a = 0.47
    found = duet(wave)
    assert found["count"].tolist() == [1]
    assert found["alpha"][0, 0].item() == pytest.approx(10 ** 0.1 - 10 ** -0.1, abs=0.05)
    assert found["tdoa_s"][0, 0].item() * SR == pytest.approx(delays_in_samples((70.0,))[0], abs=0.1)


def test_gcc_phat_count_counts_talkers_and_not_a_diffuse_field():
    g = torch.Generator().manual_seed(8)
    for laterals in ((60.0,), (40.0, 130.0), (20.0, 80.0, 140.0)):
        found = gcc_phat_count(anechoic_mixture(laterals, g))
        k = len(laterals)
        assert found["count"].tolist() == [k]
        assert sorted(found["lateral_deg"][0, :k].tolist()) == pytest.approx(list(laterals), abs=2.0)
    # A diffuse field (many white plane waves, cos(lateral) uniform: a spherical field) has no wavefront to vote for.
    samples, count = 32000, 128
    cosines = 1 - 2 * (torch.arange(count, dtype=torch.float64) + 0.5) / count
    spectra = torch.fft.rfft(torch.randn(count, samples, generator=g, dtype=torch.float64))
    freqs = torch.fft.rfftfreq(samples, dtype=torch.float64)
    delays = -0.1 * cosines / 340.0 * SR  # mic 1 after mic 0, in samples
    mic1 = (spectra * torch.exp(-2j * math.pi * freqs * delays[:, None])).sum(0)
    field = torch.stack((torch.fft.irfft(spectra.sum(0), samples), torch.fft.irfft(mic1, samples)))[None].float()
    assert gcc_phat_count(field)["count"].tolist() == [0]
