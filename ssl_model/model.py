"""SSLModel: two-mic waveform -> logits for sorted direction slots (the seed's module tree, docs/protocol.md), and
optionally per-slot existence (how many talk) and a spatial track over time (who talks when)."""
from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange, repeat
from torch import nn

from ssl_model.config import ModelConfig, preset
from ssl_model.conformer import Conformer
from ssl_model.features import STFT, ipd_cos_sin, log_power
from ssl_model.tokens import TOKEN_KINDS
from ssl_model.tokens.kind import conv_bn_gelu


class SSLOutput(NamedTuple):
    """logits [B, S, C] (direction per slot, slots in ascending angle order); exist [B, S] existence logits of the
    slots (count_head; None otherwise); track [B, steps, C] per-step activity logits per direction class
    (frame_head; None otherwise)."""
    logits: torch.Tensor
    exist: torch.Tensor | None
    track: torch.Tensor | None


# The spacing input's scale: spacing_offset maps this range (the arrays the spacing-input models were built for,
# 6..16 cm) onto -1..1, so the embedding sees inputs of order one.
SPACING_SCALE_M = (0.06, 0.16)


def spacing_offset(spacing: torch.Tensor) -> torch.Tensor:
    """spacing [B] (metres) -> [B]: centred on SPACING_SCALE_M's midpoint, in units of its half-width."""
    lo, hi = SPACING_SCALE_M
    return (spacing - (lo + hi) / 2) / ((hi - lo) / 2)


