"""The training config: one nested dataclass, loaded from YAML with `key.sub=value` overrides.

Defaults are the seed protocol (docs/protocol.md): 3 s clips, no gain change, no noise, azimuth target,
the seed-size model. `configs/tiny.yaml` shrinks everything for a CPU demo.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from configs import ConfigError, dump_config, load_config, need
from shards.array import ArraySetup
from ssl_model.config import CLIP_SECONDS, ModelConfig, Normalize, need_finite
from ssl_model.targets import Target

MAX_BATCH = 1 << 16  # mixtures per rank per micro-step (the seed uses 64)
MAX_SAMPLES = 1 << 20  # samples of one RIR, a reservoir's slots: 65 s at 16 kHz, a million slots


@dataclass
class DataConfig:
    shards: str = "shards"  # root (local folder or URL) holding {train_split}/ and {eval_split}/ shard folders
    train_split: str = "train"
    eval_split: str = "eval"
    # Explicit shard lists (override shards/train_split): a local glob, or any WebDataset URL with braces,
    # e.g. `pipe:aws s3 cp s3://bucket/train-{000000..000029}.tar -` or `https://host/train-{000000..000029}.tar`.
    train_glob: str = ""
    eval_glob: str = ""
    num_workers: int = 2  # DataLoader workers per rank; they only read and decode shards
    shuffle_buffer: int = 64  # samples, inside each worker
    rir_reservoir: int = 256  # RIR scenes kept on the training device, per rank
    rir_refresh: int = 8  # scenes replaced in the reservoir every step
    max_rir_len: int = 12000  # samples; longer RIRs are cropped (ceil(sr * 0.7 s) = 11200 for the seed)
    verify_sha256: bool = True  # check each shard against its sidecar's sha256 where the sidecar is reachable
    max_fail_share: float = 0.2  # stop when more than this share of opened shards failed
    min_shards_for_share: int = 5  # ... once at least this many shards were opened

    def validate(self) -> None:
        need_finite(self, "data.")
        need(0 <= self.num_workers <= 256, "data.num_workers", f"must be in [0, 256], got {self.num_workers}")
        need(1 <= self.shuffle_buffer <= MAX_SAMPLES, "data.shuffle_buffer",
             f"must be in [1, {MAX_SAMPLES}], got {self.shuffle_buffer}")
        need(1 <= self.rir_reservoir <= MAX_SAMPLES, "data.rir_reservoir",
             f"must be in [1, {MAX_SAMPLES}], got {self.rir_reservoir}")
        need(0 <= self.rir_refresh <= self.rir_reservoir, "data.rir_refresh",
              f"must be in [0, data.rir_reservoir={self.rir_reservoir}], got {self.rir_refresh}")
        need(16 <= self.max_rir_len <= MAX_SAMPLES, "data.max_rir_len",
             f"must be in [16, {MAX_SAMPLES}] samples, got {self.max_rir_len}")
        need(0.0 <= self.max_fail_share <= 1.0, "data.max_fail_share",
              f"must be in [0, 1], got {self.max_fail_share}")
        need(self.min_shards_for_share >= 1, "data.min_shards_for_share",
              f"must be >= 1, got {self.min_shards_for_share}")


@dataclass
class SpeechConfig:
    source: Literal["synthetic", "shards", "folder"] = "synthetic"
    train_path: str = ""  # speech shard folder, glob or URL pattern (source=shards), or audio folder (source=folder)
    eval_path: str = ""  # same for the eval set; empty with synthetic
    clip_seconds: float = 3.0  # seed: 3 s, zero-padded or cropped
    reservoir: int = 512  # speech segments kept on the device, per rank
    refresh: int = 32  # segments replaced every step
    f0_range: tuple[float, float] = (80.0, 300.0)  # synthetic generator pitch range, Hz

    def validate(self) -> None:
        need_finite(self, "speech.")
        lo, hi = CLIP_SECONDS
        need(lo <= self.clip_seconds <= hi, "speech.clip_seconds", f"must be in [{lo:g}, {hi:g}], got {self.clip_seconds}")
        need(self.reservoir >= 2, "speech.reservoir", f"must be >= 2, got {self.reservoir}")
        need(0 <= self.refresh <= self.reservoir, "speech.refresh",
              f"must be in [0, speech.reservoir={self.reservoir}], got {self.refresh}")
        lo, hi = self.f0_range
        need(20 <= lo <= hi <= 1000, "speech.f0_range", f"must satisfy 20 <= min <= max <= 1000, got {[lo, hi]}")
        if self.source != "synthetic":
            need(bool(self.train_path), "speech.train_path", f"required with speech.source={self.source}")


@dataclass
class MixConfig:
    gain_db: tuple[float, float] = (0.0, 0.0)  # per-source gain drawn U(lo, hi) dB; seed: none
    mic_gain_db: float = 0.0  # per-mic gain mismatch: each mic scaled by U(-x, x) dB (uncalibrated real arrays)
    mic_latency: float = 0.0  # per-mic latency mismatch: each mic delayed by U(-x, x) samples (fractional)
    noise_prob: float = 0.0  # share of mixtures that get white sensor noise (independent per mic); seed: none
    snr_db: tuple[float, float] = (5.0, 30.0)  # sensor-noise SNR drawn U(lo, hi) dB
    diffuse_prob: float = 0.0  # share of mixtures that get spherically diffuse noise (training/data/noise.py)
    diffuse_snr_db: tuple[float, float] = (0.0, 30.0)  # its SNR, drawn U(lo, hi) dB
    # Shares of the diffuse noise's kinds (training.data.noise.NOISE_KINDS): pink, speech-shaped, babble.
    diffuse_kinds: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # Shares of mixtures with 0, 1, 2, ... talkers (up to the scenes' sources); empty: every source talks (seed).
    talker_probs: tuple[float, ...] = ()
    partial_prob: float = 0.0  # share of talkers that start late and/or stop early inside the clip
    # Share of mixtures kept as the seed's scene: two talkers throughout, no noise, no mic mismatch (a curriculum
    # that keeps clean two-talker accuracy while the rest teaches counts and noise).
    clean_prob: float = 0.0
    # Share of (non-clean) mixtures low-passed at a cutoff drawn U(lo, hi) Hz: recordings made at 8 kHz (telephone
    # band) and resampled to the model's rate have nothing above 4 kHz, and a model that never saw that misreads them.
    bandlimit_prob: float = 0.0
    bandlimit_hz: tuple[float, float] = (3400.0, 4000.0)
    # Share of (non-clean) talkers that are broadband noise instead of speech, power spectrum f^tilt with tilt drawn
    # U(lo, hi) (-2 brown .. 0 white): a steady broadband source is one talker, wherever it stands.
    broadband_prob: float = 0.0
    broadband_tilt: tuple[float, float] = (-2.0, 0.0)
    min_active_s: float = 0.3  # a talker counts in a clip when its speech is active at least this long
    activity_db: float = -30.0  # a frame of a talker is active when its power is within this of its loudest frame
    normalize: Normalize = "peak"

    def validate(self) -> None:
        need_finite(self, "mix.")
        need(self.gain_db[0] <= self.gain_db[1], "mix.gain_db", f"must satisfy lo <= hi, got {list(self.gain_db)}")
        need(0.0 <= self.noise_prob <= 1.0, "mix.noise_prob", f"must be in [0, 1], got {self.noise_prob}")
        need(0.0 <= self.mic_gain_db <= 20.0, "mix.mic_gain_db", f"must be in [0, 20] dB, got {self.mic_gain_db}")
        need(0.0 <= self.mic_latency <= 32.0, "mix.mic_latency", f"must be in [0, 32] samples, got {self.mic_latency}")
        for key in ("snr_db", "diffuse_snr_db"):
            lo, hi = getattr(self, key)
            need(-30.0 <= lo <= hi <= 100.0, f"mix.{key}", f"must satisfy -30 <= lo <= hi <= 100, got {[lo, hi]}")
        need(0.0 <= self.diffuse_prob <= 1.0, "mix.diffuse_prob", f"must be in [0, 1], got {self.diffuse_prob}")
        need(len(self.diffuse_kinds) == 3 and min(self.diffuse_kinds) >= 0 and sum(self.diffuse_kinds) > 0,
             "mix.diffuse_kinds", f"must be 3 shares >= 0 (pink, speech, babble) not all 0, got {list(self.diffuse_kinds)}")
        need(not self.talker_probs or (min(self.talker_probs) >= 0 and sum(self.talker_probs) > 0),
             "mix.talker_probs", f"must be shares >= 0, not all 0 (or empty), got {list(self.talker_probs)}")
        need(0.0 <= self.partial_prob <= 1.0, "mix.partial_prob", f"must be in [0, 1], got {self.partial_prob}")
        need(0.0 <= self.clean_prob <= 1.0, "mix.clean_prob", f"must be in [0, 1], got {self.clean_prob}")
        need(0.0 <= self.bandlimit_prob <= 1.0, "mix.bandlimit_prob", f"must be in [0, 1], got {self.bandlimit_prob}")
        need(500.0 <= self.bandlimit_hz[0] <= self.bandlimit_hz[1], "mix.bandlimit_hz",
             f"must satisfy 500 <= lo <= hi Hz, got {list(self.bandlimit_hz)}")
        need(0.0 <= self.broadband_prob <= 1.0, "mix.broadband_prob", f"must be in [0, 1], got {self.broadband_prob}")
        need(-3.0 <= self.broadband_tilt[0] <= self.broadband_tilt[1] <= 1.0, "mix.broadband_tilt",
             f"must satisfy -3 <= lo <= hi <= 1, got {list(self.broadband_tilt)}")
        need(0.0 <= self.min_active_s <= 10.0, "mix.min_active_s", f"must be in [0, 10] s, got {self.min_active_s}")
        need(-80.0 <= self.activity_db < 0.0, "mix.activity_db", f"must be in [-80, 0) dB, got {self.activity_db}")

    @property
    def counts_talkers(self) -> bool:
        """True when mixtures vary in talker count or activity: the model must say how many talk."""
        return bool(self.talker_probs) or self.partial_prob > 0


@dataclass
class OptimConfig:
    lr: float = 5e-4
    min_lr_ratio: float = 0.05  # cosine floor, as a share of lr
    warmup_steps: int = 500
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    step_size: int = 1000  # schedule=step (the seed's StepLR)
    gamma: float = 0.5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 5.0  # 0 disables clipping (the norm is still checked for NaN/Inf)
    accum_steps: int = 1
    label_smoothing: float = 0.0
    label_sigma_deg: float = 0.0  # > 0: soft targets, a Gaussian of this width around each angle over the classes
    exist_weight: float = 1.0  # the existence (count) term's weight against the direction term (training.objective)
    # which talker each held slot learns: ascending angle order, or the least costly permutation (training.objective)
    slot_assignment: Literal["ascending", "permutation"] = "ascending"
    track_weight: float = 0.25  # the track (frame head) term's weight (training.objective)
    # score the mean of each window's pass and its channel-swapped pass, as decoding.mirror decodes (training.objective)
    mirror_average: bool = False

    def validate(self) -> None:
        need_finite(self, "optim.")
        need(0 < self.lr <= 1, "optim.lr", f"must be in (0, 1], got {self.lr}")
        need(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        need(self.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        need(self.step_size >= 1, "optim.step_size", f"must be >= 1, got {self.step_size}")
        need(0 < self.gamma <= 1, "optim.gamma", f"must be in (0, 1], got {self.gamma}")
        need(self.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {self.weight_decay}")
        need(all(0 <= b < 1 for b in self.betas), "optim.betas", f"must be in [0, 1), got {list(self.betas)}")
        need(self.grad_clip >= 0, "optim.grad_clip", f"must be >= 0, got {self.grad_clip}")
        need(1 <= self.accum_steps <= 4096, "optim.accum_steps", f"must be in [1, 4096], got {self.accum_steps}")
        need(0 <= self.label_smoothing < 1, "optim.label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        need(self.label_sigma_deg >= 0, "optim.label_sigma_deg", f"must be >= 0, got {self.label_sigma_deg}")
        need(self.exist_weight >= 0, "optim.exist_weight", f"must be >= 0, got {self.exist_weight}")
        need(self.track_weight >= 0, "optim.track_weight", f"must be >= 0, got {self.track_weight}")


@dataclass
class EvalConfig:
    every: int = 1000  # steps between evals; 0: only at the end
    num_samples: int = 200  # mixtures in the fixed eval set (eval RIRs are reused in order if fewer)
    batch_size: int = 32
    seed: int = 1234  # the eval pairing and speech depend on this only, never on world size

    def validate(self) -> None:
        need(self.every >= 0, "eval.every", f"must be >= 0, got {self.every}")
        need(1 <= self.num_samples <= MAX_SAMPLES, "eval.num_samples", f"must be in [1, {MAX_SAMPLES}], got {self.num_samples}")
        need(1 <= self.batch_size <= MAX_BATCH, "eval.batch_size", f"must be in [1, {MAX_BATCH}], got {self.batch_size}")


@dataclass
class RunConfig:
    dir: str = "runs/default"
    steps: int = 20000  # optimizer steps; every rank runs exactly this many
    batch_size: int = 64  # mixtures per rank per micro-step
    seed: int = 0
    log_every: int = 50
    save_every: int = 1000  # Accelerate save_state every N steps (and at the end)
    keep_states: int = 2  # newest states kept on disk
    # Under `accelerate launch`, accelerate's precision (its flag, else its config file, else "no") is used and
    # this key is ignored; started without it (python, torchrun): auto = bf16 on CUDA, fp32 on the CPU.
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    log_with: str = "tensorboard"  # comma-separated accelerate trackers (tensorboard, wandb, mlflow, ...), or none
    compile: bool = False  # torch.compile the model (GPU)
    max_skip_share: float = 0.1  # stop when more than this share of steps had NaN/Inf (after 20 steps)
    progress: bool = True  # tqdm bar on the main process
    init_from: str = ""  # a new run's first weights: a safetensors file or a folder holding one (training.warm_start)
    # Tensors of init_from that may be copied in part when their shape differs (names or dotted prefixes, e.g.
    # [cls_tokens, pos_embedding] for more slots); any other shape difference is refused.
    init_partial: tuple[str, ...] = ()
    # Tensors of init_from left at their fresh initialization (names or dotted prefixes): a new front end in front
    # of a trained encoder (e.g. [inter_conv, srp_mask, patch_embed]).
    init_fresh: tuple[str, ...] = ()

    def validate(self) -> None:
        need_finite(self, "run.")
        need(1 <= self.steps <= 10**9, "run.steps", f"must be in [1, 1e9], got {self.steps}")
        need(1 <= self.batch_size <= MAX_BATCH, "run.batch_size", f"must be in [1, {MAX_BATCH}], got {self.batch_size}")
        need(self.seed >= 0, "run.seed", f"must be >= 0, got {self.seed}")
        need(self.log_every >= 1, "run.log_every", f"must be >= 1, got {self.log_every}")
        need(self.save_every >= 1, "run.save_every", f"must be >= 1, got {self.save_every}")
        need(self.keep_states >= 1, "run.keep_states", f"must be >= 1, got {self.keep_states}")
        need(0 <= self.max_skip_share <= 1, "run.max_skip_share", f"must be in [0, 1], got {self.max_skip_share}")
        need(all(entry.strip(".") for entry in self.init_partial), "run.init_partial",
             f"must be tensor names or dotted prefixes, got {list(self.init_partial)}")
        need(all(entry.strip(".") for entry in self.init_fresh), "run.init_fresh",
             f"must be tensor names or dotted prefixes, got {list(self.init_fresh)}")


@dataclass
class TrainConfig:
    target: Target = "azimuth"  # seed: azimuth; lateral is the identifiable one
    sr: int = 16000
    data: DataConfig = field(default_factory=DataConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def array(self) -> ArraySetup:
        """The run's array record (shards.array): the model's, whose sample rate validate() holds equal to `sr`.
        The shards must match it (training.data.sources.check_setup); the mixing reads it (MixRecipe.of)."""
        return self.model.array

    @property
    def clip_samples(self) -> int:
        return int(round(self.speech.clip_seconds * self.sr))

    def validate(self) -> None:
        need(self.sr >= 1000, "sr", f"must be >= 1000 Hz, got {self.sr}")
        need(self.model.sr == self.sr, "model.sr", f"must equal sr ({self.sr} Hz), got {self.model.sr}")
        self.model.check_clip(self.clip_samples, "speech.clip_seconds")  # the bounds a stored model's window meets
        if self.optim.mirror_average:  # the swapped pass's slots pair by the ascending order and an ordinal count
            need(self.model.count_head, "optim.mirror_average", "needs model.count_head: true")
            need(self.optim.slot_assignment == "ascending", "optim.mirror_average",
                 f"pairs the swapped pass's slots in ascending order; optim.slot_assignment is "
                 f"{self.optim.slot_assignment}")


def load_train_config(path: str | Path | None = None, overrides=()) -> TrainConfig:
    """Defaults <- YAML <- overrides; raises a one-line ConfigError naming the key."""
    return load_config(TrainConfig, path, overrides)


# ----------------------------------------------------------------------------------------------
# Which shell commands a run may start (issue 33): only those the user typed on this command line.
#
# A `pipe:CMD` location (WebDataset: the shard is CMD's stdout) runs CMD in a shell. A config file, a run folder's
# config.yaml, a manifest or a URL list can come from anyone, so a `pipe:` value read from any of them is refused in
# one line, unless the user typed that key on the command line (`'data.train_glob=pipe:...'`) or passed
# `--allow-commands` for this one run. Nothing derives a new command from a typed one (shards.files reads no
# sidecar or manifest for a `pipe:` shard).

# Every config key whose value is read as a path or URL by the data path.
LOCATION_KEYS = ("data.shards", "data.train_glob", "data.eval_glob", "speech.train_path", "speech.eval_path")
ALLOW_FLAG = "--allow-commands"


def is_command(value: object) -> bool:
    """A location that would run a shell command."""
    return isinstance(value, str) and value.strip().startswith("pipe:")


def typed_keys(overrides: Iterable[str]) -> set[str]:
    """`key=value` overrides typed on the command line -> their keys."""
    return {item.partition("=")[0].strip() for item in overrides if "=" in item}


def key_value(cfg, key: str) -> object:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def check_commands(cfg, typed: set[str], allowed: bool, source: str, keys: Iterable[str] = LOCATION_KEYS) -> None:
    """ConfigError naming the first of `keys` whose `pipe:` command came from `source` (a config file or run
    folder) rather than from this command line, unless `allowed` (--allow-commands)."""
    if allowed:
        return
    for key in keys:
        value = key_value(cfg, key)
        if is_command(value) and key not in typed:
            shown = value if len(value) <= 80 else value[:77] + "..."
            raise ConfigError(f"{key}={shown!r} comes from {source} and is a shell command (pipe:); a command runs "
                              f"only when typed on the command line ('{key}=pipe:...') or with {ALLOW_FLAG} for "
                              f"this run")


__all__ = ["TrainConfig", "DataConfig", "SpeechConfig", "MixConfig", "OptimConfig", "EvalConfig",
           "RunConfig", "load_train_config", "dump_config", "ConfigError", "check_commands", "typed_keys",
           "ALLOW_FLAG"]
