"""Classical baseline: GCC-PHAT over the mic pair (Knapp and Carter, IEEE TASSP 1976), batched in torch.

Sign convention (the shard metadata's): tdoa = (|src - mic1| - |src - mic0|) / c, the lag by which mic 1
hears a source after mic 0; mic 0 at -d/2 and mic 1 at +d/2 on x. The cross-correlation
r(tau) = sum_t x1(t) x0(t - tau) peaks at tau = tdoa, and in the far field cos(lateral) = -tdoa c / d.
With elevation 0 the lateral angle is also the azimuth estimate (azimuth = lateral for a source at the
array's height), so the returned angles serve both targets under that assumption.

Two forms:
- `votes` (default): short Hann frames, each non-silent frame votes for the lag of its strongest GCC-PHAT
  peak (evaluated on a lag grid `upsample` times finer than a sample: exact band-limited interpolation);
  the two top peaks of the vote histogram, refined by their vote centroid, give two lags.
- `whole`: one GCC-PHAT over the whole signal and its two top peaks (much weaker in reverberation).
"""
from __future__ import annotations

import math
from typing import Literal

import torch


def tdoa_to_lateral(tdoa_s: torch.Tensor, mic_distance: float = 0.1, sound_speed: float = 340.0) -> torch.Tensor:
    """tdoa [...] in seconds -> far-field lateral angle [...] in degrees: acos(-tdoa c / d), clipped."""
    cosine = (-tdoa_s * sound_speed / mic_distance).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cosine))


def lateral_to_tdoa(lateral_deg: torch.Tensor, mic_distance: float = 0.1, sound_speed: float = 340.0) -> torch.Tensor:
    """lateral angle [...] in degrees -> far-field tdoa [...] in seconds: -d cos(lateral) / c."""
    return -mic_distance * torch.cos(torch.deg2rad(lateral_deg)) / sound_speed


def lag_grid(sr: int, mic_distance: float, sound_speed: float, upsample: int, device=None) -> torch.Tensor:
    """-> lags [L] in samples: multiples of 1/upsample covering the physical range +-d/c*sr plus one sample."""
    reach = math.ceil((mic_distance / sound_speed * sr + 1.0) * upsample)
    return torch.arange(-reach, reach + 1, device=device, dtype=torch.float64) / upsample


def phat_correlation(spec0: torch.Tensor, spec1: torch.Tensor, n_fft: int, lags: torch.Tensor,
                     eps: float = 1e-12) -> torch.Tensor:
    """rfft spectra [..., n_fft//2+1] of mic 0 and 1, lags [L] (samples) -> GCC-PHAT r(lag) [..., L].

    r(tau) = Re sum_k w_k G_k exp(2 pi i k tau / n) / n, G = X1 conj(X0) / |X1 conj(X0)|, w = 1 at DC and
    Nyquist and 2 elsewhere: irfft evaluated at fractional lags.
    """
    cross = spec1 * spec0.conj()
    cross = cross / (cross.abs() + eps)
    k = torch.arange(spec0.shape[-1], device=spec0.device, dtype=torch.float64)
    weight = torch.full_like(k, 2.0)
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0
    phase = 2 * math.pi * torch.outer(k, lags.to(spec0.device)) / n_fft  # [K, L]
    basis = (weight.unsqueeze(1) * torch.exp(1j * phase) / n_fft).to(cross.dtype)
    return (cross @ basis).real


def two_peaks(curve: torch.Tensor, min_separation: int, num_peaks: int = 2) -> torch.Tensor:
    """curve [B, L] -> indices long [B, num_peaks]: greedy maxima at least `min_separation` bins apart;
    where nothing positive is left the strongest peak is repeated."""
    curve = curve.clone()
    positions = torch.arange(curve.shape[-1], device=curve.device)
    picks = []
    for p in range(num_peaks):
        value, index = curve.max(dim=-1)
        if p > 0:
            index = torch.where(value > 0, index, picks[0])
        picks.append(index)
        near = (positions.unsqueeze(0) - index.unsqueeze(1)).abs() <= min_separation
        curve = curve.masked_fill(near, float("-inf"))
    return torch.stack(picks, dim=-1)


