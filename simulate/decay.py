"""FRA-RIR's reflection laws: image amplitude from distance, distance ratio and the random perturbation.

FRA-RIR: Luo and Yu, "Fast Random Approximation of Multi-channel Room Impulse Response",
Interspeech 2023 / arXiv 2304.08052 (v2 with Gu). Formulas in docs/fra_rir.md; the code is ours.
Each law is split into per-image factors (computed once per image) and a per-path step (once per
image and mic), so the renderer's work per path is a handful of elementwise passes.
"""
from __future__ import annotations

import math

import torch


def reflection_coefficient(room_dim: torch.Tensor, rt60: torch.Tensor) -> torch.Tensor:
    """room_dim [B,3], rt60 [B] -> beta [B]: sqrt(1 - alpha^2) with alpha = 1 - exp(-0.16 R / T60), R = V/S."""
    ratio = 1.0 / (2.0 * (1.0 / room_dim).sum(-1))  # volume-to-surface ratio of the box
    absorption = 1.0 - torch.exp(-0.16 * ratio / rt60)
    return torch.sqrt(1.0 - absorption**2)


def fra_slope(beta: torch.Tensor, rt60: torch.Tensor, sound_speed: float) -> torch.Tensor:
    """beta, rt60 [...] -> (k_max - 1) / (c T60) [...], the growth of FRA's reflection count per metre.

    k_max = (log10(c T60) - 3) / log10(beta) is the reflection count at which beta^k falls to c T60 / 1000.
    """
    span = sound_speed * rt60
    k_max = (torch.log10(span) - 3.0) / torch.log10(beta)
    return (k_max - 1.0) / span


def fra_amplitude(
    dist: torch.Tensor, ratio_tau: torch.Tensor, perturb: torch.Tensor, slope: torch.Tensor, log_beta: torch.Tensor
) -> torch.Tensor:
    """The model as written: beta^k / d with k = d/(c T60) (k_max - 1) + 1 + perturb * ratio^tau, k >= 1.

    dist [M, I] per path; ratio_tau = ratio^tau, perturb (the U(a, b) draw), slope (fra_slope) and
    log(beta), each [I] per image -> amplitude [M, I].
    """
    k = torch.addcmul(1.0 + perturb * ratio_tau, dist, slope).clamp_(min=1.0)
    return k.mul_(log_beta).exp_().div_(dist)


def _mean_square_gain(log_beta: torch.Tensor, scale: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """E[beta^(2 U scale)] for U ~ U(a, b), from log(beta) < 0 and scale > 0 (broadcast)."""
    if b - a < 1e-12:
        return torch.exp(2 * a * scale * log_beta)
    s = 2 * scale * log_beta
    return (torch.exp(b * s) - torch.exp(a * s)) / ((b - a) * s)


def calibrated_rate(rt60: torch.Tensor, sound_speed: float) -> torch.Tensor:
    """rt60 [...] -> 3 ln(10) / (c T60) [...]: the amplitude envelope's decay per metre (60 dB per T60)."""
    return 3.0 * math.log(10.0) / (sound_speed * rt60)


def calibrated_amplitude(
    dist: torch.Tensor, ratio_tau: torch.Tensor, perturb: torch.Tensor, log_beta: torch.Tensor,
    nearest: torch.Tensor, rate: torch.Tensor, perturb_range: tuple[float, float],
) -> torch.Tensor:
    """Same draws, reflection law solved for an exponential energy decay of 60 dB per T60.

    dist [M, I] per path; ratio_tau = ratio^tau, perturb, log(beta), nearest and rate
    (calibrated_rate), each [I] per image -> amplitude [M, I].
    FRA-RIR draws image distances with density rising linearly in d, so with beta^k / d amplitudes the
    energy arriving at time t = d/c goes as d * beta^(2k) / d^2: the 1/t factor and the mild slope of
    k(d) leave only ~35 dB per T60 (T20 ~ 2x the request). Solving d * E[A^2] = C 10^(-6 d / (c T60))
    for A gives A = 10^(-3 (d - r) / (c T60)) / sqrt(d r) times the perturbation beta^(1 + perturb
    ratio^tau), normalized by its mean square at this ratio; r = `nearest` (the source's nearest direct
    distance), so the first image (d = r, ratio 1) has FRA's amplitude beta^(1 + perturb) / r.
    As an effective reflection count: k = 1 + perturb ratio^tau + log(sqrt(d/r) 10^(-3 (d - r)/(c T60))
    / sqrt(M(ratio)/M(1))) / log(beta).
    """
    a, b = perturb_range
    norm = _mean_square_gain(log_beta, ratio_tau, a, b) / _mean_square_gain(log_beta, torch.ones_like(ratio_tau), a, b)
    # Everything but exp(-rate d) / sqrt(d) is per image.
    gain = torch.exp(rate * nearest + (1.0 + perturb * ratio_tau) * log_beta) / torch.sqrt(nearest * norm)
    return (dist * rate).neg_().exp_().mul_(gain).div_(torch.sqrt(dist))
