"""Batched FRA-RIR in torch: full and early multi-channel RIRs for a batch of scenes, CPU or CUDA.

Fast Random Approximation of RIRs after Luo and Yu, "Fast Random Approximation of Multi-channel Room
Impulse Response" (Interspeech 2023) and Luo and Gu, arXiv 2304.08052 (v2). The statistical model
(image count, linearly rising image-distance ratios, random directions, distance-driven reflection
counts, beta^k / d amplitudes) follows DESIGN.md. Differences from the authors' renderer, on purpose:
images are placed at the output rate with band-limited fractional delays (simulate.fractional_delay)
instead of rounding up at 64x and resampling; images later than the RIR length are dropped, not clamped onto its last
sample; the direct path uses the exact distance (the +1e-3 guard would move a 0.2 m path by 0.12
samples); `decay: calibrated` and `uniform_directions` are options the papers do not have.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange

from simulate.config import SimulateConfig
from simulate.decay import calibrated_amplitude, fra_amplitude, reflection_coefficient
from simulate.fractional_delay import delay_kernel, fft_size, render_impulses
from simulate.highpass import highpass_response
from simulate.scenes import Scenes

_GRID_DENSITY = 64  # distance-ratio grid points per output sample of RIR length (the authors' 64x rate)
_DISTANCE_GUARD = 1e-3  # m^2 added under the image distances' square root, as in the papers
_HIGHPASS_SLACK = 1024  # FFT samples past the RIR end for the high-pass tail to die out (< -190 dB)
_EARLY_KERNEL_SLACK = 64  # samples past the early window for the delay kernel's ringing
# RIR samples (channels x FFT size) rendered per chunk of scenes: bounds peak memory.
_CHUNK_SAMPLES = {"cpu": 1 << 21, "cuda": 1 << 26}


def rir_lengths(rt60: torch.Tensor, sr: int) -> torch.Tensor:
    """rt60 [B] seconds -> long [B] samples: ceil(sr * T60)."""
    # float64 and a tiny slack so a T60 that is an exact multiple of 1/sr is not rounded up by noise.
    return torch.ceil(rt60.double() * sr - 1e-9).long()


def draw_images(
    scenes: Scenes, cfg: SimulateConfig, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """-> the random draws of every image slot, each [B, S, N] with N = cfg.image_count_range[1].

    Keys: `grid_u` (picks the distance-ratio grid point), `direction` ([B,S,N,3] unit vectors),
    `perturb` (U(a, b)). Drawn for the whole batch up front, so chunked rendering does not change them.
    """
    count, sources = scenes.src_pos.shape[:2]
    shape = (4, count, sources, cfg.image_count_range[1])
    # One float32 draw for all four: 2^-24 resolution moves the ratio grid index by < 0.05.
    grid_u, first, second, fourth = torch.rand(shape, generator=generator, device=scenes.device).unbind(0)
    az = (first * 2 - 1) * math.pi
    if cfg.uniform_directions:
        z = second * 2 - 1
        ring = torch.sqrt((1 - z * z).clamp(min=0))
        direction = torch.stack([ring * torch.cos(az), ring * torch.sin(az), z], -1)
    else:
        # The papers' draw: el ~ U(-pi/2, pi/2) with z = cos(el) >= 0, denser at the poles.
        el = (second - 0.5) * math.pi
        direction = torch.stack([torch.sin(el) * torch.cos(az), torch.sin(el) * torch.sin(az), torch.cos(el)], -1)
    a, b = cfg.reflection_perturb
    perturb = a + (b - a) * fourth
    return {"grid_u": grid_u, "direction": direction, "perturb": perturb}


def _distance_ratios(grid_u: torch.Tensor, grid_size: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """grid_u [...] in [0,1), grid_size K, top (broadcast to it) -> ratios [...] float32.

    Grid point i in 1..K (evenly spaced on [1, top]) has probability i / (K (K+1) / 2); the inverse of
    that ramp's CDF, i (i + 1) >= u K (K + 1), picks i in closed form.
    """
    k = grid_size.double()
    i = torch.ceil((torch.sqrt(1 + 4 * grid_u * k * (k + 1)) - 1) / 2).clamp(min=1)
    i = torch.minimum(i, k)
    step = (top.double() - 1) / (k - 1).clamp(min=1)
    return (1 + (i - 1) * step).float()


def image_paths(
    scenes: Scenes, draws: dict[str, torch.Tensor], cfg: SimulateConfig, lengths: torch.Tensor
) -> dict[str, torch.Tensor]:
    """-> every path that lands inside its RIR, flat [P]: delay (samples), amplitude, channel, early.

    channel = (b M + m) S + s; the first B*M*S entries are the direct paths, in channel order.
    Image math is broadcast over [B, M, S, N] slots (no per-image gathers); unused slots (beyond the
    scene's image count) and late images are removed by one final compaction.
    """
    c, sr = cfg.sound_speed, cfg.sr
    mic, src = scenes.mic_pos, scenes.src_pos  # float64
    count, mics, sources = mic.shape[0], mic.shape[1], src.shape[1]
    device = mic.device
    direct = torch.linalg.vector_norm(mic[:, :, None, :] - src[:, None, :, :], dim=-1)  # [B,M,S]
    nearest, which = direct.min(dim=1)  # [B,S]
    origin = torch.gather(mic, 1, which[..., None].expand(-1, -1, 3)).float()  # [B,S,3]
    rt60 = scenes.rt60
    ratio = _distance_ratios(
        draws["grid_u"], torch.ceil(_GRID_DENSITY * sr * rt60).long()[:, None, None], (c * rt60[:, None] / nearest - 1)[..., None]
    )  # [B,S,N]
    position = origin[:, :, None, :] + (nearest.float()[..., None] * ratio)[..., None] * draws["direction"]  # [B,S,N,3]
    gap = position[:, None] - mic.float()[:, :, None, None, :]  # [B,M,S,N,3]
    dist = torch.sqrt((gap * gap).sum(-1) + _DISTANCE_GUARD)  # [B,M,S,N]
    perturb = draws["perturb"][:, None]
    ratio = ratio[:, None]
    t60 = rt60.float()[:, None, None, None]
    beta = reflection_coefficient(scenes.room_dim, rt60).float()[:, None, None, None]
    if cfg.decay == "fra":
        amp = fra_amplitude(dist, ratio, perturb, beta, t60, c, cfg.reflection_tau)
    else:
        amp = calibrated_amplitude(dist, ratio, perturb, beta, t60, nearest.float()[:, None, :, None], c,
                                   cfg.reflection_tau, cfg.reflection_perturb)
    delay = dist * (sr / c)
    direct_delay = (direct * (sr / c)).float()  # [B,M,S]
    slots = delay.shape[-1]
    used = torch.arange(slots, device=device) < scenes.image_count[:, None, None, None]
    keep = (used & (delay < lengths.float()[:, None, None, None])).view(-1).nonzero(as_tuple=True)[0]
    channel = keep // slots  # drop late images, never clamp them onto the last sample
    delay, amp = delay.view(-1)[keep], amp.view(-1)[keep]
    lo, hi = cfg.early_window_ms
    offset = delay - direct_delay.view(-1)[channel]
    early = (offset >= lo * sr / 1000) & (offset <= hi * sr / 1000)
    return {
        "delay": torch.cat([direct_delay.view(-1), delay]),
        "amplitude": torch.cat([(1.0 / direct).float().view(-1), amp]),
        "channel": torch.cat([torch.arange(count * mics * sources, device=device), channel]),
        "early": torch.cat([torch.ones(count * mics * sources, dtype=torch.bool, device=device), early]),
    }


def _render_chunk(
    scenes: Scenes, draws: dict[str, torch.Tensor], cfg: SimulateConfig, lengths: torch.Tensor,
    kernel: torch.Tensor, early_kernel: torch.Tensor, early_length: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes sharing one FFT size -> rir [Bc, M, S, n_fft], early [Bc, M, S, early_length]."""
    count, mics, sources = scenes.mic_pos.shape[0], scenes.mic_pos.shape[1], scenes.src_pos.shape[1]
    paths = image_paths(scenes, draws, cfg, lengths)
    channels = count * mics * sources
    n_fft = 2 * (kernel.shape[1] - 1)
    full = render_impulses(paths["delay"], paths["amplitude"], paths["channel"], channels, n_fft, kernel)
    pick = paths["early"].nonzero(as_tuple=True)
    first = render_impulses(
        paths["delay"][pick], paths["amplitude"][pick], paths["channel"][pick], channels, early_length, early_kernel
    )
    shape = "(b m s) l -> b m s l"
    return (rearrange(full, shape, b=count, m=mics, s=sources),
            rearrange(first, shape, b=count, m=mics, s=sources))


def simulate_rirs(
    scenes: Scenes, cfg: SimulateConfig, generator: torch.Generator, chunk_scenes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scenes of B -> rir, early float32 [B, M, S, Lmax] on scenes' device, lengths long [B].

    lengths = ceil(sr T60); samples past a scene's length are zero. The early RIR keeps the paths
    within cfg.early_window_ms of each (mic, source) direct path. All randomness comes from
    `generator` (on scenes' device) and is drawn for the whole batch first; each scene is rendered
    with an FFT size set by its own length, in chunks of scenes of equal size (`chunk_scenes`,
    default from a memory budget), so chunking does not change which numbers a scene gets.
    """
    count, mics = scenes.mic_pos.shape[:2]
    sources = scenes.src_pos.shape[1]
    device = scenes.device
    sr = cfg.sr
    lengths = rir_lengths(scenes.rt60, sr)
    longest = int(lengths.max()) if count else 0
    rir = torch.zeros(count, mics, sources, longest, dtype=torch.float32, device=device)
    early = torch.zeros_like(rir)
    draws = draw_images(scenes, cfg, generator)
    if count == 0:
        return rir, early, lengths
    # Early paths end by the farthest direct path plus the window; its FFT size is one per config.
    farthest = (cfg.distance_range[1] + cfg.array_radius) / cfg.sound_speed * sr
    early_length = min(math.ceil(farthest + cfg.early_window_ms[1] * sr / 1000) + _EARLY_KERNEL_SLACK, longest)
    early_fft = fft_size(early_length + _HIGHPASS_SLACK)
    sizes = torch.tensor([fft_size(int(n) + _HIGHPASS_SLACK) for n in lengths.tolist()], device=device)
    budget = _CHUNK_SAMPLES["cuda" if device.type == "cuda" else "cpu"]
    order = cfg.fractional_delay_order

    def kernel_for(n_fft: int) -> torch.Tensor:
        return delay_kernel(n_fft, order, highpass_response(n_fft, sr, cfg.highpass_hz, device), device)

    early_kernel = kernel_for(early_fft)
    for n_fft in sorted(set(sizes.tolist())):
        kernel = kernel_for(n_fft)
        group = (sizes == n_fft).nonzero(as_tuple=True)[0]
        step = chunk_scenes or max(1, budget // (mics * sources * n_fft * (cfg.fractional_delay_order + 2)))
        for start in range(0, group.numel(), step):
            part = group[start : start + step]
            scene_len = lengths[part]
            full, first = _render_chunk(
                scenes.select(part), {k: v[part] for k, v in draws.items()}, cfg, scene_len, kernel,
                early_kernel, early_length,
            )
            inside = torch.arange(longest, device=device) < scene_len[:, None, None, None]
            span = min(longest, n_fft)
            rir[part, ..., :span] = full[..., :span] * inside[..., :span]
            early[part, ..., :early_length] = first * inside[..., :early_length]
    return rir, early, lengths
