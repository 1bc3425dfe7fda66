"""Second-order Butterworth high-pass (RBJ biquad): time-domain filter and its frequency response."""
from __future__ import annotations

import math

import torch
from torchaudio.functional import lfilter


def highpass_coefficients(sample_rate: int, cutoff_hz: float) -> tuple[list[float], list[float]]:
    """-> (b, a), each [3], of the biquad high-pass with Q = 1/sqrt(2)."""
    w0 = 2 * math.pi * cutoff_hz / sample_rate
    alpha = math.sin(w0) / math.sqrt(2)  # sin(w0) / (2 Q)
    cos = math.cos(w0)
    return [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2], [1 + alpha, -2 * cos, 1 - alpha]


def highpass(waveform: torch.Tensor, sample_rate: int, cutoff_hz: float) -> torch.Tensor:
    """waveform [..., time] -> [..., time]; 12 dB/octave below `cutoff_hz`.

    torchaudio's highpass_biquad goes through lfilter's default clamp=True, which would clip RIR
    samples above 1 (a direct path closer than 1 m); this calls lfilter with clamp=False.
    """
    if cutoff_hz <= 0:
        return waveform
    b, a = highpass_coefficients(sample_rate, cutoff_hz)
    as_tensor = lambda c: torch.tensor(c, dtype=waveform.dtype, device=waveform.device)  # noqa: E731
    return lfilter(waveform, as_tensor(a), as_tensor(b), clamp=False)


def highpass_response(n_fft: int, sample_rate: int, cutoff_hz: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """-> [n_fft//2+1] complex128: the biquad's response B(e^jw)/A(e^jw) on the rfft bins.

    Multiplying an rfft by it filters circularly; the poles' radius is exp(-w0/sqrt(2)) (0.978 for
    80 Hz at 16 kHz), so 1024 samples of slack past the signal leave wrap-around below -190 dB.
    """
    bins = n_fft // 2 + 1
    if cutoff_hz <= 0:
        return torch.ones(bins, dtype=torch.complex128, device=device)
    b, a = highpass_coefficients(sample_rate, cutoff_hz)
    z = torch.exp(-1j * math.pi * torch.arange(bins, dtype=torch.float64, device=device) / (n_fft // 2))
    num = b[0] + b[1] * z + b[2] * z * z
    den = a[0] + a[1] * z + a[2] * z * z
    return num / den
