"""tokens=srp: learned time-frequency weightings of the steered response (SRP-PHAT) over srp_angles directions."""
from __future__ import annotations

import torch
from einops.layers.torch import Rearrange
from torch import nn

from ssl_model.config import ModelConfig
from ssl_model.features import steered_response, steering
from ssl_model.tokens.kind import TokenKind


def steer_for(model: nn.Module, spacing: torch.Tensor | None) -> torch.Tensor:
    """-> the steering (features.steering) for the given spacing: [2F, angles] for a scalar, [B, 2F, angles] for [B];
    the model's own buffer (config.mic_spacing) when None."""
    config = model.config
    if spacing is None:
        return model.steer
    return steering(config.n_fft, config.sr, config.srp_angles, spacing, config.sound_speed)


class SrpTokens(TokenKind):
    """A 1x1 conv turns the maps into srp_masks time-frequency weights (sigmoid); each weights the per-bin steered
    response of the IPD (features.steered_response), giving srp_masks spatial spectra per frame; one token per
    frames_per_token frames of them: [B, T / frames_per_token, dim]. Steered for config.mic_spacing, or for the
    spacing given (a scalar: one steering; [B]: one per input)."""

    def build(self, model: nn.Module, config: ModelConfig, channels: int) -> None:
        model.srp_mask = nn.Sequential(nn.Conv2d(channels, config.srp_masks, 1), nn.Sigmoid())
        model.register_buffer("steer", steering(config.n_fft, config.sr, config.srp_angles, config.mic_spacing,
                                                config.sound_speed), persistent=False)
        model.patch_embed = nn.Sequential(
            Rearrange("b m (t k) a -> b t (k m a)", k=config.frames_per_token),
            nn.Linear(config.frames_per_token * config.srp_masks * config.srp_angles, config.dim),
            nn.LayerNorm(config.dim),
        )

    def tokens(self, model: nn.Module, features: torch.Tensor, maps: torch.Tensor, frames: int,
               spacing: torch.Tensor | None) -> torch.Tensor:
        config = model.config
        masks = model.srp_mask(maps).float()
        steer = steer_for(model, spacing)
        spectra = steered_response(features[:, :2].float(), masks, steer)  # [b, masks, frames, angles]
        return model.patch_embed(spectra[:, :, :frames].to(maps.dtype))
