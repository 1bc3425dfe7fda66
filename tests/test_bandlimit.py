"""mix.bandlimit_prob: a share of training mixtures low-passed as a recording made at 8 kHz is."""
import torch

from training.config import MixConfig
from ssl_model.features import lowpass
from training.data.mixtures import MixRecipe, make_mixtures

from test_noise_and_mixtures import C, SR, scene_batch


def band_energy(wave: torch.Tensor, lo_hz: float, hi_hz: float) -> torch.Tensor:
    """wave [B, M, T] -> energy [B] between lo_hz and hi_hz."""
    spec = torch.fft.rfft(wave.double(), dim=-1).abs().pow(2)
    freq = torch.fft.rfftfreq(wave.shape[-1], 1.0 / SR)
    return spec[..., (freq >= lo_hz) & (freq < hi_hz)].sum(dim=(-1, -2))


def test_lowpass_removes_everything_above_each_rows_cutoff_and_keeps_the_rest():
    wave = torch.randn(3, 2, 4000, generator=torch.Generator().manual_seed(0))
    out = lowpass(wave, torch.tensor([3400.0, 4000.0, float(SR)]), SR)
    assert band_energy(out[:1], 3500.0, SR / 2) < 1e-6 * band_energy(wave[:1], 3500.0, SR / 2)
    assert band_energy(out[1:2], 4100.0, SR / 2) < 1e-6 * band_energy(wave[1:2], 4100.0, SR / 2)
    below = band_energy(out[:2], 0.0, 3300.0) / band_energy(wave[:2], 0.0, 3300.0)
    assert torch.allclose(below, torch.ones(2, dtype=below.dtype), atol=1e-5)
    assert torch.allclose(out[2], wave[2], atol=1e-5)  # a cutoff at or above Nyquist leaves the row as it is


def test_the_band_limited_share_holds_nothing_above_4khz_and_clean_rows_are_never_limited():
    speech, rir, angles, spacing = scene_batch(200, S=2)
    mix = MixConfig(bandlimit_prob=0.5, clean_prob=0.2, noise_prob=1.0, snr_db=(20.0, 20.0), normalize="none")
    out = make_mixtures(speech, rir, angles, spacing, MixRecipe(mix, SR, 160, C), torch.Generator().manual_seed(3))
    share_above = band_energy(out.wave, 4000.0, SR / 2) / band_energy(out.wave, 0.0, SR / 2)
    limited = share_above < 1e-8
    assert 0.3 < limited.float().mean().item() < 0.5  # half of the 80% that are not clean
    quiet = MixRecipe(MixConfig(clean_prob=1.0, normalize="none"), SR, 160, C)
    clean = make_mixtures(speech, rir, angles, spacing, quiet, torch.Generator().manual_seed(3))
    kept_clean = (out.wave - clean.wave).abs().amax(dim=(1, 2)) < 1e-5
    assert kept_clean.any() and not (kept_clean & limited).any()


def test_no_band_limited_share_draws_nothing():
    speech, rir, angles, spacing = scene_batch(16, S=2)
    base = dict(noise_prob=0.5, diffuse_prob=0.5)
    a = make_mixtures(speech, rir, angles, spacing, MixRecipe(MixConfig(**base), SR, 160, C),
                      torch.Generator().manual_seed(4))
    off = MixConfig(bandlimit_prob=0.0, bandlimit_hz=(1000.0, 2000.0), **base)
    b = make_mixtures(speech, rir, angles, spacing, MixRecipe(off, SR, 160, C), torch.Generator().manual_seed(4))
    assert torch.equal(a.wave, b.wave)  # configs without the share keep their random streams
