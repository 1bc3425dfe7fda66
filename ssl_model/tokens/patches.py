"""tokens=patches (the seed's): patch_size x patch_size convs cut the maps into frequency x time patches."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ssl_model.config import ModelConfig
from ssl_model.tokens.kind import TokenKind, conv_bn_gelu


class PatchTokens(TokenKind):
    """One token per patch_size^len(patch_channels) bins x frames: maps [B, C, F, T] -> [B, (time patches x
    frequency patches), dim], time-major."""

    def build(self, model: nn.Module, config: ModelConfig, channels: int) -> None:
        layers: list[nn.Module] = []
        for out_channels in config.patch_channels:
            layers += conv_bn_gelu(channels, out_channels, config.patch_size, config.patch_size, 0)
            channels = out_channels
        model.patch_embed = nn.Sequential(*layers)

    def tokens(self, model: nn.Module, features: torch.Tensor, maps: torch.Tensor, frames: int,
               spacing: torch.Tensor | None) -> torch.Tensor:
        return rearrange(model.patch_embed(maps), "b d f t -> b (t f) d")  # [b, dim, freq, time patches]
