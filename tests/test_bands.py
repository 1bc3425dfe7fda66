"""tokens=bands: the band front end (ssl_model/tokens/bands.py) and a warm start that leaves a front end fresh."""
import math

import pytest
import torch

from configs import ConfigError
from ssl_model.config import ModelConfig
from ssl_model.features import STFT, ipd_cos_sin, steered_response, steering
from ssl_model.model import SSLModel
from ssl_model.tokens.bands import band_steered_response

SR, C, N_FFT = 16000, 340.0, 512


def delayed_noise(delay_samples: float, seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    """-> [1, 2, T]: white noise at mic 0 and the same noise `delay_samples` later at mic 1 (a frequency-domain
    fractional delay)."""
    n = int(seconds * SR)
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    spectrum = torch.fft.rfft(x)
    freqs = torch.fft.rfftfreq(n, d=1.0, dtype=torch.float64)
    late = torch.fft.irfft(spectrum * torch.exp(-2j * math.pi * freqs * delay_samples), n=n)
    return torch.stack((x, late)).float()[None]


def ipd_of(wave: torch.Tensor) -> torch.Tensor:
    real, imag = STFT(N_FFT, 160, trainable=False)(wave)
    return ipd_cos_sin(real, imag)


def test_band_sums_equal_the_per_bin_response_with_unit_masks():
    ipd = ipd_of(delayed_noise(1.3))
    steer = steering(N_FFT, SR, 37, 0.1, C)
    per_bin = steered_response(ipd, torch.ones(1, 1, *ipd.shape[2:]), steer)[:, 0]  # [1, T, K]
    bands = band_steered_response(ipd, steer, 32)  # [1, 32, T, K]
    assert torch.allclose(bands.mean(1), per_bin, atol=1e-5)
    batched = band_steered_response(ipd, steer[None], 32)  # one steering per input gives the same
    assert torch.allclose(batched, bands, atol=1e-5)


@pytest.mark.parametrize("spacing, angle", [(0.05, 60.0), (0.10, 120.0), (0.18, 80.0)])
def test_every_band_peaks_at_the_source_direction(spacing, angle):
    # mic 1 hears a source at lateral angle theta spacing cos(theta) / c later when theta > 90 (features.steering)
    delay = -spacing * math.cos(math.radians(angle)) / C * SR
    bands = band_steered_response(ipd_of(delayed_noise(delay)), steering(N_FFT, SR, 181, spacing, C), 32)
    peak = bands.mean(2).argmax(-1)[0]  # per band, frames averaged: the steering angle index (1 degree apart)
    # bands above 1 kHz (the lowest carry little delay) and below the top one (its Nyquist bin has no phase)
    assert (peak[4:-1].float() - angle).abs().max() <= 2.0


def config(**overrides) -> ModelConfig:
    base = dict(features="ipd_logpower", trainable_stft=False, inter_channels=(4,), inter_kernel=(3, 7),
                tokens="bands", bands=16, srp_angles=19, srp_masks=2, frames_per_token=4, dim=32, depth=1, heads=2,
                dim_head=16, conv_kernel=7, max_rel_pos=32, max_time_patches=64, num_slots=3, count_head=True,
                frame_head=True, spacing_input=True, mic_spacing=0.1, mic_spacing_range=(0.04, 0.2))
    return ModelConfig(**{**base, **overrides})


def test_the_band_model_runs_for_one_spacing_or_one_per_input():
    model = SSLModel(config()).eval()
    wave = torch.randn(3, 2, 8000)
    one = model(wave, 0.05, heads=True)
    each = model(wave, torch.tensor([0.05, 0.05, 0.05]), heads=True)
    assert one.logits.shape == (3, 3, 36) and one.exist.shape == (3, 3)
    assert torch.allclose(one.logits, each.logits, atol=1e-5)
    assert not torch.allclose(model(wave, 0.18), one.logits)  # the steering follows the spacing


def test_bands_are_checked():
    with pytest.raises(ConfigError, match="bands"):
        config(bands=24).validate()  # 256 bins do not split into 24 equal bands
    with pytest.raises(ConfigError, match="features"):
        config(features="ipd").validate()


def test_a_warm_start_leaves_the_named_front_end_fresh(tmp_path):
    from safetensors.torch import save_file

    from training.warm_start import warm_start
    source = SSLModel(config(tokens="srp", srp_angles=37))
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    target = SSLModel(config())
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ConfigError, match="patch_embed"):  # another shape: refused unless left fresh
        warm_start(target, tmp_path / "w.safetensors")
    report = warm_start(target, tmp_path / "w.safetensors", fresh=("inter_conv", "srp_mask", "patch_embed"))
    after = target.state_dict()
    assert "patch_embed.1.weight" in report["fresh"] and "inter_conv.0.weight" in report["fresh"]
    assert torch.equal(after["inter_conv.0.weight"], before["inter_conv.0.weight"])  # same shape, still fresh
    assert torch.equal(after["backbone.layers.0.ff1.net.1.weight"] if "backbone.layers.0.ff1.net.1.weight" in after
                       else after["head.weight"], source.state_dict()["backbone.layers.0.ff1.net.1.weight"]
                       if "backbone.layers.0.ff1.net.1.weight" in after else source.state_dict()["head.weight"])
