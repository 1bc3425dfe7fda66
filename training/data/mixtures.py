"""One builder of training and eval mixtures: talkers that come and go, noise, imperfect arrays.

From dry speech, RIRs and their angles, on whatever device the inputs live on (fp32, outside autocast):
0. which mixtures stay clean (mix.clean_prob): two talkers speaking throughout, no noise, a matched array -- the
   seed's two-talker scene kept in every batch, so a model learning noise and counts keeps its clean accuracy;
1. how many talkers speak (mix.talker_probs over 0..S), which of them are steady broadband noise instead of speech
   (mix.broadband_prob), and when (mix.partial_prob: a late start and/or an early stop, raised-cosine edges), applied
   to the dry sources so that reverberation tails continue naturally;
2. which of them count: a talker whose speech is active (frame power within mix.activity_db of its loudest frame)
   for at least mix.min_active_s;
3. speech * RIR (one batched rfft), per-source gains, sum; spherically diffuse noise (training.data.noise) at a drawn
   SNR; per-mic gain and fractional latency mismatch (the converters: they act on everything acoustic); white
   sensor noise, independent per mic; for a share (mix.bandlimit_prob), a low-pass as an 8 kHz recording has;
   level normalization.
A mixture without talkers always gets sensor noise, so "nobody talks" is never digital silence.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ssl_model.features import lowpass, normalize_wave
from training.config import MixConfig, TrainConfig
from training.data.mixing import activity_envelope, add_at_snr, convolve_mix, fractional_delay, frame_activity
from training.data.noise import broadband_sources, diffuse_noise


@dataclass
class Mixtures:
    """wave [B, M, T]; angles [B, S]: the counted talkers' target angles ascending, NaN from `count` on;
    count long [B]; talker_angles [B, S] and talker_activity bool [B, S, T // hop]: every source, scene order
    (activity per `hop` samples); spacing [B]: mic 0 to mic 1 in metres."""
    wave: torch.Tensor
    angles: torch.Tensor
    count: torch.Tensor
    talker_angles: torch.Tensor
    talker_activity: torch.Tensor
    spacing: torch.Tensor

    def to(self, device: torch.device | str) -> "Mixtures":
        return Mixtures(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.wave.shape[0]


def uniform(lo: float, hi: float, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """-> U(lo, hi) [shape] drawn from `generator` on its device."""
    return lo + (hi - lo) * torch.rand(shape, generator=generator, device=generator.device)


def draw_counts(batch: int, sources: int, probs: tuple[float, ...], generator: torch.Generator) -> torch.Tensor:
    """-> talkers per mixture long [B]: drawn from the shares `probs` of 0, 1, 2, ... talkers (cut at `sources`);
    empty `probs`: every source talks."""
    if not probs:
        return torch.full((batch,), sources, dtype=torch.long, device=generator.device)
    shares = torch.tensor(probs[: sources + 1], dtype=torch.float32, device=generator.device)
    if shares.sum() <= 0:
        raise ValueError(f"mix.talker_probs {list(probs)} gives no weight to 0..{sources} talkers")
    return torch.multinomial(shares / shares.sum(), batch, replacement=True, generator=generator)


def draw_activity(count: torch.Tensor, sources: int, T: int, partial_prob: float, shortest: int,
                  generator: torch.Generator, steady: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """count [B] -> (onset, offset) [B, S] in samples: the first `count` sources talk, over the whole clip or, with
    probability partial_prob, over a random stretch of at least `shortest` samples; the others never. Rows where
    `steady` [B] (bool) is set talk over the whole clip."""
    B = count.shape[0]
    talks = torch.arange(sources, device=count.device)[None, :] < count[:, None]
    partial = torch.rand(B, sources, generator=generator, device=generator.device) < partial_prob
    if steady is not None:
        partial = partial & ~steady[:, None]
    length = uniform(min(shortest, T), T, (B, sources), generator).round().long()
    onset = (torch.rand(B, sources, generator=generator, device=generator.device) * (T - length + 1)).long()
    onset = torch.where(partial, onset, torch.zeros_like(onset))
    offset = torch.where(partial, onset + length, torch.full_like(onset, T))
    return onset * talks, offset * talks


def sorted_counted(talker_angles: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """talker_angles [B, S], counted bool [B, S] -> [B, S]: the counted angles ascending, then NaN."""
    key = torch.where(counted, talker_angles.float(), torch.full_like(talker_angles.float(), float("inf")))
    ordered = key.sort(dim=-1).values
    return torch.where(torch.isfinite(ordered), ordered, torch.full_like(ordered, float("nan")))


@dataclass(frozen=True)
class MixRecipe:
    """How a batch of scenes is mixed: mix (the run's MixConfig), sr (Hz), hop (samples per activity frame),
    sound_speed (m/s, for the diffuse noise's coherence)."""
    mix: MixConfig
    sr: int
    hop: int
    sound_speed: float

    @classmethod
    def of(cls, cfg: TrainConfig, mix: MixConfig | None = None) -> MixRecipe:
        """A run's recipe: its mix section (or `mix`), its array record's sample rate and speed of sound, the model's
        hop."""
        return cls(cfg.mix if mix is None else mix, cfg.array.sr, cfg.model.hop, cfg.array.sound_speed)


def without(snr_db: torch.Tensor, use: torch.Tensor) -> torch.Tensor:
    """snr_db [B], use bool [B] -> snr_db [B], NaN (no noise) where not `use`."""
    return torch.where(use, snr_db, torch.full_like(snr_db, float("nan")))


def make_mixtures(speech: torch.Tensor, rir: torch.Tensor, talker_angles: torch.Tensor, spacing: torch.Tensor,
                  recipe: MixRecipe, generator: torch.Generator) -> Mixtures:
    """speech [B, S, T] (dry, one segment per source), rir [B, M, S, L], talker_angles [B, S] (the target angle of
    each source), spacing [B] -> Mixtures; every random draw comes from `generator`. Noise SNRs are relative to the
    clean image power (the gained images summed, before mic gain; mixing.add_at_snr)."""
    mix, sr, hop = recipe.mix, recipe.sr, recipe.hop
    B, S, T = speech.shape
    M = rir.shape[1]
    device = speech.device
    g = generator

    clean = None  # drawn only when asked for, so that configs without it keep their random streams
    if mix.clean_prob > 0:
        clean = torch.rand(B, generator=g, device=g.device) < mix.clean_prob
    count = draw_counts(B, S, mix.talker_probs, g)
    if clean is not None:
        count = torch.where(clean, torch.full_like(count, min(2, S)), count)
    onset, offset = draw_activity(count, S, T, mix.partial_prob, int(mix.min_active_s * sr), g, clean)
    noisy = torch.ones(B, dtype=torch.bool, device=device) if clean is None else ~clean.to(device)
    sources = speech
    if mix.broadband_prob > 0:
        use = (torch.rand(B, S, generator=g, device=g.device) < mix.broadband_prob).to(device) & noisy[:, None]
        tilt = uniform(*mix.broadband_tilt, (B, S), g).to(device)
        sources = broadband_sources(speech, use, tilt, sr, g)
    dry = sources * activity_envelope(onset.to(device), offset.to(device), T)
    activity = frame_activity(dry, sources, hop, mix.activity_db)  # [B, S, T // hop]
    if mix.counts_talkers:
        counted = activity.sum(-1) >= round(mix.min_active_s * sr / hop)
    else:  # the seed: every source counts, whatever its level
        counted = torch.ones(B, S, dtype=torch.bool, device=device)

    gains = uniform(*mix.gain_db, (B, S), g).to(device)
    wave = convolve_mix(dry, rir, gains, out_len=T)  # [B, M, T]
    power = wave.pow(2).mean(dim=(1, 2))
    silent = power <= 1e-10
    reference = torch.where(silent, torch.ones_like(power), power)

    if mix.diffuse_prob > 0:
        shares = torch.tensor(mix.diffuse_kinds, dtype=torch.float32, device=g.device)
        kind = torch.multinomial(shares / shares.sum(), B, replacement=True, generator=g)
        use = (torch.rand(B, generator=g, device=g.device) < mix.diffuse_prob).to(device)
        snr = uniform(*mix.diffuse_snr_db, (B,), g).to(device)
        kind = torch.where(use.to(kind.device), kind, torch.full_like(kind, -1))  # -1: no diffuse noise, none made
        noise = diffuse_noise(kind, speech, spacing.to(device), sr, recipe.sound_speed, g)
        wave = add_at_snr(wave, noise, without(snr, use & noisy), reference)
    if mix.mic_gain_db > 0:
        gain_db = uniform(-mix.mic_gain_db, mix.mic_gain_db, (B, M), g).to(device) * noisy[:, None]
        wave = wave * (10.0 ** (gain_db / 20.0))[..., None]
    if mix.mic_latency > 0:
        wave = fractional_delay(wave, uniform(-mix.mic_latency, mix.mic_latency, (B, M), g).to(device) * noisy[:, None])
    if mix.noise_prob > 0 or bool(silent.any()):
        use = (torch.rand(B, generator=g, device=g.device) < mix.noise_prob).to(device) & noisy | silent
        snr = uniform(*mix.snr_db, (B,), g).to(device)
        sensor = torch.randn(B, M, T, generator=g, device=g.device).to(device)
        wave = add_at_snr(wave, sensor, without(snr, use), reference)
    if mix.bandlimit_prob > 0:  # last: an 8 kHz recorder band-limits the sensor noise as well
        use = (torch.rand(B, generator=g, device=g.device) < mix.bandlimit_prob).to(device) & noisy
        cutoff = uniform(*mix.bandlimit_hz, (B,), g).to(device)
        wave = lowpass(wave, torch.where(use, cutoff, torch.full_like(cutoff, float(sr))), sr)

    return Mixtures(
        wave=normalize_wave(wave, mix.normalize),
        angles=sorted_counted(talker_angles.to(device), counted),
        count=counted.sum(-1),
        talker_angles=talker_angles.float().to(device),
        talker_activity=activity,
        spacing=spacing.float().to(device),
    )
