"""One rank's training data: both streams, both device reservoirs, and the batches mixed from them.

Each step refreshes part of each reservoir from its stream, then draws a batch and mixes it on the device
(training.data.mixtures: talkers that come and go, speech * RIR by one batched rfft, gains, noise, array
imperfections, normalize). A
batch's own draws are a function of (run.seed, step, rank). The rest of the data path's state, the
reservoirs, their slot RNG and the streams' accounting, is saved with every training state (`state()`),
and the streams are reopened from (run.seed, step, rank) right after every save (`reopen`): a resumed run
loads that state, reopens its streams at the same step and so draws exactly what the uninterrupted run drew.
"""
from __future__ import annotations

import functools
import random
from typing import Any, Callable

import torch

from shards.layout import stable_seed
from training.config import TrainConfig
from training.data.mixtures import MixRecipe, Mixtures, make_mixtures
from training.data.reservoirs import SceneReservoir, SpeechReservoir
from training.data.sources import SplitSources, check_enough_shards, check_setup, side_sources
from training.data.speech import synthetic_speech
from training.data.streams import Stream, decode_scene, decode_speech, folder_pipeline, make_loader, shard_pipeline

TARGET_ROWS = {"azimuth": 0, "lateral": 1}  # row of a scene's `angles` tensor [2, S]


