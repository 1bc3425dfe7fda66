"""Conformer (Gulati et al., Interspeech 2020) in the layout of lucidrains' `conformer` package, whose module
names and shapes the seed model prints: macaron half-step feed-forwards, pre-norm self-attention with Shaw-style
relative positions (clamped to +-max_rel_pos), a GLU/depthwise-conv module, and a post LayerNorm.

Attention runs through `F.scaled_dot_product_attention`; the relative-position term q . E[clamp(i - j)] enters as
an additive bias, computed from the 2n-1 relative offsets that occur (not an [n, n, dim_head] tensor).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from einops.layers.torch import Rearrange
from torch import nn


class Swish(nn.Module):
    """x * sigmoid(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


class GLU(nn.Module):
    """Gated linear unit over `dim`: a * sigmoid(b) for the two halves (a, b)."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, gate = x.chunk(2, dim=self.dim)
        return out * gate.sigmoid()


class Scale(nn.Module):
    """fn(x) * scale (the macaron half step)."""

    def __init__(self, scale: float, fn: nn.Module):
        super().__init__()
        self.fn = fn
        self.scale = scale

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.fn(x, **kwargs) * self.scale


class PreNorm(nn.Module):
    """fn(LayerNorm(x))."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.fn(self.norm(x), **kwargs)


class FeedForward(nn.Module):
    """[batch, tokens, dim] -> same: Linear, Swish, Dropout, Linear, Dropout."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim * mult),
            Swish(),
            nn.Dropout(dropout),
            nn.Linear(dim * mult, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def relative_position_bias(q: torch.Tensor, rel_pos_emb: torch.Tensor, max_rel_pos: int, scale: float) -> torch.Tensor:
    """q [b, h, n, d], table [2*max+1, d] -> bias [b, h, n, n] = scale * q_i . E[clamp(i - j, -max, max) + max].

    Only the 2n-1 offsets i - j in [-(n-1), n-1] occur: project q on those rows (n x (2n-1) dot products),
    then gather column (i - j) + n - 1 for each (i, j). Same values as Shaw et al.'s [n, n, d] form.
    """
    n = q.shape[-2]
    offsets = torch.arange(-(n - 1), n, device=q.device)
    rows = rel_pos_emb[offsets.clamp(-max_rel_pos, max_rel_pos) + max_rel_pos]  # [2n-1, d]
    scores = torch.matmul(q, rows.to(q.dtype).t()) * scale  # [b, h, n, 2n-1], column c <-> offset c - (n-1)
    i = torch.arange(n, device=q.device)
    index = rearrange(i, "i -> i 1") - rearrange(i, "j -> 1 j") + (n - 1)  # [n, n]
    return scores.gather(-1, index.expand(*scores.shape[:-2], n, n))


class Attention(nn.Module):
    """[batch, tokens, dim] -> same: multi-head self-attention with a relative-position bias."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, max_rel_pos: int = 512):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.max_rel_pos = max_rel_pos
        self.rel_pos_emb = nn.Embedding(2 * max_rel_pos + 1, dim_head)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.to_q(x)
        k, v = self.to_kv(x).chunk(2, dim=-1)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, v))
        bias = relative_position_bias(q, self.rel_pos_emb.weight, self.max_rel_pos, self.scale)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.dropout.p if self.training else 0.0, scale=self.scale
        )
        out = rearrange(out, "b h n d -> b n (h d)")
        return self.dropout(self.to_out(out))


def same_padding(kernel_size: int) -> tuple[int, int]:
    """Left/right padding that keeps the length of a stride-1 convolution."""
    left = kernel_size // 2
    return left, left - (kernel_size + 1) % 2


class DepthWiseConv1d(nn.Module):
    """[batch, channels, time] -> same: depthwise conv with explicit 'same' padding."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.padding = same_padding(kernel_size)
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.padding))


class ConformerConvModule(nn.Module):
    """[batch, tokens, dim] -> same: LayerNorm, pointwise conv + GLU, depthwise conv, BatchNorm, Swish, pointwise."""

    def __init__(self, dim: int, expansion: int = 2, kernel_size: int = 31, dropout: float = 0.0):
        super().__init__()
        inner = dim * expansion
        self.net = nn.Sequential(
            nn.LayerNorm(dim),
            Rearrange("b n c -> b c n"),
            nn.Conv1d(dim, inner * 2, 1),
            GLU(dim=1),
            DepthWiseConv1d(inner, kernel_size),
            nn.BatchNorm1d(inner),
            Swish(),
            nn.Conv1d(inner, dim, 1),
            Rearrange("b c n -> b n c"),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConformerBlock(nn.Module):
    """[batch, tokens, dim] -> same: x += ff1/2; x += attn; x += conv; x += ff2/2; LayerNorm."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8, ff_mult: int = 4, conv_expansion: int = 2,
                 conv_kernel: int = 31, dropout: float = 0.0, max_rel_pos: int = 512):
        super().__init__()
        self.ff1 = Scale(0.5, PreNorm(dim, FeedForward(dim, ff_mult, dropout)))
        self.attn = PreNorm(dim, Attention(dim, heads, dim_head, dropout, max_rel_pos))
        self.conv = ConformerConvModule(dim, conv_expansion, conv_kernel, dropout)
        self.ff2 = Scale(0.5, PreNorm(dim, FeedForward(dim, ff_mult, dropout)))
        self.post_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ff1(x)
        x = x + self.attn(x)
        x = x + self.conv(x)
        x = x + self.ff2(x)
        return self.post_norm(x)


class Conformer(nn.Module):
    """[batch, tokens, dim] -> same: `depth` ConformerBlocks."""

    def __init__(self, dim: int, depth: int, **block_kwargs):
        super().__init__()
        self.layers = nn.ModuleList([ConformerBlock(dim, **block_kwargs) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return x
