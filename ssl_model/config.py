"""Model config: a dataclass whose defaults are the seed's sizes (docs/protocol.md), plus presets.

Its checks (`ModelConfig.validate`, `check_clip`) are the one set of bounds a model must meet, whether it comes
from a training config or from a weights file's stored spec (ssl_model.export).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Literal

from configs import ConfigError, need
from shards.array import SOUND_SPEED, ArraySetup

Normalize = Literal["peak", "rms", "none"]  # ssl_model.features.normalize_wave modes
MAX_SR = 192_000  # Hz, the highest rate simulate renders
CLIP_SECONDS = (0.1, 60.0)  # the length of a training clip, so of the window a trained model scores
MAX_MIC_SPACING = 2.0  # m: two mics, each at most 1 m from the array centre (simulate's bound)
SOUND_SPEED_RANGE = (200.0, 2000.0)  # m/s, as simulate accepts
# (lowest, highest) of each integer size. The highest are far beyond any model of this family (the seed: 512 wide,
# 8 deep, 36 classes) and keep one field from asking for an absurd tensor (num_classes=1e9); a weights file's own
# tensors bound the whole model's size (ssl_model.export.check_shapes).
SIZES = {
    "n_fft": (4, 16384), "srp_angles": (2, 3601), "srp_masks": (1, 64), "bands": (1, 4096), "patch_size": (1, 16),
    "frames_per_token": (1, 256), "dim": (1, 8192), "depth": (1, 128), "heads": (1, 128), "dim_head": (1, 1024),
    "ff_mult": (1, 16), "conv_expansion": (1, 16), "conv_kernel": (1, 1023), "max_rel_pos": (1, 65536),
    "max_time_patches": (1, 65536), "num_classes": (2, 3600), "num_slots": (1, 16), "frame_step_tokens": (1, 1024),
}
MAX_CHANNELS, MAX_CONVS, MAX_KERNEL = 4096, 16, 63  # inter_channels / patch_channels entries; inter_kernel


def need_finite(section, prefix: str = "") -> None:
    """Every float field (or tuple of floats) of a config section is finite: NaN and inf never work."""
    for f in fields(section):
        value = getattr(section, f.name)
        values = value if isinstance(value, tuple) else (value,)
        need(all(math.isfinite(v) for v in values if isinstance(v, float)), f"{prefix}{f.name}",
             f"must be finite, got {value}")


@dataclass
class ModelConfig:
    sr: int = 16000
    n_fft: int = 512
    hop: int = 160
    trainable_stft: bool = True  # the seed trains its Hann-initialized DFT kernels
    # Input maps per time-frequency bin: cos/sin of the inter-mic phase difference (the seed's), optionally with
    # the log power of both mics (standardized per input), which tells the model where the speech energy is.
    features: Literal["ipd", "ipd_logpower"] = "ipd"
    inter_channels: tuple[int, ...] = (4, 8)  # convs on the feature image (may be empty unless tokens=patches)
    inter_kernel: tuple[int, int] = (3, 3)  # their (frequency, time) kernel; odd sizes ('same' padding)
    # Tokens: `patches` (the seed's): patch_size x patch_size / patch_size convs, one token per
    # patch_size^len(patch_channels) bins x frames; `frames`: one token per frames_per_token frames of the whole
    # band (all frequency bins, embedded by one linear map), so attention sees every bin's phase at 10 ms steps.
    # `srp`: a learned time-frequency weighting of the steered response (SRP-PHAT) over `srp_angles` lateral
    # angles, computed per frame from the phase differences and `srp_masks` masks (a 1x1 conv after inter_conv),
    # then frames_per_token frames of those spectra per token. The steering needs the array: mic_spacing, sound_speed.
    # `bands`: the steered response summed over `bands` frequency bands per frame, weighted by srp_masks masks that
    # inter_conv computes on band maps (log power, peak and mean response per band), not on every bin: ~7x cheaper
    # than `srp` (ssl_model/tokens/bands.py). Needs features=ipd_logpower.
    tokens: Literal["patches", "frames", "srp", "bands"] = "patches"
    bands: int = 32  # tokens=bands: equal frequency bands (must divide n_fft / 2)
    patch_channels: tuple[int, ...] = (32, 128, 512)  # tokens=patches
    patch_size: int = 4
    frames_per_token: int = 4  # tokens=frames or srp
    srp_angles: int = 181  # tokens=srp: steering directions, evenly spaced over 0..180 degrees
    srp_masks: int = 4  # tokens=srp: time-frequency weightings, each giving one steered response
    mic_spacing: float = 0.1  # tokens=srp: metres from mic 0 to mic 1
    sound_speed: float = SOUND_SPEED  # tokens=srp (shards.array: the one record of it)
    dim: int = 512  # with tokens=patches, must equal patch_channels[-1]
    depth: int = 8
    heads: int = 8
    dim_head: int = 64
    ff_mult: int = 4
    conv_expansion: int = 2
    conv_kernel: int = 31
    max_rel_pos: int = 512  # relative distances are clamped to +-max_rel_pos: Embedding(2*max+1, dim_head)
    max_time_patches: int = 128  # rows of the learned absolute position table = num_slots + this * freq patches
    num_classes: int = 36
    num_slots: int = 2
    # Real recordings: `count_head` gives each slot an existence logit (slot i exists when more than i talkers
    # are active; slots are filled in ascending angle order), so 0..num_slots talkers can be reported;
    # `frame_head` adds a track: per step of frame_step_tokens tokens, an independent activity logit per
    # direction class (a spatial spectrum over time); `spacing_input` steers the SRP tokens for the mic spacing
    # given with each input (tokens=srp) and tells the slots that spacing, so one model serves a range of arrays
    # (mic_spacing_range, the range it was trained on; mic_spacing stays the default).
    count_head: bool = False
    frame_head: bool = False
    frame_step_tokens: int = 5
    spacing_input: bool = False
    mic_spacing_range: tuple[float, float] = (0.1, 0.1)
    dropout: float = 0.0  # feed-forward, attention and conv-module dropout
    ipd_eps: float = 1e-8  # |X0 X1*| floor when normalizing the cross-spectrum to (cos, sin)

    def validate(self) -> None:
        need_finite(self)
        self._check_signal()
        self._check_sizes()
        self._check_layout()
        self._check_array()

    def _check_signal(self) -> None:
        need(1000 <= self.sr <= MAX_SR, "sr", f"must be in [1000, {MAX_SR}] Hz, got {self.sr}")
        need(self.n_fft % 2 == 0, "n_fft", f"must be an even number, got {self.n_fft}")
        need(0 < self.hop <= self.n_fft, "hop", f"must be in (0, n_fft={self.n_fft}], got {self.hop}")
        need(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        need(0.0 < self.ipd_eps <= 1.0, "ipd_eps", f"must be in (0, 1], got {self.ipd_eps}")

    def _check_sizes(self) -> None:
        for key, (lo, hi) in SIZES.items():
            need(lo <= getattr(self, key) <= hi, key, f"must be in [{lo}, {hi}], got {getattr(self, key)}")
        for key in ("inter_channels", "patch_channels"):
            channels = getattr(self, key)
            need(len(channels) <= MAX_CONVS and all(0 < c <= MAX_CHANNELS for c in channels), key,
                 f"must be at most {MAX_CONVS} ints in [1, {MAX_CHANNELS}], got {list(channels)}")
        need(all(1 <= k <= MAX_KERNEL and k % 2 == 1 for k in self.inter_kernel), "inter_kernel",
             f"must be odd sizes in [1, {MAX_KERNEL}], got {list(self.inter_kernel)}")

    def _check_layout(self) -> None:
        need(self.tokens != "patches" or len(self.inter_channels) >= 1, "inter_channels",
             f"must be a non-empty list with tokens=patches, got {list(self.inter_channels)}")
        if self.tokens == "patches":
            need(len(self.patch_channels) >= 1, "patch_channels",
                 f"must be a non-empty list of positive ints, got {list(self.patch_channels)}")
            need(self.patch_channels[-1] == self.dim, "dim",
                 f"must equal patch_channels[-1] ({self.patch_channels[-1]}), got {self.dim}")
            freq_bins = self.n_fft // 2
            need(freq_bins // self.patch_size ** len(self.patch_channels) >= 1, "patch_channels",
                 f"{len(self.patch_channels)} patch convs of size {self.patch_size} leave no frequency patch "
                 f"from {freq_bins} bins (n_fft={self.n_fft})")
        need(not self.spacing_input or self.tokens in ("srp", "bands"), "spacing_input",
             f"needs tokens=srp or bands (the steered response is what the spacing changes), got tokens={self.tokens}")
        if self.tokens == "bands":
            need((self.n_fft // 2) % self.bands == 0, "bands",
                 f"must divide n_fft / 2 = {self.n_fft // 2} bins into equal bands, got {self.bands}")
            need(self.features == "ipd_logpower", "features",
                 f"tokens=bands reads the log power: needs features=ipd_logpower, got {self.features}")

    def _check_array(self) -> None:
        need(0.0 < self.mic_spacing <= MAX_MIC_SPACING, "mic_spacing",
             f"must be in (0, {MAX_MIC_SPACING:g}] m, got {self.mic_spacing}")
        lo, hi = SOUND_SPEED_RANGE
        need(lo <= self.sound_speed <= hi, "sound_speed", f"must be in [{lo:g}, {hi:g}] m/s, got {self.sound_speed}")
        lo, hi = self.mic_spacing_range
        need(0.0 < lo <= self.mic_spacing <= hi <= 1.0 if self.spacing_input else 0.0 < lo <= hi <= 1.0,
             "mic_spacing_range", f"must satisfy 0 < lo <= mic_spacing ({self.mic_spacing}) <= hi <= 1 m, "
             f"got {[lo, hi]}")

    def check_clip(self, clip_samples: int, key: str) -> None:
        """A window of `clip_samples` samples at `sr` (a training clip, a stored model's window) fits this model:
        CLIP_SECONDS long, at least one time patch, no more than the position table holds. ConfigError naming
        `key` otherwise."""
        lo, hi = (round(seconds * self.sr) for seconds in CLIP_SECONDS)
        need(lo <= clip_samples <= hi, key, f"must be {CLIP_SECONDS[0]:g} to {CLIP_SECONDS[1]:g} s ({lo} to {hi} "
             f"samples at {self.sr} Hz), got {clip_samples} samples")
        need(clip_samples >= self.min_samples(), key, f"{clip_samples} samples are shorter than the model's minimum "
             f"input ({self.min_samples()} samples at {self.sr} Hz)")
        patches = self.time_patches(clip_samples)
        need(patches <= self.max_time_patches, key, f"{clip_samples} samples make {patches} time patches, more than "
             f"the model's position table holds (max_time_patches={self.max_time_patches})")

    @property
    def array(self) -> ArraySetup:
        """The array this model is built for, as shards' one record of it: sr, mic_spacing (the default spacing),
        sound_speed (its steering), num_sources = num_slots (the most talkers it reports)."""
        return ArraySetup(self.sr, self.mic_spacing, self.sound_speed, self.num_slots)

    @property
    def in_channels(self) -> int:
        """Feature maps per time-frequency bin."""
        return 2 if self.features == "ipd" else 3

    @property
    def freq_patches(self) -> int:
        if self.tokens != "patches":
            return 1
        return (self.n_fft // 2) // self.patch_size ** len(self.patch_channels)

    @property
    def frames_per_patch(self) -> int:
        """STFT frames pooled into one token along time."""
        return self.patch_size ** len(self.patch_channels) if self.tokens == "patches" else self.frames_per_token

    @property
    def max_tokens(self) -> int:
        return self.num_slots + self.max_time_patches * self.freq_patches

    def time_patches(self, num_samples: int) -> int:
        """Number of time patches the model makes of `num_samples` samples (0 means too short)."""
        if num_samples < self.n_fft:
            return 0
        frames = (num_samples - self.n_fft) // self.hop + 1
        if self.tokens != "patches":
            return frames // self.frames_per_token
        for _ in self.patch_channels:
            frames //= self.patch_size
        return frames

    def min_samples(self) -> int:
        """Shortest input that yields one time patch."""
        return self.n_fft + (self.frames_per_patch - 1) * self.hop


PRESETS: dict[str, ModelConfig] = {
    "seed": ModelConfig(),
    # Small enough to train on a laptop CPU in minutes; same structure as the seed. (Not configs/tiny.yaml's model.)
    "micro": ModelConfig(
        inter_channels=(4, 8),
        patch_channels=(16, 32, 64),
        dim=64,
        depth=2,
        heads=4,
        dim_head=16,
        ff_mult=2,
        conv_expansion=2,
        conv_kernel=7,
        max_rel_pos=64,
    ),
    # The shipped model's layout (ssl_model/pretrained): learned-mask steered responses, frame tokens.
    "srp": ModelConfig(
        trainable_stft=False,
        features="ipd_logpower",
        inter_channels=(8, 8),
        inter_kernel=(3, 7),  # +-3 frames of context for the masks (onsets)
        tokens="srp",
        frames_per_token=4,
        srp_angles=181,
        srp_masks=4,
        dim=128,
        depth=4,
        heads=4,
        dim_head=32,
        ff_mult=4,
        conv_kernel=15,
        max_rel_pos=128,
        max_time_patches=1024,
    ),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A copy of PRESETS[name] with field overrides, validated."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; accepted: {', '.join(sorted(PRESETS))}")
    config = replace(PRESETS[name], **overrides)
    config.validate()
    return config
