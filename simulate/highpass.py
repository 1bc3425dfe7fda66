"""Second-order Butterworth high-pass (RBJ biquad): its coefficients and frequency response on rfft bins."""
from __future__ import annotations

import math

import torch


def highpass_coefficients(sample_rate: int, cutoff_hz: float) -> tuple[list[float], list[float]]:
    """-> (b, a), each [3], of the biquad high-pass with Q = 1/sqrt(2)."""
    w0 = 2 * math.pi * cutoff_hz / sample_rate
    alpha = math.sin(w0) / math.sqrt(2)  # sin(w0) / (2 Q)
    cos = math.cos(w0)
    return [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2], [1 + alpha, -2 * cos, 1 - alpha]


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
