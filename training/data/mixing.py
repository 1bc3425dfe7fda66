"""Device-side mixing: speech * RIR by batched FFT convolution, gains, noise, sum, normalize.

Pure functions in the style of torchaudio.functional. Everything runs in fp32 on whatever device the
inputs live on (add_at_snr keeps its inputs' dtype); call these outside autocast (rfft does not take bf16).
"""
from __future__ import annotations

import torch

from shards.dsp import fft_size
from ssl_model.features import normalize_wave


def _convolve(speech: torch.Tensor, rir: torch.Tensor, out_len: int | None, gain_db: torch.Tensor | None,
              sum_sources: bool) -> torch.Tensor:
    """The one FFT convolution: speech [B, S, T], rir [B, M, S, L], gain_db [B, S] or None -> [B, M, S, out_len], or
    [B, M, out_len] summed over sources in the frequency domain (one inverse FFT per mic instead of per image)."""
    if speech.dim() != 3 or rir.dim() != 4:
        raise ValueError(f"expected speech [B, S, T] and rir [B, M, S, L], got {tuple(speech.shape)} and {tuple(rir.shape)}")
    T, L = speech.shape[-1], rir.shape[-1]
    out_len = T + L - 1 if out_len is None else out_len
    n = fft_size(T + L - 1)
    with torch.autocast(device_type=speech.device.type, enabled=False):
        spec_speech = torch.fft.rfft(speech.float(), n=n)  # [B, S, F]
        if gain_db is not None:
            spec_speech = spec_speech * (10.0 ** (gain_db.float() / 20.0))[..., None]
        spec = torch.fft.rfft(rir.float(), n=n) * spec_speech[:, None]  # [B, M, S, F]
        images = torch.fft.irfft(spec.sum(dim=2) if sum_sources else spec, n=n)
    return images[..., :out_len]


def convolve_sources(speech: torch.Tensor, rir: torch.Tensor, out_len: int | None = None) -> torch.Tensor:
    """speech [B, S, T], rir [B, M, S, L] -> images [B, M, S, out_len] (full linear convolution, cropped)."""
    return _convolve(speech, rir, out_len, None, sum_sources=False)


def convolve_mix(speech: torch.Tensor, rir: torch.Tensor, gain_db: torch.Tensor | None = None,
                 out_len: int | None = None) -> torch.Tensor:
    """speech [B, S, T], rir [B, M, S, L], gain_db [B, S] -> wave [B, M, out_len]: the sources' images, each gained
    by 10^(gain_db / 20), summed (convolve_sources(...).sum(2) at a third of the inverse FFTs for three sources)."""
    return _convolve(speech, rir, out_len, gain_db, sum_sources=True)


def add_at_snr(wave: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor,
               reference: torch.Tensor | None = None) -> torch.Tensor:
    """wave, noise [B, M, T], snr_db [B] (NaN: no noise in that row), reference power [B] (default: wave's own) ->
    wave [B, M, T] + noise scaled so that reference / noise power = 10^(snr_db / 10), powers as means over mics
    and samples. The one SNR of the project: training's mixtures, mix() and the benchmark's noise sets."""
    if reference is None:
        reference = wave.pow(2).mean(dim=(1, 2))
    noise_power = noise.pow(2).mean(dim=(1, 2)).clamp_min(1e-12)
    scale = torch.sqrt(reference / noise_power * 10.0 ** (-torch.nan_to_num(snr_db) / 10.0))
    scale = scale * torch.isfinite(snr_db)
    return wave + scale[:, None, None] * noise


def mix(
    speech: torch.Tensor,
    rir: torch.Tensor,
    gain_db: torch.Tensor | None = None,
    snr_db: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    normalize: str = "peak",
    mic_gain_db: torch.Tensor | None = None,
) -> torch.Tensor:
    """speech [B, S, T], rir [B, M, S, L], gain_db [B, S], snr_db [B] (NaN: no noise), noise [B, M, T],
    mic_gain_db [B, M] -> wave [B, M, T]. The noise comes after the mic gain at an SNR relative to the clean
    image power before it, as training's sensor noise (training.data.mixtures)."""
    wave = convolve_mix(speech, rir, gain_db, out_len=speech.shape[-1])  # [B, M, T]
    reference = wave.pow(2).mean(dim=(1, 2))
    if mic_gain_db is not None:
        wave = wave * (10.0 ** (mic_gain_db.float() / 20.0))[:, :, None]
    if snr_db is not None and noise is not None:
        wave = add_at_snr(wave, noise, snr_db.to(wave.dtype), reference)
    return normalize_wave(wave, normalize)


def activity_envelope(onset: torch.Tensor, offset: torch.Tensor, T: int, ramp: int = 160) -> torch.Tensor:
    """onset, offset [B, S] in samples -> envelope [B, S, T] in [0, 1]: 1 on [onset, offset), raised-cosine ramps of
    `ramp` samples outside it (no clicks), 0 elsewhere; onset >= offset gives a silent talker."""
    t = torch.arange(T, device=onset.device, dtype=torch.float32)
    rise = ((t - onset[..., None].float() + ramp) / ramp).clamp(0, 1)
    fall = ((offset[..., None].float() + ramp - t) / ramp).clamp(0, 1)
    edge = torch.minimum(rise, fall)
    return torch.where(offset[..., None] > onset[..., None], 0.5 - 0.5 * torch.cos(torch.pi * edge),
                       torch.zeros_like(edge))


def fractional_delay(wave: torch.Tensor, delay: torch.Tensor, pad: int = 64) -> torch.Tensor:
    """wave [B, M, T], delay [B, M] in samples (fractional, |delay| < pad) -> [B, M, T], each channel delayed by
    a band-limited (ideal, via an FFT phase ramp e^{-j w delay}) shift; zero padding keeps the wrap-around out."""
    T = wave.shape[-1]
    n = fft_size(T + 2 * pad)
    spec = torch.fft.rfft(torch.nn.functional.pad(wave.float(), (pad, pad)), n=n)
    omega = 2 * torch.pi * torch.fft.rfftfreq(n, device=wave.device)  # radians per sample
    phase = -omega * delay[..., None].float()
    ramp = torch.polar(torch.ones_like(phase), phase)  # e^{-j w delay}, cheaper than exp of a complex tensor
    shifted = torch.fft.irfft(spec * ramp, n=n)
    return shifted[..., pad:pad + T]


def frame_activity(speech: torch.Tensor, reference: torch.Tensor, hop: int, rel_db: float = -30.0) -> torch.Tensor:
    """speech [B, S, T] (dry, enveloped), reference [B, S, T] (the same talkers without envelope) -> active bool
    [B, S, T // hop]: frame power above rel_db of the talker's own loudest frame (pauses and masked-off stretches
    are inactive)."""
    def frame_power(x: torch.Tensor) -> torch.Tensor:
        frames = x[..., : (x.shape[-1] // hop) * hop].unflatten(-1, (-1, hop))
        return frames.float().pow(2).mean(-1)
    loudest = frame_power(reference).amax(dim=-1, keepdim=True)
    return frame_power(speech) > loudest * 10.0 ** (rel_db / 10.0) + 1e-12
