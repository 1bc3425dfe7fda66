"""The synthetic speech-like source (on the device, no files): the default of the demo and the tests.

Real speech comes from speech shards or audio folders instead (shards.audio, training.data.streams).
The generator builds clips from blocks of 50-200 ms, each voiced (a sawtooth glottal source with a drifting pitch, shaped by three formants), unvoiced (noise shaped by a fricative high-pass) or a pause,
in the STFT domain so it runs batched on any device. It is broadband and non-stationary, which is what
a localizer trained on it needs; it is not intelligible speech.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(shape, lo, hi, generator, device):
    return lo + (hi - lo) * torch.rand(shape, generator=generator, device=device)


def synthetic_speech(
    n: int, samples: int, sr: int = 16000, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu", f0_range: tuple[float, float] = (80.0, 300.0),
) -> torch.Tensor:
    """-> speech-like clips [n, samples] at RMS 0.1, drawn from `generator` on `device`."""
    device = torch.device(device)
    g = generator
    n_fft, hop = 512, 128
    frames = samples // hop + 1
    bins = n_fft // 2 + 1
    freqs = torch.linspace(0, sr / 2, bins, device=device)  # [F]

    # Block structure: one block length per clip, one state per block (voiced, unvoiced, pause).
    block_len = torch.randint(6, 26, (n, 1), generator=g, device=device)  # frames (48-200 ms)
    blocks = frames // 6 + 2
    frame_block = (torch.arange(frames, device=device)[None] // block_len).clamp_max(blocks - 1)  # [n, frames]
    state_u = torch.rand(n, blocks, generator=g, device=device)
    voiced = (state_u < 0.55).float()
    unvoiced = ((state_u >= 0.55) & (state_u < 0.78)).float()
    loud = 10 ** (_uniform((n, blocks), -12.0, 0.0, g, device) / 20)

    def per_frame(values: torch.Tensor) -> torch.Tensor:  # [n, blocks, *rest] -> [n, frames, *rest], smoothed
        picked = torch.gather(values, 1, frame_block.view(n, frames, *([1] * (values.dim() - 2)))
                              .expand(n, frames, *values.shape[2:]))
        flat = picked.reshape(n, frames, -1).transpose(1, 2)
        smooth = F.avg_pool1d(F.pad(flat, (2, 2), mode="replicate"), 5, stride=1)
        return smooth.transpose(1, 2).reshape(picked.shape)

    # Voiced excitation: sawtooth with a per-clip base pitch, per-block inflection and a slow vibrato.
    f0_base = _uniform((n, 1), f0_range[0], f0_range[1], g, device)
    f0_block = f0_base * torch.exp(0.12 * torch.randn(n, blocks, generator=g, device=device))
    f0_frames = per_frame(f0_block)  # [n, frames]
    f0 = F.interpolate(f0_frames[:, None], size=samples, mode="linear", align_corners=True)[:, 0]
    t = torch.arange(samples, device=device) / sr
    vib_rate = _uniform((n, 1), 3.0, 7.0, g, device)
    f0 = f0 * (1 + 0.02 * torch.sin(2 * math.pi * vib_rate * t))
    phase = torch.cumsum(f0 / sr, dim=1) + torch.rand(n, 1, generator=g, device=device)
    glottal = 2 * torch.frac(phase) - 1 + 0.03 * torch.randn(n, samples, generator=g, device=device)
    noise = torch.randn(n, samples, generator=g, device=device)

    window = torch.hann_window(n_fft, device=device)
    spec_v = torch.stft(glottal, n_fft, hop, window=window, return_complex=True)  # [n, F, frames]
    spec_u = torch.stft(noise, n_fft, hop, window=window, return_complex=True)

    # Formant envelope per block: three Gaussian resonances plus a floor.
    centers = torch.stack([
        _uniform((n, blocks), 250, 900, g, device),
        _uniform((n, blocks), 800, 2500, g, device),
        _uniform((n, blocks), 2200, 3800, g, device),
    ], dim=-1)  # [n, blocks, 3]
    widths = _uniform((n, blocks, 3), 60, 250, g, device)
    centers, widths = per_frame(centers), per_frame(widths)  # [n, frames, 3]
    gains = torch.tensor([1.0, 0.6, 0.35], device=device)
    env_v = (gains * torch.exp(-0.5 * ((freqs[:, None, None, None] - centers) / widths) ** 2)).sum(-1)
    env_v = env_v.permute(1, 0, 2) + 0.02  # [n, F, frames]
    cutoff = per_frame(_uniform((n, blocks), 1500, 5000, g, device))  # [n, frames]
    env_u = torch.sigmoid((freqs[None, :, None] - cutoff[:, None, :]) / 400.0) * 0.15  # [n, F, frames]

    amp_v = per_frame(voiced * loud)[:, None, :]
    amp_u = per_frame(unvoiced * loud)[:, None, :]
    spec = spec_v * env_v * amp_v + spec_u * env_u * amp_u
    clip = torch.istft(spec, n_fft, hop, window=window, length=samples)
    clip = clip + 1e-4 * torch.randn(n, samples, generator=g, device=device)  # room-tone floor in pauses
    return clip * (0.1 / clip.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-8))
