"""The fixed eval set: a seeded pairing of held-out speech with the eval split's RIRs, identical on every run.

It depends on eval.seed, the eval shards and the eval speech only, never on the world size or the device:
it is mixed on the CPU in fp32 and handed out in batches, batch i to rank i % world_size.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import warnings
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch

from shards.audio import decode_audio, fit_length
from shards.layout import stable_seed
from training.config import TrainConfig
from training.data.batches import TARGET_ROWS
from training.data.markers import KEY, UNCHECKED, is_marker
from training.data.mixtures import MixRecipe, Mixtures, make_mixtures
from training.data.sources import DataError, SplitSources, check_setup, side_sources
from training.data.speech import synthetic_speech
from training.data.streams import CheckSetup, decode_scene, raise_failures, read_shards, speech_audio

Batch = tuple[torch.Tensor, torch.Tensor, list[dict]]


@dataclass
class EvalSet:
    """This rank's eval batches [(wave [B, 2, T], angles_deg [B, S] sorted (NaN: no talker in that slot),
    metadata dicts (B))], the same batches as Mixtures (counts, activity, spacing: training.data.mixtures), and the
    whole set's sorted target angles [N, S] (every rank; e.g. for the chance floor)."""
    batches: list[Batch]
    angles: torch.Tensor
    mixtures: list[Mixtures]


def read_split_in_order(urls: list[str], max_len: int, verify: bool, check: CheckSetup | None = None) -> list[dict]:
    """All scenes of the given shards, in file order, `check` run on every scene's metadata; any damage or a scene
    of another setup is a DataError (the eval set must be whole: the streams' stages with raise_failures)."""
    scenes, unchecked = [], []
    for item in read_shards(urls, decode_scene(max_len, check), verify, raise_failures("eval")):
        if UNCHECKED in item:
            unchecked.append(item[UNCHECKED])
        elif not is_marker(item):
            scenes.append(item)
    if unchecked:
        warnings.warn(f"{len(unchecked)} eval shard(s) have no reachable sidecar (.json beside the .tar), e.g. "
                      f"{unchecked[0]}: their sha256 is not checked", RuntimeWarning, stacklevel=2)
    return scenes


def speech_sample(key: str, parts: dict[str, bytes], url: str, sr: int) -> dict:
    """A speech sample's members -> {key, url, audio: mono float32 [T] at `sr`}, uncropped (streams.speech_audio)."""
    return {KEY: key, "url": url, "audio": speech_audio(key, parts, url, sr)}


def eval_speech(cfg: TrainConfig, count: int, files: list[str]) -> torch.Tensor:
    """The eval side's speech (shards or audio files, as resolved; unused with synthetic speech) -> count fixed
    speech segments [count, T] on the CPU, from eval.seed and the eval speech only."""
    samples, seed, s = cfg.clip_samples, cfg.eval.seed, cfg.speech
    if s.source == "synthetic":
        chunks, chunk = [], 64
        for start in range(0, count, chunk):
            g = torch.Generator().manual_seed(stable_seed(seed, start, 21))
            chunks.append(synthetic_speech(min(chunk, count - start), samples, cfg.sr, g, "cpu", s.f0_range))
        return torch.cat(chunks)
    rng = random.Random(stable_seed(seed, 22))
    if s.source == "shards":
        decode = functools.partial(speech_sample, sr=cfg.sr)
        items = read_shards(files, decode, cfg.data.verify_sha256, raise_failures("eval speech"))
        audio = list(islice((item["audio"] for item in items if not is_marker(item)), count))  # read no further
    else:
        audio = [decode_audio(path, path, sr=cfg.sr)[0] for path in files[:count]]
    segments = [fit_length(audio[i % len(audio)], samples, rng) for i in range(count)]
    return torch.from_numpy(np.stack(segments).astype(np.float32))


def fixed_eval_set(cfg: TrainConfig, device: torch.device | str = "cpu", rank: int = 0,
                   world_size: int = 1, sources: SplitSources | None = None) -> EvalSet:
    """-> the EvalSet of this rank: a fixed seeded pairing of eval speech and eval RIRs (eval.seed only).

    sources: the run's eval shards and speech as check_sources resolved them (resolved here when None).
    """
    sources = sources if sources is not None else side_sources(cfg, "eval")
    scenes = read_split_in_order(sources.scenes, cfg.data.max_rir_len, cfg.data.verify_sha256,
                                 functools.partial(check_setup, cfg))
    if not scenes:
        raise DataError(f"eval split {cfg.data.eval_split} under {cfg.data.shards} holds no scenes")
    n, talkers = cfg.eval.num_samples, scenes[0]["rir"].shape[1]
    g = torch.Generator().manual_seed(stable_seed(cfg.eval.seed, 23))
    order = torch.cat([torch.randperm(len(scenes), generator=g) for _ in range(math.ceil(n / len(scenes)))])[:n]
    speech = eval_speech(cfg, n * talkers, sources.speech).view(n, talkers, -1)
    row = TARGET_ROWS[cfg.target]
    batches, mixtures = [], []
    # the clean, band-limited and broadband shares are a training curriculum, not the scene the eval set measures
    recipe = MixRecipe.of(cfg, dataclasses.replace(cfg.mix, clean_prob=0.0, bandlimit_prob=0.0, broadband_prob=0.0))
    for b, start in enumerate(range(0, n, cfg.eval.batch_size)):
        if b % world_size != rank:
            continue
        picked = [scenes[i] for i in order[start:start + cfg.eval.batch_size].tolist()]
        length = max(s["rir"].shape[-1] for s in picked)
        rir = torch.zeros(len(picked), *picked[0]["rir"].shape[:2], length)
        for j, s in enumerate(picked):
            rir[j, ..., : s["rir"].shape[-1]] = s["rir"]
        angles = torch.stack([s["angles"][row] for s in picked])
        spacing = torch.tensor([float(s["spacing"]) for s in picked])
        g_batch = torch.Generator().manual_seed(stable_seed(cfg.eval.seed, 24, b))  # batch b: same on any world size
        mixed = make_mixtures(speech[start:start + len(picked)], rir, angles, spacing, recipe, g_batch)
        metas = [dict(json.loads(s["meta"]), key=s[KEY], shard=s["url"]) for s in picked]
        batches.append((mixed.wave.to(device), mixed.angles.to(device), metas))
        mixtures.append(mixed.to(device))
    every = torch.stack([scenes[i]["angles"][row] for i in order.tolist()]).sort(dim=-1).values
    return EvalSet(batches, every, mixtures)


def with_shards(cfg: TrainConfig, shards: str) -> TrainConfig:
    """cfg reading both splits from the shard root `shards` (explicit globs dropped)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, shards=str(shards), train_glob="", eval_glob=""))
