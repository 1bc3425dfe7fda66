"""Band-limited fractional-delay placement of impulses: a Kaiser-windowed sinc table, scatter-added."""
from __future__ import annotations

import torch


def kernel_table(
    taps: int = 32, phases: int = 4096, cutoff: float = 0.9, kaiser_beta: float = 6.0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """-> [phases+1, taps] float32; row p is the kernel for a delay p/phases past an integer sample.

    Tap j sits at integer offset j - (taps//2 - 1) from floor(delay); the sinc's main lobe is centred
    on the exact delay, so the kernel is symmetric about it and its peak lands there. `cutoff` is the
    low-pass edge as a fraction of Nyquist (below 1 to keep the windowed sinc's transition band
    mostly below Nyquist: at 16 kHz the response is flat to ~6 kHz, ~-6 dB at 7.2 kHz).
    """
    if taps < 2 or taps % 2:
        raise ValueError(f"fractional_delay_taps: must be an even number >= 2, got {taps}")
    half = taps // 2
    frac = torch.arange(phases + 1, dtype=torch.float64, device=device) / phases
    offsets = torch.arange(taps, dtype=torch.float64, device=device) - (half - 1)
    x = offsets[None, :] - frac[:, None]  # tap position relative to the exact delay, in (-half, half]
    window = torch.special.i0(kaiser_beta * torch.sqrt((1 - (x / half) ** 2).clamp(min=0))) / torch.special.i0(
        torch.tensor(kaiser_beta, dtype=torch.float64)
    )
    return (cutoff * torch.sinc(cutoff * x) * window).to(torch.float32)


def render_impulses(
    delay: torch.Tensor, amplitude: torch.Tensor, channel: torch.Tensor, channels: int, length: int,
    table: torch.Tensor,
) -> torch.Tensor:
    """delay [N] (samples, float), amplitude [N], channel [N] long -> [channels, length] float32.

    Each impulse becomes the table's kernel for its fractional part, added at floor(delay) + offsets;
    taps falling outside [0, length) are dropped. Deterministic on CPU (sequential index_add_) and
    on CUDA (index_put_ with accumulate sorts the indices, so the summation order is fixed).
    """
    phases, taps = table.shape[0] - 1, table.shape[1]
    half = taps // 2
    whole = torch.floor(delay)
    row = torch.round((delay - whole) * phases).long()  # 1/(2*phases)-sample quantization of the delay
    values = table[row] * amplitude[:, None]  # [N, taps]
    # The buffer has (half - 1) samples of lead-in and half of tail so every tap has a slot.
    padded = length + taps
    start = whole.long() + channel * padded  # index of tap 0 (offset -(half-1)) in the padded buffer
    index = start[:, None] + torch.arange(taps, device=delay.device)  # [N, taps]
    out = torch.zeros(channels * padded, dtype=torch.float32, device=delay.device)
    if out.is_cuda:
        out.index_put_((index.reshape(-1),), values.reshape(-1), accumulate=True)
    else:
        out.index_add_(0, index.reshape(-1), values.reshape(-1))
    return out.view(channels, padded)[:, half - 1 : half - 1 + length]
