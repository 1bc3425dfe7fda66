"""Device mixing equals scipy's fftconvolve; mixing, normalization and the synthetic speech generator."""
import numpy as np
import pytest
import scipy.signal
import torch

from shards.dsp import fft_size
from ssl_model.features import normalize_wave
from training.data.mixing import convolve_sources, mix
from training.data.speech import synthetic_speech


def draw_mix_params(
    batch: int, sources: int, gain_db: tuple[float, float], noise_prob: float, snr_db: tuple[float, float],
    generator: torch.Generator, device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> gain_db [B, S], snr_db [B] (NaN where no noise is added), drawn from `generator` on `device`."""
    u = torch.rand(batch, sources, generator=generator, device=device)
    gains = gain_db[0] + (gain_db[1] - gain_db[0]) * u
    snr = snr_db[0] + (snr_db[1] - snr_db[0]) * torch.rand(batch, generator=generator, device=device)
    noisy = torch.rand(batch, generator=generator, device=device) < noise_prob
    return gains, torch.where(noisy, snr, torch.full_like(snr, float("nan")))


def test_fft_size_is_smooth_and_large_enough():
    for n in (1, 2, 7, 97, 1000, 16000 + 8000 - 1, 48000 + 11200 - 1):
        size = fft_size(n)
        assert size >= n
        rest = size
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        assert rest == 1


def test_convolution_equals_scipy_fftconvolve():
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(3, 2, 1000, generator=g)
    rir = torch.randn(3, 2, 2, 317, generator=g) * torch.exp(-torch.arange(317) / 60.0)
    images = convolve_sources(speech, rir)
    assert images.shape == (3, 2, 2, 1000 + 317 - 1)
    for b in range(3):
        for m in range(2):
            for s in range(2):
                ref = scipy.signal.fftconvolve(speech[b, s].double().numpy(), rir[b, m, s].double().numpy())
                np.testing.assert_allclose(images[b, m, s].numpy(), ref, rtol=1e-4, atol=2e-4)


def test_mix_sums_gained_sources_and_crops_to_speech_length():
    g = torch.Generator().manual_seed(1)
    speech = torch.randn(2, 2, 500, generator=g)
    rir = torch.randn(2, 2, 2, 64, generator=g)
    gains = torch.tensor([[0.0, 6.0], [-6.0, 0.0]])
    wave = mix(speech, rir, gains, normalize="none")
    ref = np.zeros((2, 2, 500))
    for b in range(2):
        for m in range(2):
            for s in range(2):
                ref[b, m] += 10 ** (gains[b, s].item() / 20) * scipy.signal.fftconvolve(
                    speech[b, s].double().numpy(), rir[b, m, s].double().numpy())[:500]
    np.testing.assert_allclose(wave.numpy(), ref, rtol=1e-4, atol=5e-4)


def test_noise_at_the_drawn_snr_and_nan_means_no_noise():
    g = torch.Generator().manual_seed(2)
    speech = torch.randn(2, 2, 4000, generator=g)
    rir = torch.zeros(2, 2, 2, 8)
    rir[..., 0] = 1.0
    noise = torch.randn(2, 2, 4000, generator=g)
    clean = mix(speech, rir, normalize="none")
    noisy = mix(speech, rir, snr_db=torch.tensor([10.0, float("nan")]), noise=noise, normalize="none")
    snr = 10 * torch.log10(clean[0].pow(2).mean() / (noisy[0] - clean[0]).pow(2).mean())
    assert abs(snr.item() - 10.0) < 1e-3
    assert torch.equal(noisy[1], clean[1])


def test_normalize_and_mix_params():
    wave = torch.randn(4, 2, 100) * torch.tensor([1.0, 10.0, 0.1, 3.0])[:, None, None]
    assert torch.allclose(normalize_wave(wave, "peak").abs().amax(dim=(1, 2)), torch.full((4,), 0.9))
    assert torch.allclose(normalize_wave(wave, "rms").pow(2).mean(dim=(1, 2)).sqrt(), torch.full((4,), 0.1))
    with pytest.raises(ValueError):
        normalize_wave(wave, "max")
    gains, snr = draw_mix_params(1000, 2, (-3.0, 3.0), 0.5, (5.0, 20.0), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert gains.shape == (1000, 2) and gains.min() >= -3 and gains.max() <= 3
    noisy = torch.isfinite(snr)
    assert 0.4 < noisy.float().mean() < 0.6 and snr[noisy].min() >= 5 and snr[noisy].max() <= 20


def test_convolution_in_fp32_under_bf16_autocast():
    speech, rir = torch.randn(2, 2, 256), torch.randn(2, 2, 2, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = convolve_sources(speech, rir)
    assert out.dtype == torch.float32


def test_synthetic_speech_is_broadband_voiced_unvoiced_with_pauses():
    sr = 16000
    x = synthetic_speech(16, sr * 2, sr, torch.Generator().manual_seed(0), "cpu", (80.0, 300.0))
    assert x.shape == (16, 2 * sr) and torch.isfinite(x).all()
    assert torch.allclose(x.pow(2).mean(dim=1).sqrt(), torch.full((16,), 0.1), rtol=1e-3)
    spec = torch.stft(x, 512, 128, window=torch.hann_window(512), return_complex=True).abs().pow(2)  # [n, F, frames]
    band = spec.mean(dim=(0, 2))
    freqs = torch.linspace(0, sr / 2, 257)
    for lo, hi in ((100, 500), (500, 2000), (2000, 4000), (4000, 7500)):  # energy in every band
        share = band[(freqs >= lo) & (freqs < hi)].sum() / band.sum()
        assert share > 0.01, (lo, hi, share)
    frame_energy = spec.sum(dim=1)  # [n, frames]
    quiet = frame_energy < frame_energy.amax(dim=1, keepdim=True) * 1e-3
    assert quiet.float().mean() > 0.05  # pauses exist
    assert (~quiet).float().mean() > 0.4  # mostly active
    # Different clips differ (varied pitch and formants), same seed repeats.
    y = synthetic_speech(16, sr * 2, sr, torch.Generator().manual_seed(0), "cpu", (80.0, 300.0))
    assert torch.equal(x, y) and not torch.allclose(x[0], x[1])


def test_mic_gain_mismatch_scales_each_mic():
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(2, 2, 800, generator=g)
    rir = torch.zeros(2, 2, 2, 10)
    rir[..., 0] = 1.0  # identity RIRs: each mic hears the sum of the sources
    gains = torch.tensor([[6.0, 0.0], [0.0, -6.0]])
    wave = mix(speech, rir, normalize="none", mic_gain_db=gains)
    plain = speech.sum(1, keepdim=True).expand(2, 2, 800)
    torch.testing.assert_close(wave, plain * (10 ** (gains / 20))[:, :, None])
