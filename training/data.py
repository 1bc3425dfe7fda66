"""Shard streaming and device reservoirs (README, "Train": the data path).

DataLoader workers run a WebDataset pipeline that only reads and decodes shards:

    shard list -> split by rank -> split by worker -> resample forever (seeded)
               -> read + sha256-check -> tar -> decoded samples -> shuffle buffer

Failures never vanish: a damaged shard becomes a `__bad__` marker that travels to the main process,
which warns (naming the shard), counts it, and stops the run above `data.max_fail_share`.
The main process keeps RIR scenes and speech segments in reservoirs on the training device; each step
draws a batch from them and mixes it on the device (`training.mixing`).
"""
from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import random
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_iterator

from training.config import TrainConfig
from training.mixing import draw_mix_params, mix
from training.reservoirs import SceneReservoir, SpeechReservoir
from training.speech import decode_audio, fit_length, list_audio_files, read_audio_file, synthetic_speech

TARGET_ROWS = {"azimuth": 0, "lateral": 1}  # row of the scene `angles` tensor [2, S]


class DataError(RuntimeError):
    """Shards missing, empty or too damaged to train on; the message names the path and the key."""


# ----------------------------------------------------------------------------------------------
# Shard lists


def resolve_shards(cfg: TrainConfig, split: str, pattern: str = "") -> list[str]:
    """-> sorted shard paths of `split` (or of data.train_glob / data.eval_glob / `pattern`); DataError when none."""
    if not pattern:
        pattern = {cfg.data.train_split: cfg.data.train_glob, cfg.data.eval_split: cfg.data.eval_glob}.get(split, "")
    if pattern:
        where, key = pattern, "data.train_glob" if split == cfg.data.train_split else "data.eval_glob"
        paths = sorted({p for part in wds.shardlists.expand_urls(pattern) for p in glob.glob(part)})
    else:
        where, key = str(Path(cfg.data.shards) / split / f"{split}-*.tar"), "data.shards"
        paths = sorted(glob.glob(where))
    if not paths:
        manifest = Path(cfg.data.shards) / split / "manifest.json"
        hint = " (its manifest.json lists no shards: an empty split)" if manifest.is_file() else ""
        raise DataError(f"no {split} shards match {where} ({key}={cfg.data.shards if not pattern else pattern})"
                        f"{hint}; write them with `python -m simulate --out {cfg.data.shards}`")
    if not pattern:
        warn_if_incomplete(Path(cfg.data.shards) / split / "manifest.json")
    return paths


def warn_if_incomplete(manifest_path: Path) -> None:
    """A split whose manifest says shards are still missing trains on what is there, but says so."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(manifest, dict) and manifest.get("complete") is False:
        warnings.warn(f"{manifest_path}: incomplete split, {manifest.get('present_shards')} of "
                      f"{manifest.get('num_shards')} shards written ({manifest.get('present_count')} of "
                      f"{manifest.get('count')} scenes); rerun `python -m simulate` to finish it", stacklevel=2)


def shard_hashes(paths: list[str]) -> dict[str, str]:
    """shard paths -> {path: sha256} from the sidecars `{name}.json` beside them (missing sidecars: unchecked)."""
    hashes = {}
    for path in paths:
        sidecar = Path(path).with_suffix(".json")
        try:
            record = json.loads(sidecar.read_text())
            if isinstance(record, dict) and isinstance(record.get("sha256"), str):
                hashes[path] = record["sha256"]
        except (OSError, ValueError):
            pass
    return hashes


def check_enough_shards(paths: list[str], world_size: int, num_workers: int, what: str) -> None:
    """Every (rank, worker) pair needs its own shard; fewer gives a clear DataError, not an empty stream."""
    readers = world_size * max(num_workers, 1)
    if len(paths) < readers:
        raise DataError(f"{len(paths)} {what} shard(s) for {world_size} rank(s) x {max(num_workers, 1)} worker(s) "
                        f"= {readers} readers; write more shards or lower data.num_workers")


# ----------------------------------------------------------------------------------------------
# Pipeline stages (each a generator over the previous stage's items)


def split_by_rank(rank: int, world_size: int) -> Callable:
    """Explicit nodesplitter: rank r keeps every world_size-th shard starting at r."""
    def stage(src):
        for index, item in enumerate(src):
            if index % world_size == rank:
                yield item
    return stage


def resample_forever(seed: tuple[int, ...], bad: set[str]) -> Callable:
    """resampled=True: draw this worker's shards with replacement forever, seeded by (seed..., worker)."""
    def stage(src):
        urls = [item["url"] for item in src]
        info = torch.utils.data.get_worker_info()
        rng = random.Random(hash_seed(*seed, info.id if info else 0))
        while True:
            alive = [u for u in urls if u not in bad]
            if not alive:
                return
            yield {"url": rng.choice(alive)}
    return stage


