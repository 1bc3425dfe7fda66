"""Batched FRA-RIR in torch: full and early multi-channel RIRs for a batch of scenes, CPU or CUDA.

Fast Random Approximation of RIRs after Luo and Yu, "Fast Random Approximation of Multi-channel Room
Impulse Response" (Interspeech 2023) and Luo and Gu, arXiv 2304.08052 (v2). The statistical model
(image count, linearly rising image-distance ratios, random directions, distance-driven reflection
counts, beta^k / d amplitudes) follows docs/fra_rir.md. Differences from the authors' renderer, on purpose:
images are placed at the output rate with band-limited fractional delays (simulate.fractional_delay)
instead of rounding up at 64x and resampling; images later than the RIR length are dropped, not clamped onto its last
sample; the direct path uses the exact distance (the +1e-3 guard would move a 0.2 m path by 0.12
samples); `decay: calibrated` and `uniform_directions` are options the papers do not have.
"""
from __future__ import annotations

import bisect
import functools
import math

import torch
from einops import rearrange

from shards.scenes import Scenes, cpu_generator
from simulate.config import SimulateConfig
from simulate.decay import (calibrated_amplitude, calibrated_rate, fra_amplitude, fra_slope,
                            reflection_coefficient)
from simulate.fractional_delay import add_impulses, delay_kernel, farrow_terms, fft_size, mix_trains
from simulate.highpass import highpass_response

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


def draw_images(scenes: Scenes, cfg: SimulateConfig, generator: torch.Generator) -> torch.Tensor:
    """-> uniform draws [4, I] in [0, 1), one column per image, I = S * sum(image_count).

    Rows pick the distance-ratio grid point, the direction (two) and the reflection perturbation.
    simulate_rirs hands the columns out scene by scene (in its rendering order), then source, then
    image. Only used images get numbers, and all are drawn for the whole batch up front, so chunked
    rendering does not change them. They are drawn from a CPU generator and moved to scenes' device,
    so a CUDA render places the same images as a CPU one.
    """
    total = scenes.src_pos.shape[1] * int(scenes.image_count.sum()) if len(scenes) else 0
    # One float32 draw for all four: 2^-24 resolution moves the ratio grid index by < 0.05.
    return torch.rand((4, total), generator=cpu_generator(generator)).to(scenes.device)


