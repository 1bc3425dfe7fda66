"""Batched FRA-RIR in torch: full and early multi-channel RIRs for a batch of scenes, CPU or CUDA.

Fast Random Approximation of RIRs after Luo and Yu, "Fast Random Approximation of Multi-channel Room
Impulse Response" (Interspeech 2023) and Luo and Gu, arXiv 2304.08052 (v2). The statistical model
(image count, linearly rising image-distance ratios, random directions, distance-driven reflection
counts, beta^k / d amplitudes) follows DESIGN.md. Differences from the authors' renderer, on purpose:
images are placed at the output rate with a band-limited fractional-delay kernel instead of rounding
up at 64x and resampling; images later than the RIR length are dropped, not clamped onto its last
sample; the direct path uses the exact distance (the +1e-3 guard would move a 0.2 m path by 0.12
samples); `decay: calibrated` and `uniform_directions` are options the papers do not have.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange

from simulate.config import SimulateConfig
from simulate.decay import calibrated_amplitude, fra_amplitude, reflection_coefficient
from simulate.fractional_delay import kernel_table, render_impulses
from simulate.highpass import highpass
from simulate.scenes import Scenes

_GRID_DENSITY = 64  # distance-ratio grid points per output sample of RIR length (the authors' 64x rate)
_DISTANCE_GUARD = 1e-3  # m^2 added under the image distances' square root, as in the papers
# Tap entries (image-mic pairs x kernel taps) rendered per chunk of scenes: bounds peak memory.
_CHUNK_ENTRIES = {"cpu": 1 << 23, "cuda": 1 << 27}


def rir_lengths(rt60: torch.Tensor, sr: int) -> torch.Tensor:
    """rt60 [B] seconds -> long [B] samples: ceil(sr * T60)."""
    # float64 and a tiny slack so a T60 that is an exact multiple of 1/sr is not rounded up by noise.
    return torch.ceil(rt60.double() * sr - 1e-9).long()


def draw_images(
    scenes: Scenes, cfg: SimulateConfig, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """-> the random draws of every image slot, each [B, S, N] with N = cfg.image_count_range[1].

    Keys: `grid_u` (float64, picks the distance-ratio grid point), `direction` ([B,S,N,3] unit vectors),
    `perturb` (U(a, b)). Drawn for the whole batch up front, so chunked rendering does not change them.
    """
    count, sources = scenes.src_pos.shape[:2]
    shape = (count, sources, cfg.image_count_range[1])
    device = scenes.device
    grid_u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    az = (torch.rand(shape, generator=generator, device=device) * 2 - 1) * math.pi
    second = torch.rand(shape, generator=generator, device=device)
    if cfg.uniform_directions:
        z = second * 2 - 1
        ring = torch.sqrt((1 - z * z).clamp(min=0))
        direction = torch.stack([ring * torch.cos(az), ring * torch.sin(az), z], -1)
    else:
        # The papers' draw: el ~ U(-pi/2, pi/2) with z = cos(el) >= 0, denser at the poles.
        el = (second - 0.5) * math.pi
        direction = torch.stack([torch.sin(el) * torch.cos(az), torch.sin(el) * torch.sin(az), torch.cos(el)], -1)
    a, b = cfg.reflection_perturb
    perturb = a + (b - a) * torch.rand(shape, generator=generator, device=device)
    return {"grid_u": grid_u, "direction": direction, "perturb": perturb}


def _distance_ratios(grid_u: torch.Tensor, grid_size: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """grid_u [B,S,N] in [0,1), grid_size K [B] long, top [B,S] -> ratios [B,S,N] float32.

    Grid point i in 1..K (evenly spaced on [1, top]) has probability i / (K (K+1) / 2); the inverse of
    that ramp's CDF, i (i + 1) >= u K (K + 1), picks i in closed form.
    """
    k = grid_size.double()[:, None, None]
    i = torch.ceil((torch.sqrt(1 + 4 * grid_u * k * (k + 1)) - 1) / 2).clamp(min=1)
    i = torch.minimum(i, k)
    step = (top.double()[..., None] - 1) / (k - 1).clamp(min=1)
    return (1 + (i - 1) * step).float()


def _render_chunk(
    scenes: Scenes, draws: dict[str, torch.Tensor], cfg: SimulateConfig, lengths: torch.Tensor,
    table: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of scenes -> rir, early [Bc, M, S, Lc] (Lc = longest length in the chunk)."""
    c, sr = cfg.sound_speed, cfg.sr
    mic = scenes.mic_pos  # [B,M,3] float64
    src = scenes.src_pos  # [B,S,3]
    count, mics, sources = mic.shape[0], mic.shape[1], src.shape[1]
    length = int(lengths.max())
    rt60 = scenes.rt60
    direct = torch.linalg.vector_norm(mic[:, :, None, :] - src[:, None, :, :], dim=-1)  # [B,M,S]
    nearest, which = direct.min(dim=1)  # [B,S]
    origin = torch.gather(mic, 1, which[..., None].expand(-1, -1, 3))  # nearest mic of each source [B,S,3]

    top = c * rt60[:, None] / nearest - 1  # largest distance ratio [B,S]
    grid_size = torch.ceil(_GRID_DENSITY * sr * rt60).long()
    ratio = _distance_ratios(draws["grid_u"], grid_size, top)  # [B,S,N]
    reach = (nearest[..., None].float() * ratio)[..., None] * draws["direction"]
    images = origin[:, :, None, :].float() + reach  # [B,S,N,3]
    gap = images[:, None] - mic[:, :, None, None, :].float()  # [B,M,S,N,3]
    dist = torch.sqrt((gap * gap).sum(-1) + _DISTANCE_GUARD)  # [B,M,S,N]

    beta = reflection_coefficient(scenes.room_dim, rt60).float()[:, None, None, None]
    t60 = rt60.float()[:, None, None, None]
    ratio_m, perturb_m = ratio[:, None], draws["perturb"][:, None]
    if cfg.decay == "fra":
        amp = fra_amplitude(dist, ratio_m, perturb_m, beta, t60, c, cfg.reflection_tau)
    else:
        amp = calibrated_amplitude(
            dist, ratio_m, perturb_m, beta, t60, nearest.float()[:, None, :, None], c, cfg.reflection_tau,
            cfg.reflection_perturb,
        )
    delay = dist * (sr / c)  # samples
    direct_delay = (direct * (sr / c)).float()  # [B,M,S]

    slot = torch.arange(draws["grid_u"].shape[-1], device=mic.device)
    valid = (slot < scenes.image_count[:, None, None, None]) & (delay < lengths[:, None, None, None])
    lo, hi = cfg.early_window_ms
    offset = delay - direct_delay[..., None]
    early = valid & (offset >= lo * sr / 1000) & (offset <= hi * sr / 1000)

    # Channels 0..BMS-1 hold the full RIRs, BMS..2BMS-1 the early ones; the direct path goes to both.
    bms = count * mics * sources
    image_channel = torch.arange(bms, device=mic.device).view(count, mics, sources, 1).expand_as(delay)
    direct_channel = torch.arange(bms, device=mic.device)
    direct_delay_flat, direct_amp = direct_delay.reshape(-1), (1.0 / direct).float().reshape(-1)
    rendered = render_impulses(
        torch.cat([direct_delay_flat, direct_delay_flat, delay[valid], delay[early]]),
        torch.cat([direct_amp, direct_amp, amp[valid], amp[early]]),
        torch.cat([direct_channel, direct_channel + bms, image_channel[valid], image_channel[early] + bms]),
        2 * bms, length, table,
    )
    rendered = highpass(rendered, sr, cfg.highpass_hz)
    rendered = rearrange(rendered, "(kind b m s) l -> kind b m s l", kind=2, b=count, m=mics, s=sources)
    inside = torch.arange(length, device=mic.device) < lengths[:, None, None, None]
    rendered = rendered * inside
    return rendered[0], rendered[1]


