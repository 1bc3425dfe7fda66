"""One rank's training data: both streams, both device reservoirs, and the batches mixed from them.

Each step refreshes part of each reservoir from its stream, then draws a batch and mixes it on the device
(training.mixing): speech * RIR by one batched rfft, per-source gain, optional noise, sum, normalize. All
randomness of a batch is a function of (run.seed, step, rank), so a resumed run draws what it would have.
"""
from __future__ import annotations

import random
from typing import Callable

import torch

from shards.layout import stable_seed
from training.config import TrainConfig
from training.mixing import draw_mix_params, mix
from training.reservoirs import SceneReservoir, SpeechReservoir
from training.sources import check_enough_shards, resolve_audio_folder, resolve_shards, resolve_speech_shards
from training.speech import synthetic_speech
from training.streams import Stream, decode_scene, decode_speech, folder_pipeline, make_loader, shard_pipeline

TARGET_ROWS = {"azimuth": 0, "lateral": 1}  # row of a scene's `angles` tensor [2, S]


class TrainData:
    """Both streams and both reservoirs of one rank; `batch(step)` -> (wave [B, M, T], angles [B, S] sorted)."""

    def __init__(self, cfg: TrainConfig, rank: int, world_size: int, device: torch.device, start_step: int = 0,
                 log: Callable[[dict], None] | None = None):
        self.cfg, self.rank, self.device = cfg, rank, device
        seed = (cfg.run.seed, start_step, rank)  # a resumed run reseeds its streams from (seed, step, rank)
        self.rng = random.Random(stable_seed(*seed, 1))
        d, s = cfg.data, cfg.speech

        def stream(pipeline, what: str) -> Stream:
            return Stream(make_loader(pipeline, d.num_workers), what, d.max_fail_share, d.min_shards_for_share, log)

        urls = resolve_shards(cfg, d.train_split)
        check_enough_shards(urls, world_size, d.num_workers, "train")
        self.scenes_stream = stream(shard_pipeline(urls, decode_scene(d.max_rir_len), rank, world_size, seed,
                                                   d.shuffle_buffer, d.verify_sha256), "train")
        self.speech_stream = None
        if s.source == "shards":
            urls = resolve_speech_shards(s.train_path, "speech.train_path")
            check_enough_shards(urls, world_size, d.num_workers, "speech")
            decode = decode_speech(cfg.sr, cfg.clip_samples, stable_seed(*seed, 2))
            self.speech_stream = stream(shard_pipeline(urls, decode, rank, world_size, seed, d.shuffle_buffer,
                                                       d.verify_sha256), "speech")
        elif s.source == "folder":
            files = resolve_audio_folder(s.train_path, "speech.train_path")
            check_enough_shards(files, world_size, d.num_workers, "speech file")
            self.speech_stream = stream(folder_pipeline(files, cfg.sr, cfg.clip_samples, rank, world_size, seed,
                                                        d.shuffle_buffer), "speech")
        self.scenes: SceneReservoir | None = None
        self.speech = SpeechReservoir(s.reservoir, cfg.clip_samples, device)
        self.generator = torch.Generator(device=device)

    def fill(self) -> None:
        """Fill both reservoirs completely (blocking; before the first step)."""
        first = self.scenes_stream.next()
        mics, sources = first["rir"].shape[:2]
        self.scenes = SceneReservoir(self.cfg.data.rir_reservoir, mics, sources, self.cfg.data.max_rir_len, self.device)
        self.scenes.put([first] + [self.scenes_stream.next() for _ in range(self.scenes.capacity - 1)], self.rng)
        self.refresh_speech(self.speech.capacity, stable_seed(self.cfg.run.seed, self.rank, 99))

    def refresh_speech(self, count: int, seed: int) -> None:
        if count <= 0:
            return
        if self.speech_stream is None:
            self.generator.manual_seed(seed)
            audio = synthetic_speech(count, self.cfg.clip_samples, self.cfg.sr, self.generator, self.device,
                                     self.cfg.speech.f0_range)
        else:
            audio = torch.stack([self.speech_stream.next()["audio"] for _ in range(count)])
        self.speech.put(audio, self.rng)

    def refresh(self, step: int) -> None:
        """Replace data.rir_refresh scenes and speech.refresh segments (continuous refresh)."""
        self.scenes.put([self.scenes_stream.next() for _ in range(self.cfg.data.rir_refresh)], self.rng)
        self.refresh_speech(self.cfg.speech.refresh, stable_seed(self.cfg.run.seed, step, self.rank, 3))

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """-> wave [B, M, T] fp32, angles [B, S] of the configured target, sorted; randomness from (seed, step, rank)."""
        cfg = self.cfg
        self.generator.manual_seed(stable_seed(cfg.run.seed, step, self.rank, micro, 5))
        rir, angles = self.scenes.sample(cfg.run.batch_size, self.generator)
        speech = self.speech.sample(cfg.run.batch_size, rir.shape[2], self.generator)
        gains, snr = draw_mix_params(cfg.run.batch_size, rir.shape[2], cfg.mix.gain_db, cfg.mix.noise_prob,
                                     cfg.mix.snr_db, self.generator, self.device)
        noise = None
        if cfg.mix.noise_prob > 0:
            noise = torch.randn(cfg.run.batch_size, rir.shape[1], speech.shape[-1], generator=self.generator,
                                device=self.device)
        mic_gain = None
        if cfg.mix.mic_gain_db > 0:
            u = torch.rand(cfg.run.batch_size, rir.shape[1], generator=self.generator, device=self.device)
            mic_gain = (2 * u - 1) * cfg.mix.mic_gain_db
        wave = mix(speech, rir, gains, snr, noise, cfg.mix.normalize, mic_gain)
        return wave, angles[:, TARGET_ROWS[cfg.target]].sort(dim=-1).values

    def counters(self) -> dict[str, int]:
        out = self.scenes_stream.counters()
        if self.speech_stream is not None:
            out.update(self.speech_stream.counters())
        return out

    def close(self) -> None:
        self.scenes_stream.close()
        if self.speech_stream is not None:
            self.speech_stream.close()
