"""Reference DSP for the simulator's tests, kept out of the package: a direct render of impulses through the
Farrow kernel, the time-domain biquad high-pass (torchaudio's lfilter) and the Schroeder T20."""
from __future__ import annotations

import torch
from torchaudio.functional import lfilter

from simulate.fractional_delay import add_impulses, farrow_terms, mix_trains
from simulate.highpass import highpass_coefficients


def render_impulses(
    delay: torch.Tensor, amplitude: torch.Tensor, channel: torch.Tensor, channels: int, length: int,
    kernel: torch.Tensor,
) -> torch.Tensor:
    """delay [P] samples, amplitude [P], channel [P] long, kernel [K+1, bins] -> [channels, length] float32.

    `kernel` comes from delay_kernel(n_fft, K, response) and fixes n_fft = 2 (bins - 1). Needs
    0 <= delay and round(delay) < n_fft; the result is the circular convolution over n_fft samples.
    """
    order, n_fft = kernel.shape[0] - 1, 2 * (kernel.shape[1] - 1)
    whole, values = farrow_terms(delay, amplitude, order)
    trains = torch.zeros(order + 1, channels * n_fft, dtype=torch.float32, device=delay.device)
    add_impulses(trains, channel * n_fft + whole, values)
    return mix_trains(trains.view(order + 1, channels, n_fft), kernel, length)


def highpass(waveform: torch.Tensor, sample_rate: int, cutoff_hz: float) -> torch.Tensor:
    """waveform [..., time] -> [..., time]: the simulator's biquad in the time domain.

    lfilter with clamp=False: its default clamp would clip RIR samples above 1 (a direct path closer than 1 m).
    """
    b, a = highpass_coefficients(sample_rate, cutoff_hz)
    as_tensor = lambda c: torch.tensor(c, dtype=waveform.dtype, device=waveform.device)  # noqa: E731
    return lfilter(waveform, as_tensor(a), as_tensor(b), clamp=False)


def schroeder_t20(rir: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """rir [..., L] -> T20 in seconds [...]: -60 dB / slope of a line fit to the EDC from -5 to -25 dB.

    Schroeder's backward integration (Schroeder, JASA 1965); T20 as ISO 3382-1 reads it. Channels whose EDC
    never reaches -25 dB give NaN. Zero padding past a RIR's end does not matter.
    """
    energy = rir.double() ** 2
    edc = torch.flip(torch.cumsum(torch.flip(energy, [-1]), -1), [-1])
    db = 10 * torch.log10(edc / edc[..., :1].clamp(min=1e-300) + 1e-300)
    t = torch.arange(rir.shape[-1], dtype=torch.float64, device=rir.device) / sample_rate
    # The EDC is monotone, so [-5, -25] dB is one contiguous stretch.
    inside = ((db <= -5) & (db >= -25)).double()
    n = inside.sum(-1)
    mt = (inside * t).sum(-1) / n
    md = (inside * db).sum(-1) / n
    slope = (inside * (t - mt[..., None]) * (db - md[..., None])).sum(-1) / (inside * (t - mt[..., None]) ** 2).sum(-1)
    reached = (db <= -25).any(-1) & (n >= 2)
    return torch.where(reached, -60.0 / slope, torch.full_like(slope, float("nan"))).to(rir.dtype)