def read_verified(hashes: dict[str, str], bad: set[str]) -> Callable:
    """url -> {url, data} after a sha256 check; an unreadable or mismatching shard -> a `__bad__` marker."""
    def stage(src):
        for item in src:
            url = item["url"]
            try:
                data = Path(url).read_bytes()
                want = hashes.get(url)
                if want is not None and hashlib.sha256(data).hexdigest() != want:
                    raise DataError(f"sha256 mismatch (expected {want[:12]}..., from its sidecar)")
                yield {"url": url, "data": data}
            except (OSError, DataError) as err:
                bad.add(url)
                yield {"__bad__": url, "__error__": str(err)}
    return stage


def expand_samples(decode: Callable[[dict, str], Any], bad: set[str]) -> Callable:
    """{url, data} -> decoded samples; a tar error marks the shard bad, a sample error skips the sample."""
    def stage(src):
        for item in src:
            if "__bad__" in item:
                yield item
                continue
            url = item["url"]
            try:
                members = tar_samples(item["data"], url)
            except Exception as err:  # tarfile.ReadError, EOFError, ValueError from a damaged header
                bad.add(url)
                yield {"__bad__": url, "__error__": f"unreadable tar ({type(err).__name__}: {err})"}
                continue
            if not members:
                bad.add(url)
                yield {"__bad__": url, "__error__": "no samples in the tar"}
                continue
            for sample in members:
                try:
                    yield decode(sample, url)
                except Exception as err:
                    yield {"__bad_sample__": f"{url}:{sample.get('__key__')}", "__error__": f"{type(err).__name__}: {err}"}
            yield {"__shard_ok__": url}
    return stage


def tar_samples(data: bytes, url: str) -> list[dict]:
    """tar bytes -> [{__key__, __url__, <ext>: bytes}] in file order (webdataset's tar iterator and grouping)."""
    files = ({**f, "__url__": url} for f in tar_file_iterator(io.BytesIO(data)))
    return list(group_by_keys(files))


