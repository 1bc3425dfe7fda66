"""Training mixtures for real recordings: diffuse-noise coherence, sensor noise, SNR, latency, talkers that come
and go, and the count labels."""
import math

import pytest
import torch

from training.config import MixConfig
from training.data.mixing import activity_envelope, fractional_delay, frame_activity
from training.data.mixtures import MixRecipe, make_mixtures
from training.data.noise import diffuse_coherence, diffuse_noise, impose_coherence

SR, C = 16000, 340.0


def coherence(wave: torch.Tensor, n_fft: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """wave [B, 2, T] -> (freqs [F], real part of the Welch-averaged coherence [F]) over every frame of the batch."""
    spec = torch.stft(wave.reshape(-1, wave.shape[-1]).double(), n_fft, n_fft // 2,
                      window=torch.hann_window(n_fft, dtype=torch.float64), return_complex=True)
    spec = spec.view(wave.shape[0], 2, *spec.shape[1:])
    x0, x1 = spec[:, 0], spec[:, 1]
    cross = (x0 * x1.conj()).mean(dim=(0, 2))
    auto = (x0.abs().square().mean(dim=(0, 2)) * x1.abs().square().mean(dim=(0, 2))).sqrt()
    return torch.fft.rfftfreq(n_fft, 1 / SR), (cross / auto).real


@pytest.mark.parametrize("spacing", [0.06, 0.1, 0.16])
def test_diffuse_noise_has_the_sinc_coherence_of_its_spacing(spacing):
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(8, 2, 4 * SR, generator=g)
    kinds = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    noise = diffuse_noise(kinds, speech, torch.full((8,), spacing), SR, C, g)
    freqs, measured = coherence(noise)
    want = torch.sinc(2 * freqs * spacing / C).double()
    band = (freqs > 100) & (freqs < 7000)
    assert (measured[band] - want[band]).abs().max() < 0.08
    # Coherent at low frequencies, and the first zero of the sinc is where c / (2 d) puts it.
    first_zero = C / (2 * spacing)
    near = (freqs - first_zero).abs() < 60
    assert measured[freqs < 150].min() > 0.85 and measured[near].abs().max() < 0.12
    assert torch.allclose(noise.pow(2).mean(dim=(1, 2)), torch.ones(8), rtol=1e-4)


def test_coherence_is_imposed_per_mixture_spacing():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(2, 2, 8 * SR, generator=g)
    noise = impose_coherence(base, torch.tensor([0.05, 0.2]), SR, C)
    freqs = torch.fft.rfftfreq(512, 1 / SR)
    for b, d in enumerate((0.05, 0.2)):
        _, measured = coherence(noise[b:b + 1])
        want = diffuse_coherence(freqs, torch.tensor([d]), C)[0].double()
        assert (measured[4:200] - want[4:200]).abs().mean() < 0.05


def test_fractional_delay_shifts_a_sinusoid_by_the_fraction():
    t = torch.arange(4000, dtype=torch.float64)
    f = 0.05  # cycles per sample
    wave = torch.sin(2 * math.pi * f * t).float().view(1, 1, -1).repeat(1, 2, 1)
    out = fractional_delay(wave, torch.tensor([[0.0, 0.3]]))
    want = torch.sin(2 * math.pi * f * (t - 0.3)).float()
    assert torch.allclose(out[0, 0, 500:3500], wave[0, 0, 500:3500], atol=1e-4)
    assert torch.allclose(out[0, 1, 500:3500], want[500:3500], atol=2e-3)


def test_activity_envelope_is_one_inside_zero_outside():
    env = activity_envelope(torch.tensor([[1000, 0]]), torch.tensor([[3000, 0]]), 5000, ramp=100)
    assert env[0, 0, 1000:3000].min() == 1.0
    assert env[0, 0, :899].abs().max() == 0.0 and env[0, 0, 3101:].abs().max() == 0.0
    assert env[0, 1].abs().max() == 0.0  # onset == offset: never talks
    assert ((env[0, 0, 901:1000] > 0) & (env[0, 0, 901:1000] < 1)).all()


def test_frame_activity_follows_the_envelope_and_ignores_pauses():
    speech = torch.ones(1, 1, 1600)
    speech[..., 800:1200] = 0.0  # a pause
    active = frame_activity(speech, speech, 160)
    # frames of 160: [800, 1120) silent; the frame [1120, 1280) is half speech, so active
    assert active[0, 0].tolist() == [True] * 5 + [False] * 2 + [True] * 3


def scene_batch(B: int, S: int = 3, T: int = SR, L: int = 400, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    speech = torch.randn(B, S, T, generator=g)
    rir = torch.zeros(B, 2, S, L)
    rir[..., 10] = 1.0
    rir[:, 1, :, 12] = 0.5
    angles = torch.rand(B, S, generator=g) * 180
    return speech, rir, angles, torch.full((B,), 0.1)


def test_counts_follow_the_drawn_shares_and_only_counted_talkers_have_angles():
    speech, rir, angles, spacing = scene_batch(400)
    mix = MixConfig(talker_probs=(1.0, 1.0, 1.0, 1.0), normalize="none")
    out = make_mixtures(speech, rir, angles, spacing, MixRecipe(mix, SR, 160, C), torch.Generator().manual_seed(3))
    shares = torch.bincount(out.count, minlength=4).float() / 400
    assert (shares - 0.25).abs().max() < 0.08
    for b in range(400):
        k = int(out.count[b])
        assert torch.isfinite(out.angles[b, :k]).all() and torch.isnan(out.angles[b, k:]).all()
        assert torch.equal(out.angles[b, :k], angles[b, :k].sort().values)
        assert not out.talker_activity[b, k:].any()
    silent = out.count == 0
    assert (out.wave[silent].pow(2).mean(dim=(1, 2)) > 0).all()  # nobody talks: still sensor noise


def test_talkers_shorter_than_min_active_are_not_counted():
    speech, rir, angles, spacing = scene_batch(300, S=1)
    mix = MixConfig(talker_probs=(0.0, 1.0), partial_prob=1.0, min_active_s=0.5, normalize="none")
    out = make_mixtures(speech, rir, angles, spacing, MixRecipe(mix, SR, 160, C), torch.Generator().manual_seed(4))
    active_s = out.talker_activity[:, 0].sum(-1) * 160 / SR
    assert torch.equal(out.count == 1, active_s >= 0.5 - 1e-6)
    assert (active_s < 1.0).any() and (out.count == 1).any()


def test_the_seed_mix_keeps_every_source_and_is_clean():
    speech, rir, angles, spacing = scene_batch(6, S=2)
    out = make_mixtures(speech, rir, angles, spacing, MixRecipe(MixConfig(), SR, 160, C),
                        torch.Generator().manual_seed(5))
    assert (out.count == 2).all() and torch.equal(out.angles, angles.sort(dim=-1).values)
    assert out.wave.abs().amax(dim=(1, 2)).sub(0.9).abs().max() < 1e-5  # peak-normalized


@pytest.mark.parametrize("kind", ["diffuse", "sensor"])
def test_noise_is_added_at_the_drawn_snr(kind):
    speech, rir, angles, spacing = scene_batch(64, S=2)
    snr = {"diffuse_prob": 1.0, "diffuse_snr_db": (10.0, 10.0)} if kind == "diffuse" else \
        {"noise_prob": 1.0, "snr_db": (10.0, 10.0)}
    clean = make_mixtures(speech, rir, angles, spacing, MixRecipe(MixConfig(normalize="none"), SR, 160, C),
                          torch.Generator().manual_seed(6))
    noisy = make_mixtures(speech, rir, angles, spacing, MixRecipe(MixConfig(normalize="none", **snr), SR, 160, C),
                          torch.Generator().manual_seed(6))
    signal = clean.wave.pow(2).mean(dim=(1, 2))
    noise = (noisy.wave - clean.wave).pow(2).mean(dim=(1, 2))
    assert torch.allclose(10 * torch.log10(signal / noise), torch.full((64,), 10.0), atol=0.05)


def test_clean_mixtures_are_two_steady_talkers_without_noise_or_mismatch():
    speech, rir, angles, spacing = scene_batch(32)
    rough = dict(talker_probs=(1.0, 1.0, 1.0, 1.0), partial_prob=1.0, normalize="none")
    harsh = MixConfig(clean_prob=1.0, diffuse_prob=1.0, diffuse_snr_db=(0.0, 0.0), noise_prob=1.0,
                      snr_db=(0.0, 0.0), mic_gain_db=6.0, mic_latency=2.0, **rough)
    quiet = MixConfig(clean_prob=1.0, **rough)
    a = make_mixtures(speech, rir, angles, spacing, MixRecipe(harsh, SR, 160, C), torch.Generator().manual_seed(7))
    b = make_mixtures(speech, rir, angles, spacing, MixRecipe(quiet, SR, 160, C), torch.Generator().manual_seed(7))
    assert (a.count == 2).all() and a.talker_activity[:, :2].float().mean() > 0.95
    assert not a.talker_activity[:, 2].any()
    assert torch.allclose(a.wave, b.wave, atol=1e-5)  # 0 dB of noise and 6 dB of mismatch: none of it applied


def test_clean_share_leaves_the_rest_of_the_batch_noisy():
    speech, rir, angles, spacing = scene_batch(400, S=2)
    noisy = dict(noise_prob=1.0, snr_db=(0.0, 0.0), normalize="none")
    out = make_mixtures(speech, rir, angles, spacing, MixRecipe(MixConfig(clean_prob=0.3, **noisy), SR, 160, C),
                        torch.Generator().manual_seed(8))
    ref = make_mixtures(speech, rir, angles, spacing,
                        MixRecipe(MixConfig(clean_prob=1.0, normalize="none"), SR, 160, C),
                        torch.Generator().manual_seed(8))
    clean = (out.wave - ref.wave).abs().amax(dim=(1, 2)) < 1e-5
    assert abs(clean.float().mean().item() - 0.3) < 0.08