class TrainData:
    """Both streams and both reservoirs of one rank; `batch(step)` -> Mixtures.

    sources: the run's train shards and speech as check_sources resolved them (resolved here when None).
    """

    def __init__(self, cfg: TrainConfig, rank: int, world_size: int, device: torch.device,
                 log: Callable[[dict], None] | None = None, sources: SplitSources | None = None):
        self.cfg, self.rank, self.world_size, self.device = cfg, rank, world_size, device
        self.step = 0  # the optimizer step the data drawn now feeds; data_error records carry it
        self.rng = random.Random(stable_seed(cfg.run.seed, 0, rank, 1))  # reservoir slots; saved with each state
        d, s = cfg.data, cfg.speech

        def stream(what: str) -> Stream:
            return Stream(None, what, d.max_fail_share, d.min_shards_for_share,
                          None if log is None else lambda record: log({**record, "step": self.step}))

        sources = sources if sources is not None else side_sources(cfg, "train")
        self.scene_urls, self.speech_urls = sources.scenes, sources.speech
        check_enough_shards(self.scene_urls, world_size, d.num_workers, "train")
        self.scenes_stream = stream("train")
        self.speech_stream = None
        if self.speech_urls:
            check_enough_shards(self.speech_urls, world_size, d.num_workers, "speech")
            self.speech_stream = stream("speech")
        self.reopen(0)
        self.scenes: SceneReservoir | None = None
        self.speech = SpeechReservoir(s.reservoir, cfg.clip_samples, device)
        self.generator = torch.Generator(device=device)

    def reopen(self, step: int) -> None:
        """(Re)start both streams from (run.seed, step, rank), skipping the shards already found damaged."""
        cfg, d = self.cfg, self.cfg.data
        seed = (cfg.run.seed, step, self.rank)
        loader_seed = stable_seed(*seed, 17)
        decode = decode_scene(d.max_rir_len, functools.partial(check_setup, cfg))
        pipeline = shard_pipeline(self.scene_urls, decode, self.rank, self.world_size, seed, d.shuffle_buffer,
                                  d.verify_sha256, self.scenes_stream.bad_shards)
        self.scenes_stream.set_loader(make_loader(pipeline, d.num_workers, loader_seed))
        if self.speech_stream is None:
            return
        known_bad = self.speech_stream.bad_shards
        if cfg.speech.source == "shards":
            decode = decode_speech(cfg.sr, cfg.clip_samples, stable_seed(*seed, 2))
            pipeline = shard_pipeline(self.speech_urls, decode, self.rank, self.world_size, seed, d.shuffle_buffer,
                                      d.verify_sha256, known_bad)
        else:
            pipeline = folder_pipeline(self.speech_urls, cfg.sr, cfg.clip_samples, self.rank, self.world_size, seed,
                                       d.shuffle_buffer, known_bad)
        self.speech_stream.set_loader(make_loader(pipeline, d.num_workers, stable_seed(loader_seed, 2)))

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
        """Before 0-based step `step`: replace data.rir_refresh scenes and speech.refresh segments."""
        self.step = step + 1
        self.scenes.put([self.scenes_stream.next() for _ in range(self.cfg.data.rir_refresh)], self.rng)
        self.refresh_speech(self.cfg.speech.refresh, stable_seed(self.cfg.run.seed, step, self.rank, 3))

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """-> (the reservoirs' tensors, the rest as plain JSON: slot RNG, fill counts, streams' accounting)."""
        version, internal, gauss = self.rng.getstate()
        tensors = {"scenes.rir": self.scenes.rir, "scenes.angles": self.scenes.angles,
                   "scenes.spacing": self.scenes.spacing, "speech.audio": self.speech.audio}
        meta = {"rng": [version, list(internal), gauss], "scenes.count": self.scenes.count,
                "speech.count": self.speech.count, "step": self.step,
                "streams": {st.what: st.state() for st in self.streams()}}
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], where: str) -> None:
        """The reservoirs, slot RNG and streams' accounting of `state()`; ValueError naming `where` when they
        do not fit this config's reservoirs."""
        want = {"scenes.rir": (self.cfg.data.rir_reservoir, self.cfg.data.max_rir_len),
                "speech.audio": (self.speech.capacity, self.cfg.clip_samples)}
        for key, (rows, length) in want.items():
            shape = tuple(tensors[key].shape) if key in tensors else None
            if shape is None or shape[0] != rows or shape[-1] != length:
                raise ValueError(f"{where}: {key} has shape {shape}, this config's reservoir holds {rows} x ... x {length}")
        rir = tensors["scenes.rir"]
        self.scenes = SceneReservoir(rir.shape[0], rir.shape[1], rir.shape[2], rir.shape[3], self.device)
        self.scenes.rir.copy_(rir)
        self.scenes.angles.copy_(tensors["scenes.angles"])
        if "scenes.spacing" in tensors:  # states saved before spacings were kept: NaN, the model's default spacing
            self.scenes.spacing.copy_(tensors["scenes.spacing"])
        self.speech.audio.copy_(tensors["speech.audio"])
        self.scenes.count, self.speech.count, self.step = int(meta["scenes.count"]), int(meta["speech.count"]), int(meta["step"])
        version, internal, gauss = meta["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        for st in self.streams():
            st.restore(meta["streams"][st.what])

    def streams(self) -> list[Stream]:
        return [self.scenes_stream] + ([self.speech_stream] if self.speech_stream is not None else [])

    def batch(self, step: int, micro: int = 0) -> Mixtures:
        """-> this step's Mixtures (training.data.mixtures: wave [B, M, T] fp32, target angles, counts, activity,
        spacing); every draw from (run.seed, step, rank, micro)."""
        cfg = self.cfg
        self.generator.manual_seed(stable_seed(cfg.run.seed, step, self.rank, micro, 5))
        rir, angles, spacing = self.scenes.sample(cfg.run.batch_size, self.generator)
        speech = self.speech.sample(cfg.run.batch_size, rir.shape[2], self.generator)
        spacing = torch.nan_to_num(spacing, nan=cfg.array.mic_spacing)
        return make_mixtures(speech, rir, angles[:, TARGET_ROWS[cfg.target]], spacing, MixRecipe.of(cfg),
                             self.generator)

    def counters(self) -> dict[str, int]:
        return {key: value for st in self.streams() for key, value in st.counters().items()}

    def close(self) -> None:
        for st in self.streams():
            st.close()
