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

from shards.array import SOUND_SPEED


def tdoa_to_lateral(tdoa_s: torch.Tensor, mic_spacing: float = 0.1, sound_speed: float = SOUND_SPEED) -> torch.Tensor:
    """tdoa [...] in seconds -> far-field lateral angle [...] in degrees: acos(-tdoa c / d), clipped."""
    cosine = (-tdoa_s * sound_speed / mic_spacing).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cosine))


def lateral_to_tdoa(lateral_deg: torch.Tensor, mic_spacing: float = 0.1, sound_speed: float = SOUND_SPEED) -> torch.Tensor:
    """lateral angle [...] in degrees -> far-field tdoa [...] in seconds: -d cos(lateral) / c."""
    return -mic_spacing * torch.cos(torch.deg2rad(lateral_deg)) / sound_speed


def lag_grid(sr: int, mic_spacing: float, sound_speed: float, upsample: int, device=None) -> torch.Tensor:
    """-> lags [L] in samples: multiples of 1/upsample covering the physical range +-d/c*sr plus one sample."""
    reach = math.ceil((mic_spacing / sound_speed * sr + 1.0) * upsample)
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


def greedy_peaks(curve: torch.Tensor, min_separation: int, num_peaks: int = 2) -> torch.Tensor:
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


def frame_correlation(wave: torch.Tensor, frame: int, hop: int, lags: torch.Tensor,
                      silence_db: float) -> tuple[torch.Tensor, torch.Tensor]:
    """wave [B, 2, T] float64 -> (GCC-PHAT of each Hann frame [B, F, L] at `lags`, voiced frames bool [B, F]: energy
    within silence_db of the loudest frame)."""
    if wave.shape[-1] < frame:
        raise ValueError(f"signal of {wave.shape[-1]} samples is shorter than one frame ({frame})")
    frames = wave.unfold(-1, frame, hop) * torch.hann_window(frame, dtype=wave.dtype, device=wave.device)
    spec = torch.fft.rfft(frames, dim=-1)  # [B, 2, F, K]
    corr = phat_correlation(spec[:, 0], spec[:, 1], frame, lags)  # [B, F, L]
    energy = frames.square().sum(dim=(1, 3))  # [B, F]
    loudest = energy.max(dim=-1, keepdim=True).values
    return corr, (energy > loudest * 10 ** (-silence_db / 10)) & (energy > 0)


