"""Front end: input level normalization, a convolutional STFT with trainable Hann-windowed DFT kernels, and the
inter-mic phase difference."""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn


def normalize_wave(wave: torch.Tensor, mode: str = "peak", eps: float = 1e-8) -> torch.Tensor:
    """wave [B, M, T] -> same shape, peak (max |x| = 0.9) or RMS (0.1) over both channels of each mixture.

    Training mixtures and every window `localize` scores go through this, so a model sees one level.
    """
    if mode == "none":
        return wave
    if mode == "peak":
        return wave * (0.9 / wave.abs().amax(dim=(1, 2), keepdim=True).clamp_min(eps))
    if mode == "rms":
        return wave * (0.1 / wave.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(eps))
    raise ValueError(f"normalize must be 'peak', 'rms' or 'none', got {mode!r}")


def lowpass(wave: torch.Tensor, cutoff_hz: torch.Tensor, sr: int) -> torch.Tensor:
    """wave [B, M, T], cutoff_hz [B] -> [B, M, T]: every bin above the row's cutoff removed (an ideal low-pass over
    the clip, as a recording made at 2 * cutoff and resampled up should hold nothing there); cutoff >= sr / 2 leaves
    the row as it is. Training band-limits a share of its clips with it; the localizer, windows of recordings made
    below the model's rate (a resampler's images above the input's Nyquist would read as other directions)."""
    T = wave.shape[-1]
    spec = torch.fft.rfft(wave.float(), n=T)
    keep = torch.fft.rfftfreq(T, d=1.0 / sr, device=wave.device)[None, :] <= cutoff_hz[:, None]  # [B, F]
    return torch.fft.irfft(spec * keep[:, None, :], n=T)


def dft_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n_fft -> (real, imag) kernels [n_fft//2+1, 1, n_fft]: Hann(n) cos(2 pi k n / N), -Hann(n) sin(2 pi k n / N)."""
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    phase = 2 * math.pi * torch.outer(k, n) / n_fft
    real = (window * torch.cos(phase)).float()
    imag = (-window * torch.sin(phase)).float()
    return rearrange(real, "k n -> k 1 n"), rearrange(imag, "k n -> k 1 n")


class STFT(nn.Module):
    """Conv1d STFT (no padding): wave [batch, channels, samples] -> (real, imag) [batch, channels, freqs, frames]."""

    def __init__(self, n_fft: int = 512, hop: int = 160, trainable: bool = True):
        super().__init__()
        freqs = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, freqs, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, freqs, n_fft, stride=hop, bias=False)
        real, imag = dft_kernels(n_fft)
        with torch.no_grad():
            self.conv_real.weight.copy_(real)
            self.conv_imag.weight.copy_(imag)
        self.conv_real.weight.requires_grad_(trainable)
        self.conv_imag.weight.requires_grad_(trainable)
        self.trainable, self.n_fft, self.hop = trainable, n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Always float32, also under autocast: the phase of quiet bins is the signal here, and bf16's 8-bit
        # mantissa over a 512-tap sum would blur it (the STFT is ~4% of the seed model's FLOPs).
        channels = wave.shape[1]
        mono = rearrange(wave, "b c t -> (b c) 1 t")
        with torch.autocast(device_type=wave.device.type, enabled=False):
            mono = mono.float() if mono.dtype in (torch.float16, torch.bfloat16) else mono
            if self.trainable:
                real, imag = self.conv_real(mono), self.conv_imag(mono)
            else:  # the kernels stay the Hann-windowed DFT: the same numbers by FFT, ~50x fewer operations
                spec = torch.stft(mono[:, 0], self.n_fft, self.hop, window=self.window.to(mono.dtype), center=False,
                                  return_complex=True)
                real, imag = spec.real, spec.imag
            real = rearrange(real, "(b c) f n -> b c f n", c=channels)
            imag = rearrange(imag, "(b c) f n -> b c f n", c=channels)
        return real, imag


