"""Schroeder backward-integrated energy decay and the T20 reverberation time read from it."""
from __future__ import annotations

import torch


def schroeder_t20(rir: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """rir [..., L] -> T20 in seconds [...]: -60 dB / slope of a line fit to the EDC from -5 to -25 dB.

    Channels whose EDC never reaches -25 dB give NaN. Zero padding past a RIR's end does not matter.
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
