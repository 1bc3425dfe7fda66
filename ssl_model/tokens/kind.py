"""The interface every token kind implements: feature maps in, tokens out.

A kind adds its layers to the model itself, under the attribute names the shipped weights files use as keys
(patch_embed, srp_mask, the steer buffer), so that moving a kind into its own file changes no state_dict key.
"""
from __future__ import annotations

import torch
from torch import nn

from ssl_model.config import ModelConfig


class TokenKind:
    """build(model, config, channels) adds the kind's layers to the model; tokens() reads them back."""

    def build(self, model: nn.Module, config: ModelConfig, channels: int) -> None:
        raise NotImplementedError

    def encode(self, model: nn.Module, features: torch.Tensor, frames: int, spacing: torch.Tensor | None
               ) -> torch.Tensor:
        """features [B, in_channels, F, frames'] -> tokens [B, N, dim]: inter_conv on every bin, then tokens()
        (a kind that convolves something else overrides this)."""
        return self.tokens(model, features, model.inter_conv(features), frames, spacing)

    def tokens(self, model: nn.Module, features: torch.Tensor, maps: torch.Tensor, frames: int,
               spacing: torch.Tensor | None) -> torch.Tensor:
        """features [B, in_channels, F, frames'] (the front end's), maps [B, channels, F, frames'] (after
        inter_conv), frames (those the tokens cover), spacing (metres: scalar or [B]; None: config.mic_spacing)
        -> tokens [B, N, dim]."""
        raise NotImplementedError


def conv_bn_gelu(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: int,
                 padding: int | tuple[int, int]) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
        nn.BatchNorm2d(out_channels),
        nn.GELU(),
    ]