class SSLModel(nn.Module):
    """wave [batch, 2, samples] (, mic_spacing [batch] or a float, in metres) -> direction logits
    [batch, num_slots, num_classes]; `outputs()` (or forward(heads=True)) gives every head as an SSLOutput.

    Front end: conv STFT -> IPD (cos, sin) [+ log power with features=ipd_logpower], DC bin dropped -> inter_conv.
    Tokens, by config.tokens (one module per kind in ssl_model.tokens):
    - `patches` (the seed's): the patch_embed convs cut the maps into frequency x time patches, one token each;
    - `frames`: one token per frames_per_token frames, a linear map of every bin's features (the whole band);
    - `srp`: a 1x1 conv gives srp_masks time-frequency masks, each weighting the per-bin steered response of the
      IPD over srp_angles directions (steered for config.mic_spacing, or with spacing_input for the input's
      spacing); one token per frames_per_token frames of those spatial spectra.
    Then `num_slots` learned CLS tokens in front (with spacing_input, plus an embedding of the spacing), learned
    absolute positions -> Conformer -> the CLS tokens through a LayerNorm and one Linear direction head they share.
    Optional heads: count_head, an existence logit per slot; frame_head, per step (frame_step_tokens time tokens
    pooled) activity logits over the direction classes (the track; no steps for an input shorter than one step).
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        config = config if config is not None else ModelConfig()
        config.validate()
        self.config = config
        self.stft = STFT(config.n_fft, config.hop, trainable=config.trainable_stft)

        layers: list[nn.Module] = []
        channels = config.in_channels
        kf, kt = config.inter_kernel
        for out_channels in config.inter_channels:
            layers += conv_bn_gelu(channels, out_channels, (kf, kt), 1, (kf // 2, kt // 2))
            channels = out_channels
        self.inter_conv = nn.Sequential(*layers)

        self.token_kind = TOKEN_KINDS[config.tokens]()
        self.token_kind.build(self, config, channels)

        self.cls_tokens = nn.Parameter(torch.randn(config.num_slots, config.dim) * 0.02)
        self.pos_embedding = nn.Parameter(torch.randn(config.max_tokens, config.dim) * 0.02)
        self.backbone = Conformer(
            config.dim,
            config.depth,
            dim_head=config.dim_head,
            heads=config.heads,
            ff_mult=config.ff_mult,
            conv_expansion=config.conv_expansion,
            conv_kernel=config.conv_kernel,
            dropout=config.dropout,
            max_rel_pos=config.max_rel_pos,
        )
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.num_classes)
        if config.spacing_input:
            self.spacing_embed = nn.Linear(1, config.dim)
        if config.count_head:
            self.exist_head = nn.Linear(config.dim, 1)
        if config.frame_head:
            self.track_pool = nn.AvgPool1d(config.frame_step_tokens, config.frame_step_tokens)
            self.track_head = nn.Sequential(nn.LayerNorm(config.dim), nn.Linear(config.dim, config.num_classes))

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "SSLModel":
        """SSLModel.from_preset('micro', dropout=0.1): a preset from ssl_model.config.PRESETS with overrides."""
        return cls(preset(name, **overrides))

    def checked_time_patches(self, num_samples: int) -> int:
        """Number of time patches for `num_samples`; raises ValueError outside the learned position table."""
        config = self.config
        patches = config.time_patches(num_samples)
        if patches < 1:
            raise ValueError(
                f"input of {num_samples} samples is too short: the model needs at least {config.min_samples()} "
                f"samples ({config.min_samples() / config.sr:.3f} s at {config.sr} Hz) for one time patch"
            )
        if patches > config.max_time_patches:
            longest = config.n_fft + (config.max_time_patches * config.frames_per_patch) * config.hop
            raise ValueError(
                f"input of {num_samples} samples makes {patches} time patches, beyond the learned position table "
                f"(max_time_patches={config.max_time_patches}, about {longest / config.sr:.1f} s); "
                f"crop or window the input, or build the model with a larger max_time_patches"
            )
        return patches

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """wave [batch, 2, samples] -> IPD (cos, sin) [, log power] [batch, in_channels, n_fft/2, frames]."""
        real, imag = self.stft(wave)
        ipd = ipd_cos_sin(real, imag, eps=self.config.ipd_eps)
        if self.config.features == "ipd":
            return ipd
        return torch.cat((ipd, log_power(real, imag)), dim=1)

    def spacing_of(self, wave: torch.Tensor, mic_spacing: torch.Tensor | float | None) -> torch.Tensor:
        """-> spacing [B] in metres on wave's device (config.mic_spacing when None)."""
        spacing = self.config.mic_spacing if mic_spacing is None else mic_spacing
        spacing = torch.as_tensor(spacing, dtype=torch.float32, device=wave.device)
        return spacing.expand(wave.shape[0]) if spacing.dim() == 0 else spacing

    def outputs(self, wave: torch.Tensor, mic_spacing: torch.Tensor | float | None = None) -> SSLOutput:
        """wave [B, 2, T], mic_spacing [B] or float (metres; spacing_input models) -> SSLOutput."""
        if wave.dim() != 3 or wave.shape[1] != 2:
            raise ValueError(f"expected wave [batch, 2, samples], got shape {list(wave.shape)}")
        config = self.config
        patches = self.checked_time_patches(wave.shape[-1])
        features = self.features(wave).to(wave.dtype)
        spacing = None
        if config.spacing_input:  # one steering for a scalar spacing (a recording), one per input for [B]
            one = mic_spacing is None or torch.as_tensor(mic_spacing).dim() == 0
            spacing = self.spacing_of(wave, mic_spacing)
            spacing = spacing[0] if one else spacing
        tokens = self.token_kind.encode(self, features, patches * config.frames_per_token, spacing)
        cls = repeat(self.cls_tokens, "s d -> b s d", b=tokens.shape[0]).to(tokens.dtype)
        if config.spacing_input:
            offset = spacing_offset(self.spacing_of(wave, mic_spacing))
            cls = cls + self.spacing_embed(offset[:, None].to(cls.dtype))[:, None, :]
        x = torch.cat((cls, tokens), dim=1)
        x = x + self.pos_embedding[: x.shape[1]].to(x.dtype)
        x = self.backbone(x)
        slots = self.norm(x[:, : config.num_slots])
        exist = self.exist_head(slots)[..., 0] if config.count_head else None
        track = None
        if config.frame_head:
            steps = rearrange(x[:, config.num_slots:], "b t d -> b d t")
            if steps.shape[-1] >= config.frame_step_tokens:
                track = self.track_head(rearrange(self.track_pool(steps), "b d t -> b t d"))
            else:
                track = x.new_zeros(x.shape[0], 0, config.num_classes)
        return SSLOutput(self.head(slots), exist, track)

    def forward(self, wave: torch.Tensor, mic_spacing: torch.Tensor | float | None = None,
                heads: bool = False) -> torch.Tensor | SSLOutput:
        """wave [B, 2, T] (, mic_spacing [B] or float) -> direction logits [B, num_slots, num_classes]; with
        heads=True every head (SSLOutput), through forward so that a DDP wrapper synchronizes all of them."""
        out = self.outputs(wave, mic_spacing)
        return out if heads else out.logits