def gcc_phat(wave: torch.Tensor, sr: int = 16000, mic_spacing: float = 0.1,
             method: Literal["votes", "whole"] = "votes", num_sources: int = 2, frame: int = 512, hop: int = 256,
             upsample: int = 16, silence_db: float = 40.0, min_separation_samples: float = 0.25,
             sound_speed: float = SOUND_SPEED, return_tdoa: bool = False):
    """wave [B, 2, T] -> lateral angles [B, num_sources] in degrees, sorted ascending (and tdoa [B, S] in
    seconds, in the same order, with `return_tdoa`). See the module docstring for the two methods."""
    if wave.dim() != 3 or wave.shape[1] != 2:
        raise ValueError(f"expected wave [batch, 2, samples], got shape {list(wave.shape)}")
    if method not in ("votes", "whole"):
        raise ValueError(f"method must be 'votes' or 'whole', got {method!r}")
    wave = wave.double()
    lags = lag_grid(sr, mic_spacing, sound_speed, upsample, device=wave.device)
    separation = max(1, round(min_separation_samples * upsample))
    if method == "votes":
        corr, voiced = frame_correlation(wave, frame, hop, lags, silence_db)
        votes = torch.zeros(corr.shape[0], corr.shape[-1], dtype=wave.dtype, device=wave.device)
        votes.scatter_add_(1, corr.argmax(dim=-1), voiced.to(wave.dtype))
        smooth = torch.nn.functional.conv1d(votes.unsqueeze(1), votes.new_tensor([[[0.25, 0.5, 0.25]]]), padding=1)
        curve = smooth.squeeze(1)
        peaks = greedy_peaks(curve, separation, num_sources)
        tdoa_samples = centroid(votes, peaks, lags, half_width=max(1, upsample // 4))
    else:
        n_fft = 1 << (2 * wave.shape[-1] - 1).bit_length()  # linear, not circular, correlation
        spec = torch.fft.rfft(wave, n=n_fft, dim=-1)
        curve = phat_correlation(spec[:, 0], spec[:, 1], n_fft, lags)  # [B, L]
        local_max = torch.ones_like(curve, dtype=torch.bool)
        local_max[:, 1:] &= curve[:, 1:] >= curve[:, :-1]
        local_max[:, :-1] &= curve[:, :-1] >= curve[:, 1:]
        peaks = greedy_peaks(curve.masked_fill(~local_max, 0.0).clamp_min(0), separation, num_sources)
        tdoa_samples = lags[peaks]
    tdoa_s = tdoa_samples / sr
    lateral = tdoa_to_lateral(tdoa_s, mic_spacing, sound_speed)
    lateral, order = lateral.sort(dim=-1)
    if return_tdoa:
        return lateral.float(), tdoa_s.gather(-1, order).float()
    return lateral.float()


# ---------------------------------------------------------------------------------------------- counting baselines


def window_mass(curve: torch.Tensor, half_width: int) -> torch.Tensor:
    """curve [B, L] -> sum of each +-half_width window [B, L] (zero beyond the ends)."""
    kernel = curve.new_ones(1, 1, 2 * half_width + 1)
    return torch.nn.functional.conv1d(curve.unsqueeze(1), kernel, padding=half_width).squeeze(1)


def ranked_detections(mass: torch.Tensor, votes: torch.Tensor, lags: torch.Tensor, total: torch.Tensor,
                      half_width: int, max_sources: int, min_share: float, relative: float) -> dict[str, torch.Tensor]:
    """window masses and raw votes [B, L] on lags [L] (samples), total weight [B] -> candidates ranked by mass:
    {'tdoa_samples', 'share': [B, P] (vote centroid within +-half_width; share of the total), 'count': [B] (leading
    candidates with share >= min_share and mass >= relative x the best's)}. Candidates are greedy maxima at
    least 2 half_width + 1 bins apart, so no two share a vote."""
    peaks = greedy_peaks(mass, 2 * half_width, max_sources)  # [B, P]
    share = mass.gather(-1, peaks) / total.clamp_min(1e-12)[:, None]
    share = torch.cat((share[:, :1], torch.where(peaks[:, 1:] == peaks[:, :1], 0.0, share[:, 1:])), dim=-1)
    tdoa = centroid(votes, peaks, lags, half_width)
    passed = (share >= min_share) & (share >= relative * share[:, :1])
    count = passed.long().cumprod(dim=-1).sum(dim=-1)
    return {"tdoa_samples": tdoa, "share": share, "count": count}


def to_detections(ranked: dict[str, torch.Tensor], sr: int, mic_spacing: float,
                  sound_speed: float) -> dict[str, torch.Tensor]:
    """ranked candidates (ranked_detections) -> the same plus 'lateral_deg' [B, P] (ranked, not sorted) and
    'tdoa_s' [B, P]."""
    tdoa_s = ranked["tdoa_samples"] / sr
    return {**ranked, "tdoa_s": tdoa_s, "lateral_deg": tdoa_to_lateral(tdoa_s, mic_spacing, sound_speed)}


def gcc_phat_count(wave: torch.Tensor, sr: int = 16000, mic_spacing: float = 0.1, max_sources: int = 3,
                   frame: int = 512, hop: int = 256, upsample: int = 16, silence_db: float = 40.0,
                   min_peak: float = 0.25, min_share: float = 0.1, relative: float = 0.35,
                   sound_speed: float = SOUND_SPEED) -> dict[str, torch.Tensor]:
    """wave [B, 2, T] -> talkers counted and located by frame-wise GCC-PHAT with peak thresholds:
    {'count': [B], 'lateral_deg', 'tdoa_s', 'share': [B, max_sources] ranked by votes}.

    Each voiced frame whose GCC-PHAT peak reaches `min_peak` (a coherent wavefront; a diffuse field's GCC-PHAT
    is a flat box over the physical lags, about c / (2 d sr) high) votes for its peak lag. A candidate is the
    vote mass within +-0.5 sample of a greedy maximum; it counts as a talker when that mass is at least
    `min_share` of the voiced frames and `relative` x the strongest candidate's. Defaults: min_peak above the
    90th percentile of a diffuse field's frame peaks (0.23 for pink noise at 10 cm; reverberant speech frames
    peak at 0.2-0.5), `relative` low enough to keep a third talker heard in a quarter of the frames (looked at
    on synthetic mixtures and 6 development mixtures, not tuned on a benchmark).
    """
    if wave.dim() != 3 or wave.shape[1] != 2:
        raise ValueError(f"expected wave [batch, 2, samples], got shape {list(wave.shape)}")
    wave = wave.double()
    lags = lag_grid(sr, mic_spacing, sound_speed, upsample, device=wave.device)
    corr, voiced = frame_correlation(wave, frame, hop, lags, silence_db)
    peak, lag = corr.max(dim=-1)
    votes = torch.zeros(corr.shape[0], corr.shape[-1], dtype=wave.dtype, device=wave.device)
    votes.scatter_add_(1, lag, (voiced & (peak >= min_peak)).to(wave.dtype))
    half_width = max(1, upsample // 2)
    ranked = ranked_detections(window_mass(votes, half_width), votes, lags, voiced.sum(-1).to(wave.dtype),
                               half_width, max_sources, min_share, relative)
    return to_detections(ranked, sr, mic_spacing, sound_speed)


def duet(wave: torch.Tensor, sr: int = 16000, mic_spacing: float = 0.1, max_sources: int = 3, frame: int = 1024,
         hop: int = 256, p: float = 1.0, q: float = 0.0, delay_step: float = 0.0625, alpha_max: float = 1.0,
         alpha_bins: int = 41, low_hz: float = 100.0, min_share: float = 0.075, relative: float = 0.2,
         sound_speed: float = SOUND_SPEED) -> dict[str, torch.Tensor]:
    """wave [B, 2, T] -> talkers counted and located by DUET: {'count': [B], 'lateral_deg', 'tdoa_s', 'share',
    'alpha': [B, max_sources] ranked by histogram mass}.

    DUET (Yilmaz and Rickard, IEEE TSP 52(7), 2004, sections IV-V): assuming each time-frequency bin is dominated
    by one talker (W-disjoint orthogonality), the ratio X1/X0 of a bin gives that talker's relative attenuation,
    as the symmetric attenuation alpha = a - 1/a with a = |X1/X0|, and its delay delta = -angle(X1/X0) / omega
    (samples; mic 1 hears the talker delta after mic 0). A histogram of (alpha, delta) over all bins, weighted
    by |X0 X1|^p omega^q, is smoothed; its peaks are the talkers. Only bins below c / (2 d) enter (above it the
    phase wraps for a pair d apart: the paper's condition omega delta_max < pi). Peaks: greedy maxima of the
    mass within +-0.5 sample and +-1 alpha bin, at least a sample apart in delay (the pair is compact, so
    talkers differ by delay); a peak counts as a talker when its mass is at least `min_share` of the total and
    `relative` x the strongest's (a priori thresholds).
    """
    if wave.dim() != 3 or wave.shape[1] != 2:
        raise ValueError(f"expected wave [batch, 2, samples], got shape {list(wave.shape)}")
    if wave.shape[-1] < frame:
        raise ValueError(f"signal of {wave.shape[-1]} samples is shorter than one frame ({frame})")
    wave = wave.double()
    frames = wave.unfold(-1, frame, hop) * torch.hann_window(frame, dtype=wave.dtype, device=wave.device)
    spec = torch.fft.rfft(frames, dim=-1)  # [B, 2, F, K]
    k = torch.arange(spec.shape[-1], device=wave.device)
    freq = k * sr / frame
    use = (freq >= low_hz) & (freq < min(sound_speed / (2 * mic_spacing), sr / 2))
    x0, x1 = spec[:, 0][..., use], spec[:, 1][..., use]  # [B, F, K']
    omega = (2 * math.pi * k[use] / frame).to(wave.dtype)  # rad / sample
    ratio = x1 / (x0 + 1e-30)
    a = ratio.abs().clamp(1e-6, 1e6)
    alpha = a - 1 / a
    delta = -torch.angle(ratio) / omega
    weight = (x0.abs() * x1.abs()) ** p * omega ** q
    reach = mic_spacing / sound_speed * sr + 1.0
    delay_bins = 2 * math.ceil(reach / delay_step) + 1
    lags = (torch.arange(delay_bins, device=wave.device, dtype=wave.dtype) - delay_bins // 2) * delay_step
    d_index = torch.round(delta / delay_step).long() + delay_bins // 2
    alpha_step = 2 * alpha_max / (alpha_bins - 1)
    a_index = torch.round((alpha + alpha_max) / alpha_step).long()
    inside = (d_index >= 0) & (d_index < delay_bins) & (a_index >= 0) & (a_index < alpha_bins)
    flat = torch.where(inside, a_index * delay_bins + d_index, 0).flatten(1)
    hist = torch.zeros(wave.shape[0], alpha_bins * delay_bins, dtype=wave.dtype, device=wave.device)
    hist.scatter_add_(1, flat, torch.where(inside, weight, 0.0).flatten(1))
    hist = hist.view(-1, 1, alpha_bins, delay_bins)
    half_width = max(1, round(0.5 / delay_step))
    box = hist.new_ones(1, 1, 3, 2 * half_width + 1)
    mass = torch.nn.functional.conv2d(hist, box, padding=(1, half_width))[:, 0]  # [B, A, D]
    best_alpha = mass.argmax(dim=1)  # [B, D]: each delay's strongest attenuation cell
    per_delay = mass.max(dim=1).values  # [B, D]
    ranked = ranked_detections(per_delay, hist[:, 0].sum(dim=1), lags, hist.flatten(1).sum(-1), half_width,
                               max_sources, min_share, relative)
    peaks = greedy_peaks(per_delay, 2 * half_width, max_sources)
    alpha_at = (best_alpha.gather(-1, peaks).to(wave.dtype) * alpha_step - alpha_max)
    return {**to_detections(ranked, sr, mic_spacing, sound_speed), "alpha": alpha_at}