def simulate_rirs(
    scenes: Scenes, cfg: SimulateConfig, generator: torch.Generator, chunk_scenes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scenes of B -> rir, early float32 [B, M, S, Lmax] on scenes' device, lengths long [B].

    lengths = ceil(sr T60); samples past a scene's length are zero. The early RIR keeps the images
    within cfg.early_window_ms of each (mic, source) direct path. All randomness comes from
    `generator` (on scenes' device) and is drawn before chunking: the output does not depend on
    `chunk_scenes` (scenes rendered together; default from a memory budget).
    """
    count, mics = scenes.mic_pos.shape[:2]
    sources = scenes.src_pos.shape[1]
    device = scenes.device
    lengths = rir_lengths(scenes.rt60, cfg.sr)
    longest = int(lengths.max()) if count else 0
    rir = torch.zeros(count, mics, sources, longest, dtype=torch.float32, device=device)
    early = torch.zeros_like(rir)
    draws = draw_images(scenes, cfg, generator)
    table = kernel_table(cfg.fractional_delay_taps, device=device)
    if chunk_scenes is None:
        per_scene = mics * sources * max(cfg.image_count_range[1], 1) * cfg.fractional_delay_taps
        budget = _CHUNK_ENTRIES["cuda" if device.type == "cuda" else "cpu"]
        chunk_scenes = max(1, budget // per_scene)
    for start in range(0, count, chunk_scenes):
        part = slice(start, min(start + chunk_scenes, count))
        full, first = _render_chunk(
            scenes.select(part), {k: v[part] for k, v in draws.items()}, cfg, lengths[part], table
        )
        rir[part, ..., : full.shape[-1]] = full
        early[part, ..., : first.shape[-1]] = first
    return rir, early, lengths