def centroid(curve: torch.Tensor, peaks: torch.Tensor, lags: torch.Tensor, half_width: int) -> torch.Tensor:
    """curve [B, L] >= 0, peak indices [B, P], lags [L] -> weighted mean lag [B, P] over +-half_width bins."""
    offsets = torch.arange(-half_width, half_width + 1, device=curve.device)
    index = (peaks.unsqueeze(-1) + offsets).clamp(0, curve.shape[-1] - 1)  # [B, P, W]
    weights = curve.unsqueeze(1).expand(-1, peaks.shape[1], -1).gather(-1, index).clamp_min(0)
    values = lags.to(curve.device, curve.dtype)[index]
    total = weights.sum(-1)
    mean = (weights * values).sum(-1) / total.clamp_min(1e-12)
    return torch.where(total > 0, mean, lags.to(curve.device, curve.dtype)[peaks])


def gcc_phat(wave: torch.Tensor, sr: int = 16000, mic_distance: float = 0.1,
             method: Literal["votes", "whole"] = "votes", num_sources: int = 2, frame: int = 512, hop: int = 256,
             upsample: int = 16, silence_db: float = 40.0, min_separation_samples: float = 0.25,
             sound_speed: float = 340.0, return_tdoa: bool = False):
    """wave [B, 2, T] -> lateral angles [B, num_sources] in degrees, sorted ascending (and tdoa [B, S] in
    seconds, in the same order, with `return_tdoa`). See the module docstring for the two methods."""
    if wave.dim() != 3 or wave.shape[1] != 2:
        raise ValueError(f"expected wave [batch, 2, samples], got shape {list(wave.shape)}")
    if method not in ("votes", "whole"):
        raise ValueError(f"method must be 'votes' or 'whole', got {method!r}")
    wave = wave.double()
    lags = lag_grid(sr, mic_distance, sound_speed, upsample, device=wave.device)
    separation = max(1, round(min_separation_samples * upsample))
    if method == "votes":
        if wave.shape[-1] < frame:
            raise ValueError(f"signal of {wave.shape[-1]} samples is shorter than one frame ({frame})")
        frames = wave.unfold(-1, frame, hop) * torch.hann_window(frame, dtype=wave.dtype, device=wave.device)
        spec = torch.fft.rfft(frames, dim=-1)  # [B, 2, F, K]
        corr = phat_correlation(spec[:, 0], spec[:, 1], frame, lags)  # [B, F, L]
        energy = frames.square().sum(dim=(1, 3))  # [B, F]
        loudest = energy.max(dim=-1, keepdim=True).values
        voiced = (energy > loudest * 10 ** (-silence_db / 10)) & (energy > 0)
        votes = torch.zeros(corr.shape[0], corr.shape[-1], dtype=wave.dtype, device=wave.device)
        votes.scatter_add_(1, corr.argmax(dim=-1), voiced.to(wave.dtype))
        smooth = torch.nn.functional.conv1d(votes.unsqueeze(1), votes.new_tensor([[[0.25, 0.5, 0.25]]]), padding=1)
        curve = smooth.squeeze(1)
        peaks = two_peaks(curve, separation, num_sources)
        tdoa_samples = centroid(votes, peaks, lags, half_width=max(1, upsample // 4))
    else:
        n_fft = 1 << (2 * wave.shape[-1] - 1).bit_length()  # linear, not circular, correlation
        spec = torch.fft.rfft(wave, n=n_fft, dim=-1)
        curve = phat_correlation(spec[:, 0], spec[:, 1], n_fft, lags)  # [B, L]
        local_max = torch.ones_like(curve, dtype=torch.bool)
        local_max[:, 1:] &= curve[:, 1:] >= curve[:, :-1]
        local_max[:, :-1] &= curve[:, :-1] >= curve[:, 1:]
        peaks = two_peaks(curve.masked_fill(~local_max, 0.0).clamp_min(0), separation, num_sources)
        tdoa_samples = lags[peaks]
    tdoa_s = tdoa_samples / sr
    lateral = tdoa_to_lateral(tdoa_s, mic_distance, sound_speed)
    lateral, order = lateral.sort(dim=-1)
    if return_tdoa:
        return lateral.float(), tdoa_s.gather(-1, order).float()
    return lateral.float()