def load_npy(data: bytes, name: str) -> np.ndarray:
    """.npy bytes -> array, never unpickling."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def decode_scene(max_len: int) -> Callable[[dict, str], dict]:
    """Raw tar sample -> {key, url, rir float32 [M, S, L<=max_len], angles float32 [2, S] (azimuth, lateral), meta}."""
    def decode(sample: dict, url: str) -> dict:
        rir = load_npy(sample["rir.npy"], "rir.npy")
        meta = json.loads(sample["json"])
        if rir.ndim != 3 or rir.dtype != np.float32:
            raise ValueError(f"rir.npy: expected float32 [mics, sources, L], got {rir.dtype} {rir.shape}")
        if not np.isfinite(rir).all():
            raise ValueError("rir.npy holds NaN or Inf")
        sources = meta["sources"]
        if len(sources) != rir.shape[1]:
            raise ValueError(f"json lists {len(sources)} sources, rir.npy has {rir.shape[1]}")
        angles = np.array([[float(s["azimuth_deg"]) for s in sources],
                           [float(s["lateral_deg"]) for s in sources]], dtype=np.float32)
        if not np.isfinite(angles).all():
            raise ValueError("json angles hold NaN or Inf")
        return {"__key__": sample["__key__"], "url": url, "rir": torch.from_numpy(rir[..., :max_len].copy()),
                "angles": torch.from_numpy(angles), "meta": json.dumps(meta)}
    return decode


def decode_speech_sample(sr: int, samples: int, seed: int) -> Callable[[dict, str], dict]:
    """Raw speech-shard sample (flac or wav + json) -> {key, url, audio float32 [samples]}, randomly cropped."""
    rng = random.Random(seed)

    def decode(sample: dict, url: str) -> dict:
        ext = "flac" if "flac" in sample else "wav"
        audio = decode_audio(sample[ext], f"{url}:{sample['__key__']}.{ext}", sr)
        return {"__key__": sample["__key__"], "url": url, "audio": torch.from_numpy(fit_length(audio, samples, rng).copy())}
    return decode


def hash_seed(*parts: int) -> int:
    """Stable 63-bit seed from integers (Python's hash() is salted per process for strings)."""
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# ----------------------------------------------------------------------------------------------
# Streams (DataLoader over a WebDataset pipeline) and the main-process reservoirs


def shard_pipeline(paths: list[str], decode: Callable, rank: int, world_size: int, seed: tuple[int, ...],
                   shuffle_buffer: int, hashes: dict[str, str]) -> wds.DataPipeline:
    """The worker-side chain: list -> rank split -> worker split -> resample -> read -> decode -> shuffle."""
    bad: set[str] = set()  # per worker process: shards found damaged are never drawn again
    return wds.DataPipeline(
        wds.SimpleShardList(paths),
        split_by_rank(rank, world_size),
        wds.split_by_worker,
        resample_forever(seed, bad),
        read_verified(hashes, bad),
        expand_samples(decode, bad),
        wds.shuffle(shuffle_buffer, initial=max(1, shuffle_buffer // 4), seed=hash_seed(*seed, 7)),
    )


def folder_pipeline(files: list[str], sr: int, samples: int, rank: int, world_size: int,
                    seed: tuple[int, ...], shuffle_buffer: int) -> wds.DataPipeline:
    """Audio folder: list -> rank split -> worker split -> resample -> read with soundfile -> crop."""
    bad: set[str] = set()
    rng = random.Random(hash_seed(*seed, 11))

    def read(src):
        for item in src:
            try:
                audio = read_audio_file(item["url"], sr)
                yield {"__key__": item["url"], "url": item["url"], "audio": torch.from_numpy(fit_length(audio, samples, rng).copy())}
                yield {"__shard_ok__": item["url"]}
            except Exception as err:
                bad.add(item["url"])
                yield {"__bad__": item["url"], "__error__": f"{type(err).__name__}: {err}"}

    return wds.DataPipeline(
        wds.SimpleShardList(files), split_by_rank(rank, world_size), wds.split_by_worker,
        resample_forever(seed, bad), read, wds.shuffle(shuffle_buffer, initial=1, seed=hash_seed(*seed, 13)),
    )


class Stream:
    """Main-process side of a DataLoader stream: yields good samples, counts and warns about bad ones.

    Raises DataError when more than `max_fail_share` of the opened shards failed (after `min_shards` opened)
    or when the workers run out of readable shards.
    """

    def __init__(self, loader: torch.utils.data.DataLoader, what: str, max_fail_share: float, min_shards: int,
                 log: Callable[[dict], None] | None = None):
        self.loader, self.what = loader, what
        self.iterator: Iterator | None = None
        self.max_fail_share, self.min_shards, self.log = max_fail_share, min_shards, log
        self.ok_shards: set[str] = set()
        self.bad_shards: dict[str, str] = {}
        self.bad_samples = 0
        self.good_samples = 0

    def counters(self) -> dict[str, int]:
        return {f"{self.what}_bad_shards": len(self.bad_shards), f"{self.what}_bad_samples": self.bad_samples,
                f"{self.what}_shards_read": len(self.ok_shards) + len(self.bad_shards)}

    def next(self) -> dict:
        if self.iterator is None:
            self.iterator = iter(self.loader)
        while True:
            try:
                item = next(self.iterator)
            except StopIteration:
                raise DataError(f"no readable {self.what} shards left ({len(self.bad_shards)} damaged: "
                                f"{', '.join(sorted(self.bad_shards)[:3])})") from None
            if "__bad__" in item or "__bad_sample__" in item:
                self._failure(item)
                continue
            if "__shard_ok__" in item:
                self.ok_shards.add(item["__shard_ok__"])
                continue
            self.good_samples += 1
            return item

    def _failure(self, item: dict) -> None:
        if "__bad__" in item:
            name = item["__bad__"]
            self.bad_shards[name] = item["__error__"]
            self.ok_shards.discard(name)
            message = f"skipped damaged {self.what} shard {name}: {item['__error__']}"
        else:
            name = item["__bad_sample__"]
            self.bad_samples += 1
            message = f"skipped damaged {self.what} sample {name}: {item['__error__']}"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        if self.log is not None:
            self.log({"event": "data_error", "what": self.what, "item": name, "error": item["__error__"], **self.counters()})
        opened = len(self.ok_shards) + len(self.bad_shards)
        share = len(self.bad_shards) / max(opened, 1)
        if opened >= self.min_shards and share > self.max_fail_share:
            raise DataError(f"{len(self.bad_shards)} of {opened} {self.what} shards failed ({share:.0%} > "
                            f"data.max_fail_share={self.max_fail_share}); last: {message}")

    def close(self) -> None:
        self.iterator = None


def make_loader(pipeline: wds.DataPipeline, num_workers: int) -> torch.utils.data.DataLoader:
    """Workers decode; batch_size=None passes single samples through; never through accelerator.prepare."""
    return torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=num_workers,
                                       persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers else None)


class TrainData:
    """Both streams and both reservoirs of one rank; `batch(step)` -> (wave [B, M, T], angles [B, S] sorted)."""

    def __init__(self, cfg: TrainConfig, rank: int, world_size: int, device: torch.device, start_step: int = 0,
                 log: Callable[[dict], None] | None = None):
        self.cfg, self.rank, self.device = cfg, rank, device
        seed = (cfg.run.seed, start_step, rank)  # a resumed run reseeds its streams from (seed, step, rank)
        self.rng = random.Random(hash_seed(*seed, 1))
        d = cfg.data
        paths = resolve_shards(cfg, d.train_split, d.train_glob)
        check_enough_shards(paths, world_size, d.num_workers, "train")
        self.scenes_stream = Stream(
            make_loader(shard_pipeline(paths, decode_scene(d.max_rir_len), rank, world_size, seed, d.shuffle_buffer,
                                       shard_hashes(paths) if d.verify_sha256 else {}), d.num_workers),
            "train", d.max_fail_share, d.min_shards_for_share, log)
        self.speech_stream = None
        s = cfg.speech
        if s.source == "shards":
            spaths = resolve_speech_shards(s.train_path, "speech.train_path")
            check_enough_shards(spaths, world_size, d.num_workers, "speech")
            self.speech_stream = Stream(make_loader(shard_pipeline(
                spaths, decode_speech_sample(cfg.sr, cfg.clip_samples, hash_seed(*seed, 2)), rank, world_size, seed,
                d.shuffle_buffer, shard_hashes(spaths) if d.verify_sha256 else {}), d.num_workers),
                "speech", d.max_fail_share, d.min_shards_for_share, log)
        elif s.source == "folder":
            files = resolve_audio_folder(s.train_path, "speech.train_path")
            check_enough_shards(files, world_size, d.num_workers, "speech file")
            self.speech_stream = Stream(make_loader(folder_pipeline(
                files, cfg.sr, cfg.clip_samples, rank, world_size, seed, d.shuffle_buffer), d.num_workers),
                "speech", d.max_fail_share, d.min_shards_for_share, log)
        self.scenes: SceneReservoir | None = None
        self.speech = SpeechReservoir(s.reservoir, cfg.clip_samples, device)
        self.generator = torch.Generator(device=device)

    def fill(self) -> None:
        """Fill both reservoirs completely (blocking; before the first step)."""
        first = self.scenes_stream.next()
        mics, sources = first["rir"].shape[:2]
        self.scenes = SceneReservoir(self.cfg.data.rir_reservoir, mics, sources, self.cfg.data.max_rir_len, self.device)
        self.scenes.put([first] + [self.scenes_stream.next() for _ in range(self.scenes.capacity - 1)], self.rng)
        self.refresh_speech(self.speech.capacity, hash_seed(self.cfg.run.seed, self.rank, 99))

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
        self.refresh_speech(self.cfg.speech.refresh, hash_seed(self.cfg.run.seed, step, self.rank, 3))

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """-> wave [B, M, T] fp32, angles [B, S] of the configured target, sorted; randomness from (seed, step, rank)."""
        cfg = self.cfg
        self.generator.manual_seed(hash_seed(cfg.run.seed, step, self.rank, micro, 5))
        rir, angles = self.scenes.sample(cfg.run.batch_size, self.generator)
        speech = self.speech.sample(cfg.run.batch_size, rir.shape[2], self.generator)
        gains, snr = draw_mix_params(cfg.run.batch_size, rir.shape[2], cfg.mix.gain_db, cfg.mix.noise_prob,
                                     cfg.mix.snr_db, self.generator, self.device)
        noise = None
        if cfg.mix.noise_prob > 0:
            noise = torch.randn(cfg.run.batch_size, rir.shape[1], speech.shape[-1], generator=self.generator,
                                device=self.device)
        wave = mix(speech, rir, gains, snr, noise, cfg.mix.normalize)
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


def resolve_speech_shards(path: str, key: str) -> list[str]:
    """A speech shard folder or glob -> sorted `speech-*.tar` paths; DataError when none."""
    pattern = str(Path(path) / "speech-*.tar") if Path(path).is_dir() else path
    paths = sorted({p for part in wds.shardlists.expand_urls(pattern) for p in glob.glob(part)})
    if not paths:
        raise DataError(f"no speech shards match {pattern} ({key}={path}); pack them with `python -m simulate speech`")
    return paths


def resolve_audio_folder(path: str, key: str) -> list[str]:
    files = [str(p) for p in list_audio_files(path)] if Path(path).is_dir() else []
    if not files:
        raise DataError(f"no .wav/.flac/.ogg files under {path} ({key})")
    return files


# ----------------------------------------------------------------------------------------------
# The fixed eval set


def read_split_in_order(paths: list[str], max_len: int, verify: bool) -> list[dict]:
    """All scenes of the given shards, in file order; any damage is a DataError (the eval set must be whole)."""
    hashes = shard_hashes(paths) if verify else {}
    decode, scenes = decode_scene(max_len), []
    for path in paths:
        data = Path(path).read_bytes()
        if path in hashes and hashlib.sha256(data).hexdigest() != hashes[path]:
            raise DataError(f"eval shard {path}: sha256 mismatch with its sidecar")
        try:
            for sample in tar_samples(data, path):
                scenes.append(decode(sample, path))
        except Exception as err:
            raise DataError(f"eval shard {path}: {type(err).__name__}: {err}") from None
    return scenes


def eval_speech(cfg: TrainConfig, count: int) -> torch.Tensor:
    """-> count fixed speech segments [count, T] on the CPU, from eval.seed only."""
    samples, seed = cfg.clip_samples, cfg.eval.seed
    if cfg.speech.source == "synthetic":
        chunks, chunk = [], 64
        for start in range(0, count, chunk):
            g = torch.Generator().manual_seed(hash_seed(seed, start, 21))
            chunks.append(synthetic_speech(min(chunk, count - start), samples, cfg.sr, g, "cpu", cfg.speech.f0_range))
        return torch.cat(chunks)
    if not cfg.speech.eval_path:
        raise DataError(f"speech.eval_path is required with speech.source={cfg.speech.source}")
    rng = random.Random(hash_seed(seed, 22))
    audio: list[np.ndarray] = []
    if cfg.speech.source == "shards":
        for path in resolve_speech_shards(cfg.speech.eval_path, "speech.eval_path"):
            for sample in tar_samples(Path(path).read_bytes(), path):
                ext = "flac" if "flac" in sample else "wav"
                audio.append(decode_audio(sample[ext], f"{path}:{sample['__key__']}", cfg.sr))
                if len(audio) >= count:
                    break
            if len(audio) >= count:
                break
    else:
        for path in resolve_audio_folder(cfg.speech.eval_path, "speech.eval_path")[:count]:
            audio.append(read_audio_file(path, cfg.sr))
    segments = [fit_length(audio[i % len(audio)], samples, rng) for i in range(count)]
    return torch.from_numpy(np.stack(segments).astype(np.float32))


def eval_pairing(cfg: TrainConfig) -> tuple[list[dict], torch.Tensor, torch.Generator]:
    """-> (eval scenes in file order, scene index per eval item [N], the generator that goes on to draw gains)."""
    paths = resolve_shards(cfg, cfg.data.eval_split)
    scenes = read_split_in_order(paths, cfg.data.max_rir_len, cfg.data.verify_sha256)
    if not scenes:
        raise DataError(f"eval split {cfg.data.eval_split} under {cfg.data.shards} holds no scenes")
    n = cfg.eval.num_samples
    g = torch.Generator().manual_seed(hash_seed(cfg.eval.seed, 23))
    order = torch.cat([torch.randperm(len(scenes), generator=g) for _ in range(math.ceil(n / len(scenes)))])[:n]
    return scenes, order, g


def eval_target_angles(cfg: TrainConfig) -> torch.Tensor:
    """-> angles_deg [N, S] of the whole fixed eval set (every rank), sorted; e.g. for the chance floor."""
    scenes, order, _ = eval_pairing(cfg)
    return torch.stack([scenes[i]["angles"][TARGET_ROWS[cfg.target]] for i in order.tolist()]).sort(dim=-1).values


def fixed_eval_set(cfg: TrainConfig, shards_dir: str | None = None, device: torch.device | str = "cpu",
                   rank: int = 0, world_size: int = 1) -> list[tuple[torch.Tensor, torch.Tensor, list[dict]]]:
    """-> this rank's eval batches [(wave [B, 2, T], angles_deg [B, 2] sorted, metadata dicts (B))].

    A fixed seeded pairing of eval speech and eval RIRs (from eval.seed only), mixed on the CPU in fp32 so
    the set is bit-identical on every run, device and world size; batch i belongs to rank i % world_size.
    """
    if shards_dir is not None:
        cfg = _with_shards(cfg, shards_dir)
    scenes, order, g = eval_pairing(cfg)
    n, sources = cfg.eval.num_samples, scenes[0]["rir"].shape[1]
    speech = eval_speech(cfg, n * sources).view(n, sources, -1)
    gains, snr = draw_mix_params(n, sources, cfg.mix.gain_db, cfg.mix.noise_prob, cfg.mix.snr_db, g, torch.device("cpu"))
    noise_seed = hash_seed(cfg.eval.seed, 24)
    batches = []
    for b, start in enumerate(range(0, n, cfg.eval.batch_size)):
        if b % world_size != rank:
            continue
        idx = order[start:start + cfg.eval.batch_size].tolist()
        picked = [scenes[i] for i in idx]
        length = max(s["rir"].shape[-1] for s in picked)
        rir = torch.zeros(len(idx), *picked[0]["rir"].shape[:2], length)
        for j, s in enumerate(picked):
            rir[j, ..., : s["rir"].shape[-1]] = s["rir"]
        noise = None
        if cfg.mix.noise_prob > 0:
            noise = torch.randn(len(idx), rir.shape[1], speech.shape[-1],
                                generator=torch.Generator().manual_seed(hash_seed(noise_seed, b)))
        sl = slice(start, start + len(idx))
        wave = mix(speech[sl], rir, gains[sl], snr[sl], noise, cfg.mix.normalize)
        angles = torch.stack([s["angles"][TARGET_ROWS[cfg.target]] for s in picked]).sort(dim=-1).values
        metas = [dict(json.loads(s["meta"]), key=s["__key__"], shard=s["url"]) for s in picked]
        batches.append((wave.to(device), angles.to(device), metas))
    return batches


def _with_shards(cfg: TrainConfig, shards_dir: str) -> TrainConfig:
    import dataclasses
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, shards=str(shards_dir), train_glob="", eval_glob=""))
