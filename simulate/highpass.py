"""Second-order Butterworth high-pass (RBJ biquad), batched, without torchaudio's output clamp."""
from __future__ import annotations

import math

import torch
from torchaudio.functional import lfilter


def highpass(waveform: torch.Tensor, sample_rate: int, cutoff_hz: float) -> torch.Tensor:
    """waveform [..., time] -> [..., time]; 12 dB/octave below `cutoff_hz` (Q = 1/sqrt(2)).

    torchaudio's highpass_biquad goes through lfilter's default clamp=True, which would clip RIR
    samples above 1 (a direct path closer than 1 m); this calls lfilter with clamp=False.
    """
    if cutoff_hz <= 0:
        return waveform
    w0 = 2 * math.pi * cutoff_hz / sample_rate
    alpha = math.sin(w0) / (2 * (1 / math.sqrt(2)))
    cos = math.cos(w0)
    b = torch.tensor([(1 + cos) / 2, -(1 + cos), (1 + cos) / 2], dtype=waveform.dtype, device=waveform.device)
    a = torch.tensor([1 + alpha, -2 * cos, 1 - alpha], dtype=waveform.dtype, device=waveform.device)
    return lfilter(waveform, a, b, clamp=False)