def _distance_ratios(grid_u: torch.Tensor, grid_size: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """grid_u [I] in [0,1), grid_size K [I] and top [I] float64 -> ratios [I] float32.

    Grid point i in 1..K (evenly spaced on [1, top]) has probability i / (K (K+1) / 2); the inverse of
    that ramp's CDF, i (i + 1) >= u K (K + 1), picks i in closed form.
    """
    k = grid_size
    i = torch.ceil((torch.sqrt(1 + 4 * grid_u.double() * k * (k + 1)) - 1) / 2).clamp_(min=1)
    i = torch.minimum(i, k)
    step = (top - 1) / (k - 1).clamp(min=1)
    return (1 + (i - 1) * step).float()


def _directions(first: torch.Tensor, second: torch.Tensor, uniform: bool) -> tuple[torch.Tensor, ...]:
    """first, second [I] uniform draws -> unit direction components x, y, z, each [I]."""
    az = (first * 2 - 1) * math.pi
    if uniform:
        z = second * 2 - 1
        ring = torch.sqrt((1 - z * z).clamp_(min=0))
    else:
        # The papers' draw: el ~ U(-pi/2, pi/2) with z = cos(el) >= 0, denser at the poles.
        el = (second - 0.5) * math.pi
        ring, z = torch.sin(el), torch.cos(el)
    return ring * torch.cos(az), ring * torch.sin(az), z


def image_paths(
    scenes: Scenes, uniforms: torch.Tensor, cfg: SimulateConfig, lengths: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Scenes of B, their draw_images columns [4, I], lengths [B] -> the image paths, [M, I] each.

    Keys: `delay` (samples), `amplitude` (0 for images at or past the RIR length: dropped, never
    clamped onto the last sample), `channel` long ((b M + m) S + s), `early` long [E] (indices into
    the flattened [M, I] paths of those within cfg.early_window_ms of their channel's direct path); `direct_delay`, `direct_amplitude` [B, M, S].
    Per-scene and per-source values are spread to the images by one gather; the per-path work is
    a few elementwise passes over [M, I].
    """
    c, sr = cfg.sound_speed, cfg.sr
    mic, src = scenes.mic_pos, scenes.src_pos  # float64
    count, mics, sources = mic.shape[0], mic.shape[1], src.shape[1]
    device = mic.device
    direct = torch.linalg.vector_norm(mic[:, :, None, :] - src[:, None, :, :], dim=-1)  # [B,M,S]
    direct_delay = (direct * (sr / c)).float()
    nearest, which = direct.min(dim=1)  # [B,S]
    origin = torch.gather(mic, 1, which[..., None].expand(-1, -1, 3))  # [B,S,3]
    rt60 = scenes.rt60[:, None].expand(-1, sources)  # [B,S]
    pairs = count * sources
    pair = torch.repeat_interleave(
        torch.arange(pairs, device=device), scenes.image_count.repeat_interleave(sources), output_size=uniforms.shape[1]
    )  # [I]: b S + s of each image
    # Per source: the ratio grid (float64: K (K+1) reaches 5e11) and, relative to the nearest mic
    # (the images' origin), each mic's offset w, so |image - mic|^2 = (r rho)^2 + 2 r rho u.w + |w|^2.
    grid = torch.ceil(_GRID_DENSITY * sr * rt60)
    exact = torch.stack([grid, c * rt60 / nearest - 1]).view(2, pairs).index_select(1, pair)
    offset = (origin[:, None] - mic[:, :, None]).float()  # [B,M,S,3]
    log_beta = torch.log(reflection_coefficient(scenes.room_dim, scenes.rt60))[:, None].expand(-1, sources)
    if cfg.decay == "fra":
        law = fra_slope(torch.exp(log_beta), rt60, c)
    else:
        law = calibrated_rate(rt60, c)
    lo, hi = (t * sr / 1000 for t in cfg.early_window_ms)
    # No mic is closer to an image than reach - |w|: farther than this bound, an image is late everywhere.
    early_reach = (direct + torch.linalg.vector_norm(offset, dim=-1)).amax(1) + hi * c / sr + 0.01  # [B,S]
    per_source = torch.cat([
        rearrange(offset, "b m s k -> (k m) (b s)"),
        rearrange((offset * offset).sum(-1) + _DISTANCE_GUARD, "b m s -> m (b s)"),
        torch.stack([nearest, log_beta, law, lengths[:, None].expand(-1, sources).double(), early_reach]).view(5, pairs).float(),
    ]).index_select(1, pair)  # [4M + 5, I]
    w = per_source[: 3 * mics].view(3, mics, -1)
    w_sq = per_source[3 * mics : 4 * mics]
    near, log_beta, law, length, early_reach = per_source[4 * mics :]

    ratio = _distance_ratios(uniforms[0], exact[0], exact[1])
    x, y, z = _directions(uniforms[1], uniforms[2], cfg.uniform_directions)
    a, b = cfg.reflection_perturb
    perturb = a + (b - a) * uniforms[3]
    reach = near * ratio  # distance from the nearest mic
    dot = torch.addcmul(torch.addcmul(w[0] * x, w[1], y), w[2], z)  # [M,I]
    dist = torch.addcmul(w_sq.add_(reach * reach), dot, 2 * reach).sqrt_()
    ratio_tau = ratio**cfg.reflection_tau
    if cfg.decay == "fra":
        amp = fra_amplitude(dist, ratio_tau, perturb, law, log_beta)
    else:
        amp = calibrated_amplitude(dist, ratio_tau, perturb, log_beta, near, law, cfg.reflection_perturb)
    delay = dist.mul_(sr / c)
    late = delay >= length
    if late.any():
        amp.masked_fill_(late, 0.0)
        delay.masked_fill_(late, 0.0)
    near_images = (reach <= early_reach).nonzero(as_tuple=True)[0]
    since = delay[:, near_images] - rearrange(direct_delay, "b m s -> m (b s)")[:, pair[near_images]]
    mic_index, image_index = ((since >= lo) & (since <= hi)).nonzero(as_tuple=True)
    early = mic_index * pair.numel() + near_images[image_index]
    first_channel = pair + (pair // sources) * ((mics - 1) * sources)  # channel of mic 0
    channel = first_channel + torch.arange(0, mics * sources, sources, device=device)[:, None]
    return {"delay": delay, "amplitude": amp, "channel": channel, "early": early,
            "direct_delay": direct_delay, "direct_amplitude": (1.0 / direct).float()}


def lattice(order: int) -> torch.Tensor:
    """-> long [E, 3, 2]: every shoebox image of reflection order 1..`order` as (n, q) per axis, order = sum |2n - q|.

    Image-source method (Allen and Berkley, JASA 1979): along an axis of length L, x' = (1 - 2q) x + 2 n L is
    the source seen through |2n - q| reflections off the two walls of that axis. Not cached: 1 ms at order 6,
    once per chunk of scenes (a chunk renders for tens of ms).
    """
    axis = [(n, q) for n in range(-order, order + 1) for q in (0, 1) if abs(2 * n - q) <= order]
    rows = [(a, b, c) for a in axis for b in axis for c in axis
            if 1 <= sum(abs(2 * n - q) for n, q in (a, b, c)) <= order]
    return torch.tensor(rows, dtype=torch.long)


def specular_paths(scenes: Scenes, cfg: SimulateConfig, lengths: torch.Tensor, direct_delay: torch.Tensor
                   ) -> dict[str, torch.Tensor]:
    """The shoebox's exact image sources up to order cfg.early_images, each path beta^order / d at delay d / c.

    -> delay, amplitude [B, M, S, E] (0 at or past the RIR length) and `early` bool [B, M, S, E] (within
    cfg.early_window_ms of that channel's direct path). FRA-RIR's reflections come from random directions;
    these add the coherent specular reflections a real room's walls give, from their geometric directions.
    """
    images = lattice(cfg.early_images).to(scenes.device)  # [E, 3, 2]
    n, q = images[..., 0].double(), images[..., 1].double()  # [E, 3]
    reflections = (2 * n - q).abs().sum(-1)  # [E]
    src = scenes.src_pos[:, :, None, :]  # [B, S, 1, 3]
    positions = (1 - 2 * q) * src + 2 * n * scenes.room_dim[:, None, None, :]  # [B, S, E, 3]
    dist = torch.linalg.vector_norm(scenes.mic_pos[:, :, None, None, :] - positions[:, None], dim=-1)  # [B, M, S, E]
    beta = reflection_coefficient(scenes.room_dim, scenes.rt60)[:, None, None, None]
    delay = (dist * (cfg.sr / cfg.sound_speed)).float()
    amplitude = (beta ** reflections / dist).float()
    inside = delay < lengths[:, None, None, None]
    lo, hi = (t * cfg.sr / 1000 for t in cfg.early_window_ms)
    since = delay - direct_delay[..., None]
    return {"delay": torch.where(inside, delay, torch.zeros_like(delay)),
            "amplitude": torch.where(inside, amplitude, torch.zeros_like(amplitude)),
            "early": inside & (since >= lo) & (since <= hi)}


@functools.lru_cache(maxsize=64)
def _render_kernel(n_fft: int, order: int, sr: int, highpass_hz: float, device: str) -> torch.Tensor:
    """-> [order+1, n_fft//2+1] complex64: the Farrow delay kernel times the high-pass, cached per FFT size.

    Built in 0.6-3 ms (4k-24k FFT), twice per chunk of scenes; callers must not modify the shared tensor.
    """
    return delay_kernel(n_fft, order, highpass_response(n_fft, sr, highpass_hz, device), device)


def _render_chunk(
    scenes: Scenes, uniforms: torch.Tensor, cfg: SimulateConfig, lengths: torch.Tensor, n_fft: int,
    early_fft: int, early_length: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes of Bc sharing one FFT size, their draws [4, I] -> rir [Bc, M, S, n_fft], early [Bc, M, S, early_length]."""
    count, mics, sources = scenes.mic_pos.shape[0], scenes.mic_pos.shape[1], scenes.src_pos.shape[1]
    device = scenes.device
    order = cfg.fractional_delay_order
    paths = image_paths(scenes, uniforms, cfg, lengths)
    channels = count * mics * sources
    whole, values = farrow_terms(paths["delay"].view(-1), paths["amplitude"].view(-1), order)
    channel = paths["channel"].view(-1)
    direct_whole, direct_values = farrow_terms(paths["direct_delay"].view(-1), paths["direct_amplitude"].view(-1), order)
    direct_channel = torch.arange(channels, device=device)
    specular = specular_paths(scenes, cfg, lengths, paths["direct_delay"]) if cfg.early_images else None
    if specular is not None:
        images = specular["delay"].shape[-1]
        spec_whole, spec_values = farrow_terms(specular["delay"].view(-1), specular["amplitude"].view(-1), order)
        spec_channel = direct_channel.repeat_interleave(images)
        spec_early = specular["early"].view(-1).nonzero(as_tuple=True)[0]

    def render(size: int, length: int, pick: torch.Tensor | None) -> torch.Tensor:
        trains = torch.zeros(order + 1, channels * size, dtype=torch.float32, device=device)
        add_impulses(trains, direct_channel * size + direct_whole, direct_values)
        if specular is not None:
            keep = slice(None) if pick is None else spec_early
            add_impulses(trains, spec_channel[keep] * size + spec_whole[keep], spec_values[:, keep])
        if pick is None:
            add_impulses(trains, channel * size + whole, values)
        else:
            add_impulses(trains, channel[pick] * size + whole[pick], values.index_select(1, pick))
        kernel = _render_kernel(size, order, cfg.sr, cfg.highpass_hz, str(device))
        return mix_trains(trains.view(order + 1, channels, size), kernel, length).view(count, mics, sources, length)

    full = render(n_fft, n_fft, None)
    first = render(early_fft, early_length, paths["early"])
    return full, first


def simulate_rirs(
    scenes: Scenes, cfg: SimulateConfig, generator: torch.Generator, chunk_scenes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scenes of B -> rir, early float32 [B, M, S, Lmax] on scenes' device, lengths long [B].

    lengths = ceil(sr T60); samples past a scene's length are zero. The early RIR keeps the paths
    within cfg.early_window_ms of each (mic, source) direct path. All randomness comes from
    `generator` (a CPU generator, whatever scenes' device) and is drawn for the whole batch first; each scene is rendered
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
    sizes = [fft_size(n + _HIGHPASS_SLACK) for n in lengths.tolist()]
    budget = _CHUNK_SAMPLES["cuda" if device.type == "cuda" else "cpu"]
    # Scenes render grouped by FFT size; their draw columns follow that order, so a chunk's are one slice.
    order = sorted(range(count), key=sizes.__getitem__)
    sizes = [sizes[b] for b in order]
    ends = torch.cumsum(sources * scenes.image_count[order], 0).tolist()  # each scene's last draw column + 1
    start = 0
    while start < count:
        n_fft = sizes[start]
        step = chunk_scenes or max(1, budget // (mics * sources * n_fft * (cfg.fractional_delay_order + 2)))
        stop = min(start + step, bisect.bisect_right(sizes, n_fft))
        part = torch.tensor(order[start:stop], device=device)
        uniforms = draws[:, (ends[start - 1] if start else 0) : ends[stop - 1]]
        scene_len = lengths[part]
        full, first = _render_chunk(scenes.select(part), uniforms, cfg, scene_len, n_fft, early_fft, early_length)
        span = min(longest, n_fft)
        full = full[..., :span].masked_fill_(torch.arange(span, device=device) >= scene_len[:, None, None, None], 0.0)
        first = first.masked_fill_(torch.arange(early_length, device=device) >= scene_len[:, None, None, None], 0.0)
        rir[..., :span].index_copy_(0, part, full)
        early[..., :early_length].index_copy_(0, part, first)
        start = stop
    return rir, early, lengths
