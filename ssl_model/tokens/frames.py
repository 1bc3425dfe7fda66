"""tokens=frames: one token per frames_per_token frames of the whole band, embedded by one linear map."""
from __future__ import annotations

import torch
from einops.layers.torch import Rearrange
from torch import nn

from ssl_model.config import ModelConfig
from ssl_model.tokens.kind import TokenKind


class FrameTokens(TokenKind):
    """maps [B, C, F, T] -> [B, T / frames_per_token, dim]. A linear map of the (cos, sin) phase differences across
    frequency is already a steered response (SRP-PHAT) per frame."""

    def build(self, model: nn.Module, config: ModelConfig, channels: int) -> None:
        bins = config.n_fft // 2
        model.patch_embed = nn.Sequential(
            Rearrange("b c f (t k) -> b t (k c f)", k=config.frames_per_token),
            nn.Linear(config.frames_per_token * channels * bins, config.dim),
            nn.LayerNorm(config.dim),
        )

    def tokens(self, model: nn.Module, features: torch.Tensor, maps: torch.Tensor, frames: int,
               spacing: torch.Tensor | None) -> torch.Tensor:
        return model.patch_embed(maps[..., :frames])
