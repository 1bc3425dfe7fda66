"""mix.broadband_prob: a share of training talkers are steady broadband noise (power f^tilt) instead of speech."""
import math

import pytest
import torch

from configs import ConfigError
from ssl_model.features import lowpass
from training.config import MixConfig
from training.data.mixtures import MixRecipe, make_mixtures
from training.data.noise import broadband_sources

from test_bandlimit import band_energy
from test_noise_and_mixtures import C, SR, scene_batch


def band_power(x: torch.Tensor, lo_hz: float, hi_hz: float) -> torch.Tensor:
    """x [N, T] -> mean power per bin between lo_hz and hi_hz [N]."""
    spec = torch.fft.rfft(x.double(), dim=-1).abs().pow(2)
    freq = torch.fft.rfftfreq(x.shape[-1], 1.0 / SR)
    return spec[:, (freq >= lo_hz) & (freq < hi_hz)].mean(-1)


@pytest.mark.parametrize("tilt", [0.0, -1.0, -2.0])
def test_a_broadband_source_has_the_drawn_slope_and_the_level_of_what_it_replaces(tilt):
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(8, 2, 4 * SR, generator=g) * torch.tensor([0.5, 2.0])[None, :, None]
    use = torch.zeros(8, 2, dtype=torch.bool)
    use[:, 1] = True
    out = broadband_sources(speech, use, torch.full((8, 2), tilt), SR, g)
    assert torch.equal(out[:, 0], speech[:, 0])  # not drawn: left as it was
    rms = out[:, 1].pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, speech[:, 1].pow(2).mean(-1).sqrt(), rtol=1e-4)
    # power f^tilt: four octaves (250-500 Hz against 4-8 kHz) apart differ by tilt * 10 log10(16) dB
    ratio_db = 10 * torch.log10(band_power(out[:, 1], 250.0, 500.0) / band_power(out[:, 1], 4000.0, 8000.0))
    assert ratio_db.mean().item() == pytest.approx(-tilt * 10 * math.log10(16), abs=1.0)


def test_broadband_talkers_reach_nyquist_are_counted_as_the_speech_they_replace_and_spare_the_clean_share():
    speech, rir, angles, spacing = scene_batch(120, S=3)
    speech = lowpass(speech, torch.full((120,), 1000.0), SR)  # "speech" with nothing above 1 kHz
    base = dict(talker_probs=(0.0, 1.0, 1.0, 1.0), clean_prob=0.3, normalize="none")
    recipe = MixRecipe(MixConfig(broadband_prob=1.0, broadband_tilt=(0.0, 0.0), **base), SR, 160, C)
    out = make_mixtures(speech, rir, angles, spacing, recipe, torch.Generator().manual_seed(3))
    plain = make_mixtures(speech, rir, angles, spacing, MixRecipe(MixConfig(**base), SR, 160, C),
                          torch.Generator().manual_seed(3))
    assert torch.equal(out.count, plain.count) and torch.equal(out.angles.isnan(), plain.angles.isnan())
    high = band_energy(out.wave, 2000.0, SR / 2) / band_energy(out.wave, 0.0, SR / 2)
    clean = (out.wave - plain.wave).abs().amax(dim=(1, 2)) < 1e-5  # the seed's two-talker scene: never replaced
    assert 0.15 < clean.float().mean().item() < 0.45
    assert (high[clean] < 1e-3).all()  # the clip edges leak a little
    assert (high[~clean] > 0.6).all()  # white: 3/4 of the power lies above 2 kHz


def test_no_broadband_share_draws_nothing():
    speech, rir, angles, spacing = scene_batch(16, S=2)
    base = dict(noise_prob=0.5, diffuse_prob=0.5, talker_probs=(1.0, 1.0, 1.0))
    a = make_mixtures(speech, rir, angles, spacing, MixRecipe(MixConfig(**base), SR, 160, C),
                      torch.Generator().manual_seed(4))
    off = MixConfig(broadband_prob=0.0, broadband_tilt=(-1.0, -1.0), **base)
    b = make_mixtures(speech, rir, angles, spacing, MixRecipe(off, SR, 160, C), torch.Generator().manual_seed(4))
    assert torch.equal(a.wave, b.wave)  # configs without the share keep their random streams


@pytest.mark.parametrize("bad", [dict(broadband_prob=1.5), dict(broadband_tilt=(0.0, -1.0)),
                                 dict(broadband_tilt=(-4.0, 0.0))])
def test_a_broadband_setting_out_of_range_is_refused_by_name(bad):
    with pytest.raises(ConfigError, match="mix.broadband"):
        MixConfig(**bad).validate()