def ipd_cos_sin(real: torch.Tensor, imag: torch.Tensor, eps: float = 1e-8, drop_dc: bool = True) -> torch.Tensor:
    """(real, imag) [batch, 2, freqs, frames] -> [batch, 2 (cos, sin), freqs - drop_dc, frames] of phi_1 - phi_0.

    cos/sin of the inter-mic phase difference, computed as the normalized cross-spectrum X1 conj(X0) / |X1 X0|
    (the same values as cos/sin(atan2 differences), without atan2's undefined gradient at zero magnitude;
    a silent bin gives (0, 0)). Computed in float32 whatever the autocast dtype.
    """
    real, imag = real.float(), imag.float()
    if drop_dc:
        real, imag = real[:, :, 1:], imag[:, :, 1:]
    re0, re1 = real.unbind(1)
    im0, im1 = imag.unbind(1)
    cross_re = re1 * re0 + im1 * im0  # Re(X1 conj X0)
    cross_im = im1 * re0 - re1 * im0  # Im(X1 conj X0)
    magnitude = torch.sqrt(cross_re.square() + cross_im.square() + eps * eps)
    return torch.stack((cross_re / magnitude, cross_im / magnitude), dim=1)


def log_power(real: torch.Tensor, imag: torch.Tensor, drop_dc: bool = True, floor: float = 1e-8) -> torch.Tensor:
    """(real, imag) [batch, 2, freqs, frames] -> [batch, 1, freqs - drop_dc, frames]: log(|X0|^2 + |X1|^2),
    floored at `floor` x the input's peak power (80 dB down) and standardized over its bins and frames, so it
    says where the energy is, not how loud the input was."""
    real, imag = real.float(), imag.float()
    if drop_dc:
        real, imag = real[:, :, 1:], imag[:, :, 1:]
    power = (real.square() + imag.square()).sum(dim=1, keepdim=True)
    peak = power.amax(dim=(2, 3), keepdim=True).clamp_min(1e-30)
    db = torch.log(power + floor * peak)
    mean = db.mean(dim=(2, 3), keepdim=True)
    std = db.std(dim=(2, 3), keepdim=True).clamp_min(1e-3)
    return (db - mean) / std


def steering(n_fft: int, sr: int, angles: int, mic_spacing: float | torch.Tensor, sound_speed: float) -> torch.Tensor:
    """-> [2 * n_fft/2, angles] for a float spacing, [B, 2 * n_fft/2, angles] for spacings [B]: cos, then -sin, of
    the phase 2 pi f tau_k that a source at lateral angle theta_k (evenly spaced over 0..180 degrees) puts between
    the mics, tau_k = -d cos(theta_k) / c (far field); DC dropped."""
    spacing = torch.as_tensor(mic_spacing, dtype=torch.float64)
    device = spacing.device
    freqs = torch.arange(1, n_fft // 2 + 1, dtype=torch.float64, device=device) * sr / n_fft
    theta = torch.linspace(0, math.pi, angles, dtype=torch.float64, device=device)
    tau = -spacing[..., None] * torch.cos(theta) / sound_speed  # [..., K]
    phase = 2 * math.pi * freqs[:, None] * tau[..., None, :]  # [..., F, K]
    return torch.cat((torch.cos(phase), -torch.sin(phase)), dim=-2).float()


def steered_response(ipd: torch.Tensor, masks: torch.Tensor, steer: torch.Tensor) -> torch.Tensor:
    """ipd (cos, sin) [B, 2, F, T], masks [B, M, F, T], steer [2F, K] or [B, 2F, K] (steering()) -> [B, M, T, K]: per frame,
    the mean over bins of mask * cos(ipd + 2 pi f tau_k), a PHAT-weighted steered response with learned weights.

    X1 conj(X0) has phase -2 pi f tau for a path that reaches mic 1 tau later, so cos(ipd + 2 pi f tau_k) =
    cos ipd cos(2 pi f tau_k) - sin ipd sin(2 pi f tau_k) is 1 where tau_k is that path's delay."""
    weighted = torch.cat((masks * ipd[:, 0:1], masks * ipd[:, 1:2]), dim=2)  # [B, M, 2F, T]
    if steer.dim() == 3:
        steer = steer[:, None]  # one steering per input: [B, 1, 2F, K]
    return torch.matmul(weighted.transpose(-1, -2), steer) / ipd.shape[2]
