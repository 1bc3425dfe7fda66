"""tokens=bands: the steered response summed per frequency band, weighted by masks a small conv computes on the bands.

The `srp` kind runs its mask convs on every bin (256 bins x every frame) and weights each bin: 44% of a training
step. Here the per-bin steered response is summed within `bands` bands first (one matrix product per frame, the
SRP step of SRP-DNN and of SALSA-style features), and the convs that choose which bands and frames to trust run on
the band maps, bins / bands times smaller. The direct-path template projection is exact per bin; only the learned
weighting is coarser (one weight per band instead of per bin).
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ssl_model.tokens.srp import SrpTokens, steer_for


def band_steered_response(ipd: torch.Tensor, steer: torch.Tensor, bands: int) -> torch.Tensor:
    """ipd (cos, sin) [B, 2, F, T], steer [2F, K] or [B, 2F, K] (features.steering) -> [B, bands, T, K]: per band and
    frame the mean over its bins of cos(ipd + 2 pi f tau_k), 1 where every bin agrees with direction k."""
    bins = ipd.shape[2]
    x = rearrange(ipd, "b c (n j) t -> b t n (c j)", n=bands)
    if steer.dim() == 2:
        s = rearrange(steer, "(c n j) k -> n (c j) k", c=2, n=bands)
        response = torch.einsum("btnx,nxk->bntk", x, s)
    else:
        s = rearrange(steer, "b (c n j) k -> b n (c j) k", c=2, n=bands)
        response = torch.einsum("btnx,bnxk->bntk", x, s)
    return response * (bands / bins)


def band_maps(log_power: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """log power [B, F, T], band response [B, bands, T, K] -> [B, 3, bands, T]: per band and frame its mean log
    power, how well its best direction explains it (the response's peak) and its mean response."""
    bands = response.shape[1]
    power = rearrange(log_power, "b (n j) t -> b n j t", n=bands).mean(2)
    return torch.stack((power, response.amax(-1), response.mean(-1)), dim=1)


class BandTokens(SrpTokens):
    """features (cos, sin, log power) [B, 3, F, T] -> [B, T / frames_per_token, dim]: band steered responses
    [B, bands, T, K] (band_steered_response) -> band maps -> inter_conv -> srp_masks sigmoid masks [B, M, bands, T]
    -> spectra [B, M, T, K] (the masked mean over bands) -> one token per frames_per_token frames of them. The
    layers are the `srp` kind's (SrpTokens.build); only what the masks and the response are computed on differs."""

    def encode(self, model: nn.Module, features: torch.Tensor, frames: int, spacing: torch.Tensor | None
               ) -> torch.Tensor:
        config = model.config
        features = features[..., :frames].float()
        steer = steer_for(model, spacing)
        response = band_steered_response(features[:, :2], steer, config.bands)  # [b, bands, t, k]
        masks = model.srp_mask(model.inter_conv(band_maps(features[:, 2], response)))  # [b, m, bands, t]
        spectra = torch.einsum("bmnt,bntk->bmtk", masks.float(), response) / config.bands
        return model.patch_embed(spectra)
