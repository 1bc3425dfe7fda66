"""The accuracy benchmark's sets: held-out speech planned into mixtures, rooms, noise and array imperfections,
mixed, cached as .npy (no pickle) with a JSON of their metadata.

Leaf sets (each cached in its own folder `{cache}/{name}`):
- `fra` (a): FRA-RIR rooms of the seed protocol from the eval split's seed stream (held-out rooms).
- `pra` (b): rooms of the same prior rendered by pyroomacoustics' image-source model (inverse Sabine).
- `diffuse0`, `diffuse10`, `diffuse20`, `sensor10` (c, `noise`): the `pra` mixtures plus spherically diffuse
  noise at 0/10/20 dB SNR, or independent white sensor noise at 10 dB.
- `count` (d): 0, 1, 2 or 3 talkers (equal shares) in pyroomacoustics rooms with three sources, each active
  talker speaking over a random sub-interval of the clip, over a faint diffuse floor.
- `count20` (d): the count set's talkers, onsets and noise in rooms whose sources are at least 20 degrees apart in
  lateral angle (as SELD sets keep sources apart), so that counting is not bounded by resolution.
- `spacing5`, `spacing8`, `spacing12`, `spacing18`, `mismatch` (e, `arrays`): the `pra` scenes with the mics 5, 8,
  12 or 18 cm apart (a small recorder's or maker board's pair, phones and tablets, a laptop's), and the
  `pra` mixtures with mic 1's gain off by +-2 dB and its latency off by +-0.3 sample.
- `pra8k` (e): the `pra` mixtures as an 8 kHz recorder takes them (resampled to 8 kHz: telephone band, nothing
  above 4 kHz); stored and given to the models at 8 kHz, to the classical methods resampled back to 16 kHz.
Mixture i of fra, pra, the noise sets and the array sets has the same two talkers, crops and gains.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
import pyroomacoustics as pra
import soundfile
import torch
from tqdm.auto import tqdm

from configs import ConfigError, config_to_dict
from shards.array import SOUND_SPEED
from shards.audio import decode_audio, find_audio, fit_length, resample, speaker_of
from shards.files import ShardError, read_samples, sha256_file
from shards.layout import shard_seed, stable_seed
from shards.manifest import load_manifest
from shards.geometry import source_geometry
from shards.samples import decode_rir, speech_member
from simulate import generate_dataset
from simulate.config import GENERATOR_VERSION, SimulateConfig
from simulate.scenes import sample_scenes
from ssl_model.features import normalize_wave
from training.data.mixing import add_at_snr, mix

RECIPE = "bench_accuracy/1"  # bump when anything that shapes the cached waves of fra or pra changes
DERIVED_RECIPE = "bench_accuracy_sets/1"  # the same for the sets added with it (c, d, e)
SR = 16000
CLIP = 3 * SR  # 3 s per mixture
GAIN_DB = (-2.5, 2.5)
MIC_SPACING = 0.1
PRA_SCENE_CHUNK = 64  # pra scenes are drawn in fixed chunks, so scene i does not depend on N
RIR_TAIL_RT60 = 1.5  # pra RIRs are cut at 1.5 * RT60 (the energy after it is ~90 dB down by definition of RT60)
DIFFUSE_WAVES = 128  # plane waves summed into one diffuse field
PINK_FLOOR_HZ = 50.0  # the pink spectrum is flat below this (no DC blow-up)
COUNT_MAX = 3
COUNT_MIN_ACTIVE_S = 0.5  # each active talker of the count set speaks at least this long
COUNT_RAMP_S = 0.01  # raised-cosine on/off ramps of a talker's activity
COUNT_FLOOR_DB = 30.0  # the count set's diffuse floor: this far below one continuously active talker
MISMATCH_GAIN_DB = 2.0
MISMATCH_LATENCY_SAMPLES = 0.3
COUNT_SETS = {"count": 0.0, "count20": 20.0}  # count set -> least lateral separation of its sources (deg)
RATE_SETS = {"pra8k": 8000}  # derived sets stored at another sample rate than SR
SEED_KEYS = ("speech", "pra", "oracle_reference", "noise", "mismatch", "count_speech", "count_rooms", "count_activity")


def split_seeds(split: str = "test") -> dict[str, int]:
    """-> the seed of every random draw of the sets. 'test' is the benchmark; any other name (e.g. 'dev', with other
    speech: a set to tune decoding on) draws other pyroomacoustics rooms, talkers, crops, noise and activity. The
    `fra` set's rooms are the seed protocol's eval split whatever the split."""
    salt = () if split == "test" else (split,)
    return {key: stable_seed("bench_accuracy", *salt, key) for key in SEED_KEYS}


SEEDS = split_seeds("test")  # bench_accuracy --split updates it in place before any set is built
SETS = {
    "fra": "FRA-RIR (this project's renderer, seed protocol, eval seed stream: held-out rooms)",
    "pra": "pyroomacoustics ISM, inverse-Sabine absorption, same prior (a simulator never trained on)",
    "diffuse0": "the pra mixtures + spherically diffuse pink noise at 0 dB SNR",
    "diffuse10": "the pra mixtures + spherically diffuse pink noise at 10 dB SNR",
    "diffuse20": "the pra mixtures + spherically diffuse pink noise at 20 dB SNR",
    "sensor10": "the pra mixtures + independent white sensor noise at 10 dB SNR",
    "count": "0-3 talkers (equal shares) with onsets/offsets, pyroomacoustics ISM rooms, diffuse floor 30 dB down",
    "count20": "the count set's talkers, onsets and floor in rooms whose sources are >= 20 deg apart (lateral)",
    "spacing5": "the pra scenes with the mics 5 cm apart",
    "spacing8": "the pra scenes with the mics 8 cm apart",
    "spacing12": "the pra scenes with the mics 12 cm apart",
    "spacing18": "the pra scenes with the mics 18 cm apart",
    "mismatch": "the pra mixtures with mic 1 +-2 dB in gain and +-0.3 sample in latency",
    "pra8k": "the pra mixtures recorded at 8 kHz (telephone band: nothing above 4 kHz)",
}
GROUPS = {"a": ["fra"], "b": ["pra"], "c": ["diffuse0", "diffuse10", "diffuse20", "sensor10"], "d": ["count", "count20"],
          "e": ["spacing5", "spacing8", "spacing12", "spacing18", "mismatch", "pra8k"]}
GROUP_NAMES = {"noise": "c", "arrays": "e"}
NOISE_SETS = {"diffuse0": ("diffuse", 0.0), "diffuse10": ("diffuse", 10.0), "diffuse20": ("diffuse", 20.0),
              "sensor10": ("sensor", 10.0)}
SPACING_SETS = {"spacing5": 0.05, "spacing8": 0.08, "spacing12": 0.12, "spacing18": 0.18}


class BenchError(Exception):
    """Bad input; printed as one line."""


def set_mic_spacing(name: str) -> float:
    """leaf set name -> its mic spacing in metres."""
    return SPACING_SETS.get(name, MIC_SPACING)


def set_sample_rate(name: str) -> int:
    """leaf set name -> the sample rate its waves are stored (and given to the models) at."""
    return RATE_SETS.get(name, SR)


def at_bench_rate(waves: np.ndarray, sr: int) -> np.ndarray:
    """waves float32 [N, 2, T] at sr -> [N, 2, T * SR / sr] at the benchmark's rate (the classical methods' input)."""
    if sr == SR:
        return waves
    return resample(torch.from_numpy(np.ascontiguousarray(waves)), sr, SR).numpy().astype(np.float32)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """-> (fn(), wall seconds)."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- speech


@dataclass(frozen=True)
class Utterance:
    """One speech file: its path relative to the speech folder, talker, duration, and where its bytes are."""
    path: str
    talker: str
    seconds: float
    container: str  # the shard (.tar) holding it, or the audio file itself
    key: str | None = None  # its sample key inside the shard


def talker_of(relative: str) -> str:
    """'level/nl/<prefix>-<character>-<name>.ogg' -> '<character>'; names without that pattern -> their folder or
    name prefix (shards.audio.speaker_of)."""
    fields = PurePosixPath(relative).stem.split("-")
    if len(fields) >= 3 and fields[1]:
        return fields[1]
    return speaker_of(PurePosixPath(relative))


def index_speech_shards(folder: Path) -> list[Utterance]:
    """speech shard folder -> its utterances (from the json members; no audio decoded)."""
    found = []
    for tar in sorted(folder.glob("speech-*.tar")):
        for key, parts in read_samples(tar):
            _, meta = speech_member(key, parts, str(tar))
            path = str(meta.get("path", key))
            found.append(Utterance(path, talker_of(path), float(meta["duration"]), str(tar), key))
    return found


def index_speech_folder(folder: Path) -> list[Utterance]:
    """audio folder -> its utterances (durations from the file headers)."""
    found = []
    for relative in find_audio(folder):
        info = soundfile.info(str(folder / relative))
        found.append(Utterance(str(relative), talker_of(str(relative)), info.frames / info.samplerate,
                               str(folder / relative)))
    return found


def speech_kind(folder: Path) -> str:
    """speech folder -> 'shards' or 'folder'; BenchError when it is missing or holds no audio."""
    hint = "run `bash examples/prepare_speech.sh` to build shards/speech/eval, or pass --speech DIR"
    if not folder.is_dir():
        raise BenchError(f"--speech {folder}: no such folder; {hint}")
    if any(folder.glob("speech-*.tar")):
        return "shards"
    if find_audio(folder):
        return "folder"
    raise BenchError(f"--speech {folder}: holds neither speech shards (speech-*.tar) nor wav/flac/ogg files; {hint}")


def index_speech(folder: Path) -> list[Utterance]:
    """speech folder (shards or audio files) -> utterances with a positive duration, sorted by path."""
    try:
        found = index_speech_shards(folder) if speech_kind(folder) == "shards" else index_speech_folder(folder)
    except (ShardError, RuntimeError, KeyError, ValueError) as err:
        raise BenchError(f"--speech {folder}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    found = sorted((u for u in found if u.seconds > 0), key=lambda u: u.path)
    if not found:
        raise BenchError(f"--speech {folder}: no non-empty speech")
    return found


def speech_listing(folder: Path) -> dict[str, Any]:
    """speech folder -> a fingerprint of its listing: kind, file count and sha256 of (name, size) pairs."""
    kind = speech_kind(folder)
    files = sorted(folder.glob("speech-*.tar")) if kind == "shards" else [folder / p for p in find_audio(folder)]
    stats = [[str(p.relative_to(folder).as_posix()), p.stat().st_size] for p in files]
    digest = hashlib.sha256(json.dumps(stats).encode()).hexdigest()
    return {"folder": str(folder), "kind": kind, "files": len(stats), "sha256": digest}


def pick_talkers(talkers: list[str], rng: random.Random, count: int = 2) -> list[str]:
    """talker of every utterance [U] -> `count` talkers, each drawn in proportion to its utterance count among those
    not yet chosen; distinct while there are enough (then the first one again)."""
    chosen = [rng.choice(talkers)]
    while len(chosen) < count:
        others = [t for t in talkers if t not in chosen]
        chosen.append(rng.choice(others) if others else chosen[0])
    return chosen


def draw_files(pool: list[int], seconds: list[float], need: float, rng: random.Random) -> list[int]:
    """utterance indices of one talker, durations [U] -> indices in a random order (cycling through the pool) until
    their durations add up to >= need seconds."""
    order = rng.sample(pool, len(pool))
    chosen, total = [], 0.0
    while total < need:
        pick = order[len(chosen) % len(order)]
        chosen.append(pick)
        total += seconds[pick]
    return chosen


def plan_mixtures(utterances: list[Utterance], count: int, seed: int, sources: int = 2) -> list[dict[str, Any]]:
    """utterances, N, seed -> N mixture plans of `sources` talkers (talkers, files per source, gains, crop seeds);
    mixture i depends only on (utterances, seed, sources, i), not on N."""
    talkers = [u.talker for u in utterances]
    seconds = [u.seconds for u in utterances]
    pools: dict[str, list[int]] = {}
    for i, talker in enumerate(talkers):
        pools.setdefault(talker, []).append(i)
    plans = []
    for i in range(count):
        rng = random.Random(stable_seed("bench_accuracy", "mixture", seed, i))
        chosen = pick_talkers(talkers, rng, sources)
        files = [draw_files(pools[t], seconds, CLIP / SR, rng) for t in chosen]
        plans.append({"talkers": chosen, "files": files, "paths": [[utterances[f].path for f in s] for s in files],
                      "gain_db": [rng.uniform(*GAIN_DB) for _ in chosen],
                      "crop_seed": [rng.getrandbits(63) for _ in chosen]})
    return plans


def decode_utterances(utterances: list[Utterance], wanted: set[int]) -> dict[int, np.ndarray]:
    """utterances, indices wanted -> {index: mono float32 [T] at 16 kHz}."""
    out: dict[int, np.ndarray] = {}
    by_container: dict[str, list[int]] = {}
    for i in sorted(wanted):
        by_container.setdefault(utterances[i].container, []).append(i)
    bar = tqdm(total=len(wanted), desc="speech", unit="file")
    try:
        for container, indices in by_container.items():
            if utterances[indices[0]].key is None:  # a plain audio file
                for i in indices:
                    out[i] = decode_audio(container, utterances[i].path, sr=SR)[0]
                    bar.update(1)
                continue
            keys = {utterances[i].key: i for i in indices}
            for key, parts in read_samples(container):
                if key in keys:
                    ext, _ = speech_member(key, parts, container)
                    out[keys[key]] = decode_audio(parts[ext], utterances[keys[key]].path, sr=SR)[0]
                    bar.update(1)
    except (ShardError, ValueError) as err:  # a file or shard that changed or broke since it was listed
        raise BenchError(f"speech: {str(err).splitlines()[0]}") from None
    finally:
        bar.close()
    missing = wanted - set(out)
    if missing:
        raise BenchError(f"speech: {len(missing)} file(s) listed but not found again, e.g. {utterances[min(missing)].path}")
    return out


def render_speech(utterances: list[Utterance], plans: list[dict[str, Any]]) -> np.ndarray:
    """utterances, N plans of S sources -> dry speech float32 [N, S, CLIP]: each source's files concatenated, a 3 s
    crop (shards.audio.fit_length: random, redrawn while near-silent)."""
    audio = decode_utterances(utterances, {f for plan in plans for files in plan["files"] for f in files})
    speech = np.zeros((len(plans), len(plans[0]["files"]), CLIP), dtype=np.float32)
    for n, plan in enumerate(plans):
        for s, files in enumerate(plan["files"]):
            joined = np.concatenate([audio[f] for f in files])
            speech[n, s] = fit_length(joined, CLIP, random.Random(plan["crop_seed"][s]))
    return speech


# ---------------------------------------------------------------------------------------------- rooms


@dataclass
class Rooms:
    """N scenes: RIRs float32 [2 mics, S sources, L] each, RT60 [N], per-source truth, how they were built."""
    rir: list[np.ndarray]
    rt60: np.ndarray
    sources: list[list[dict[str, float]]]
    info: dict[str, Any]


def fra_rooms(folder: Path, count: int) -> Rooms:
    """shard folder, N -> the first N scenes of the seed protocol's eval split (written there if missing)."""
    try:
        manifest = generate_dataset(folder, splits={"eval": count}, workers=1, progress=True)["eval"]
    except ConfigError as err:  # e.g. a folder written by another generator version
        raise BenchError(f"{folder}: {err}") from None
    header = load_manifest(manifest)
    rir, rt60, sources, shard_names = [], [], [], []
    for record in header["shards"]:
        shard = manifest.parent / record["name"]
        shard_names.append(record["name"])
        for key, parts in read_samples(shard):
            sample = decode_rir(key, parts, str(shard))
            rir.append(sample.rir)
            rt60.append(float(sample.meta["rt60"]))
            sources.append([{k: float(src[k]) for k in ("lateral_deg", "azimuth_deg", "elevation_deg", "distance_m",
                                                        "tdoa_s")} for src in sample.meta["sources"]])
    if len(rir) < count:
        raise BenchError(f"{manifest}: holds {len(rir)} scenes, expected {count}")
    cfg = SimulateConfig()
    info = {"renderer": f"FRA-RIR ({GENERATOR_VERSION}), decay {cfg.decay}", "split": "eval",
            "config": {k: v for k, v in config_to_dict(cfg).items() if k != "splits"},
            "shards": shard_names, "shard_seeds": [shard_seed(cfg.seed, "eval", k) for k in range(len(shard_names))],
            "manifest_sha256": sha256_file(manifest)}
    return Rooms(rir[:count], np.array(rt60[:count]), sources[:count], info)


def pra_rir(room_dim: list[float], mic_pos: np.ndarray, src_pos: np.ndarray, rt60: float | None) -> tuple[np.ndarray, dict]:
    """room [3], mics [M, 3], sources [S, 3], RT60 (None: anechoic, direct paths only) -> (RIR float32 [M, S, L],
    {max_order, absorption, tail_db}); ValueError where inverse Sabine has no absorption for that room and RT60.

    Absorption and image order from inverse Sabine (Sabine's formula solved for the absorption, pyroomacoustics'
    inverse_sabine); the RIR is cut at ceil(1.5 * sr * RT60) samples and tail_db is the energy dropped (dB re total).
    """
    pra.constants.set("c", SOUND_SPEED)
    if rt60 is None:
        room = pra.ShoeBox(room_dim, fs=SR, max_order=0)
        absorption, order = 1.0, 0
    else:
        absorption, order = pra.inverse_sabine(rt60, room_dim)
        room = pra.ShoeBox(room_dim, fs=SR, materials=pra.Material(absorption), max_order=order)
    for src in np.asarray(src_pos, float):
        room.add_source(src.tolist())
    room.add_microphone_array(np.asarray(mic_pos, float).T)
    room.compute_rir()
    full = max(len(r) for per_mic in room.rir for r in per_mic)
    length = full if rt60 is None else min(full, math.ceil(RIR_TAIL_RT60 * SR * rt60))
    rir = np.zeros((len(room.rir), len(room.rir[0]), full), dtype=np.float64)
    for m, per_mic in enumerate(room.rir):
        for s, r in enumerate(per_mic):
            rir[m, s, :len(r)] = r
    total = float(np.square(rir).sum())
    dropped = float(np.square(rir[..., length:]).sum())
    tail_db = 10 * math.log10(dropped / total) if dropped > 0 and total > 0 else -math.inf
    return rir[..., :length].astype(np.float32), {"max_order": int(order), "absorption": float(absorption),
                                                  "tail_db": tail_db}


def source_rows(geometry: dict[str, torch.Tensor], b: int) -> list[dict[str, float]]:
    """source_geometry dict of [B, S] tensors, scene b -> one dict per source."""
    keys = ("lateral_deg", "azimuth_deg", "elevation_deg", "distance_m", "tdoa_s")
    return [{k: float(geometry[k][b, s]) for k in keys} for s in range(geometry["tdoa_s"].shape[1])]


def pair_config(spacing: float = MIC_SPACING, sources: int = 2) -> SimulateConfig:
    """mic spacing (m), sources -> the seed prior with that pair (on x around the array centre) and source count."""
    default = SimulateConfig()
    if spacing == MIC_SPACING and sources == default.num_sources:
        return default
    half = spacing / 2
    return replace(default, mic_positions=[(-half, 0.0, 0.0), (half, 0.0, 0.0)], num_sources=sources)


def pra_rooms(count: int, seed: int, cfg: SimulateConfig | None = None) -> Rooms:
    """N, seed, prior (default: the seed protocol) -> N scenes of it rendered by pyroomacoustics (scenes inverse
    Sabine rejects are skipped and counted; scenes are drawn in fixed chunks, so the first do not depend on N)."""
    cfg = cfg or SimulateConfig()
    rir, rt60, sources, orders, tails, rejected = [], [], [], [], [], []
    bar = tqdm(total=count, desc="pyroomacoustics rooms", unit="scene")
    chunk = 0
    while len(rir) < count:
        scenes = sample_scenes(cfg, PRA_SCENE_CHUNK, torch.Generator().manual_seed(stable_seed(seed, chunk)))
        geometry = source_geometry(scenes.src_pos, scenes.mic_pos, scenes.array_pos, cfg.sound_speed)
        for b in range(len(scenes)):
            if len(rir) == count:
                break
            try:
                r, info = pra_rir(scenes.room_dim[b].tolist(), scenes.mic_pos[b].numpy(), scenes.src_pos[b].numpy(),
                                  float(scenes.rt60[b]))
            except ValueError:  # "room may be too large for required RT60": Sabine has no absorption for it
                rejected.append({"chunk": chunk, "scene": b, "room_dim": scenes.room_dim[b].tolist(),
                                 "rt60": float(scenes.rt60[b])})
                continue
            rir.append(r)
            rt60.append(float(scenes.rt60[b]))
            sources.append(source_rows(geometry, b))
            orders.append(info["max_order"])
            tails.append(info["tail_db"])
            bar.update(1)
        chunk += 1
    bar.close()
    info = {"renderer": f"pyroomacoustics {pra.__version__} ISM (inverse Sabine)", "seed": seed,
            "chunk": PRA_SCENE_CHUNK, "chunk_seeds": [stable_seed(seed, k) for k in range(chunk)],
            "rejected_by_inverse_sabine": len(rejected), "rejected_scenes": rejected,
            "drawn": len(rir) + len(rejected), "max_order_range": [min(orders), max(orders)],
            "rir_cut_tail_db_max": max(tails), "sound_speed": SOUND_SPEED}
    if cfg != SimulateConfig():
        info.update(mic_positions=[list(p) for p in cfg.mic_positions], num_sources=cfg.num_sources)
    return Rooms(rir, np.array(rt60), sources, info)


def mix_set(rirs: list[np.ndarray], speech: np.ndarray, gain_db: np.ndarray, chunk: int = 8,
            normalize: str = "peak") -> np.ndarray:
    """RIRs (N x [2, S, L]), dry speech [N, S, T], gains [N, S] dB -> mixtures float32 [N, 2, T] (peak-normalized
    unless normalize='none')."""
    waves = np.zeros((len(rirs), 2, speech.shape[-1]), dtype=np.float32)
    for start in tqdm(range(0, len(rirs), chunk), desc="mix", unit="chunk"):
        part = rirs[start:start + chunk]
        length = max(r.shape[-1] for r in part)
        rir = torch.zeros(len(part), *part[0].shape[:2], length)
        for i, r in enumerate(part):
            rir[i, :, :, :r.shape[-1]] = torch.from_numpy(r)
        wave = mix(torch.from_numpy(speech[start:start + chunk]), rir,
                   gain_db=torch.from_numpy(gain_db[start:start + chunk]).float(), normalize=normalize)
        waves[start:start + chunk] = wave.numpy()
    return waves


# ---------------------------------------------------------------------------------------------- noise and arrays


def fibonacci_sphere(count: int) -> np.ndarray:
    """-> unit vectors [count, 3] of the Fibonacci lattice: equal-area, near-uniform points on the sphere
    (Gonzalez, Math. Geosci. 42, 2010: z = 1 - (2i + 1) / n, longitude i times the golden angle)."""
    i = np.arange(count)
    z = 1.0 - (2 * i + 1) / count
    radius = np.sqrt(1.0 - z * z)
    longitude = i * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack((radius * np.cos(longitude), radius * np.sin(longitude), z), axis=-1)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """-> a rotation matrix [3, 3] drawn uniformly (Haar): QR of a Gaussian matrix with the signs of R's diagonal
    moved into Q (Mezzadri, Notices AMS 54, 2007), reflected into SO(3)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def pink_spectrum(samples: int, sr: int = SR) -> np.ndarray:
    """-> rfft amplitude weights [samples // 2 + 1] of a 1/f power spectrum (flat below PINK_FLOOR_HZ, 0 at DC)."""
    freq = np.fft.rfftfreq(samples, 1.0 / sr)
    weight = 1.0 / np.sqrt(np.maximum(freq, PINK_FLOOR_HZ))
    weight[0] = 0.0
    return weight


def diffuse_noise(samples: int, mic_x: np.ndarray, rng: np.random.Generator, waves: int = DIFFUSE_WAVES,
                  sr: int = SR, sound_speed: float = SOUND_SPEED) -> np.ndarray:
    """samples T, mic positions on the array axis [M] (m) -> spherically diffuse pink noise float64 [M, T] of unit
    power per mic.

    The physical definition of a spherically isotropic field: `waves` far-field plane waves from directions
    uniform on the sphere (a randomly rotated Fibonacci lattice), each an independent pink noise signal. A wave
    from unit direction u reaches the mic at x on the axis -x u_x / c before the array centre; the delays are
    applied exactly as an FFT phase (circular, so every wave stays stationary over the clip). The expected
    inter-mic coherence is then sinc(2 pi f d / c) (Cook et al., JASA 27(6), 1955). Independent of
    training/data/noise.py, which builds such fields from the coherence instead.
    """
    directions = fibonacci_sphere(waves) @ random_rotation(rng).T
    delays = -np.outer(directions[:, 0], np.asarray(mic_x, float)) / sound_speed  # [K, M] seconds
    omega = 2 * np.pi * np.fft.rfftfreq(samples, 1.0 / sr)
    shaping = pink_spectrum(samples, sr)
    field = np.zeros((len(mic_x), omega.size), dtype=np.complex128)
    for start in range(0, waves, 32):  # 32 waves at a time bounds memory
        spectra = np.fft.rfft(rng.standard_normal((min(32, waves - start), samples)), axis=-1) * shaping
        phase = np.exp(-1j * delays[start:start + 32, :, None] * omega)  # [k, M, F]
        field += np.einsum("kf,kmf->mf", spectra, phase)
    noise = np.fft.irfft(field, n=samples, axis=-1)
    return noise / np.sqrt(np.mean(noise ** 2, axis=-1, keepdims=True))


def peak_normalized(waves: np.ndarray) -> np.ndarray:
    """waves [N, M, T] -> float32, each mixture at the training peak level (ssl_model.features.normalize_wave)."""
    return normalize_wave(torch.from_numpy(np.asarray(waves, np.float64))).float().numpy()


def pair_x(spacing: float) -> np.ndarray:
    """spacing (m) -> mic positions on the array axis [2]: -d/2, +d/2."""
    return np.array([-spacing / 2, spacing / 2])


def noisy_waves(clean: np.ndarray, kind: str, snr_db: float, seed: int) -> np.ndarray:
    """clean mixtures [N, 2, T], 'diffuse' | 'sensor', SNR dB -> noisy mixtures float32 [N, 2, T] (peak-normalized);
    mixture i's noise depends only on (seed, kind, i)."""
    out = np.zeros_like(clean, dtype=np.float64)
    for i in tqdm(range(len(clean)), desc=f"{kind} noise", unit="mixture"):
        rng = np.random.default_rng(stable_seed(seed, kind, i))
        samples = clean.shape[-1]
        noise = (diffuse_noise(samples, pair_x(MIC_SPACING), rng) if kind == "diffuse"
                 else rng.standard_normal((clean.shape[1], samples)))
        # training's SNR (training.data.mixing.add_at_snr): relative to the clean mixture's power over mics and samples
        out[i] = add_at_snr(torch.from_numpy(clean[i].astype(np.float64))[None], torch.from_numpy(noise)[None],
                            torch.tensor([snr_db], dtype=torch.float64))[0].numpy()
    return peak_normalized(out)


def fractional_delay(signal: np.ndarray, samples: float) -> np.ndarray:
    """[..., T] -> [..., T] delayed by a fractional number of samples: linear phase on a zero-padded FFT (no wrap)."""
    n = 2 * signal.shape[-1]
    freq = np.fft.rfftfreq(n)
    shifted = np.fft.rfft(signal, n=n, axis=-1) * np.exp(-2j * np.pi * freq * samples)
    return np.fft.irfft(shifted, n=n, axis=-1)[..., :signal.shape[-1]]


def mismatch_draws(count: int, seed: int) -> np.ndarray:
    """N, seed -> [N, 2]: mic 1's gain error (dB) and latency error (samples), each +- its size with a random sign."""
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(count, 2))
    return signs * np.array([MISMATCH_GAIN_DB, MISMATCH_LATENCY_SAMPLES])


def mismatched_waves(clean: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """mixtures [N, 2, T], draws [N, 2] (mic 1's gain dB, latency samples) -> mismatched mixtures float32 [N, 2, T]."""
    out = clean.astype(np.float64)
    for i, (gain_db, latency) in enumerate(draws):
        out[i, 1] = 10 ** (gain_db / 20) * fractional_delay(out[i, 1], latency)
    return peak_normalized(out)


# ---------------------------------------------------------------------------------------------- talkers that come and go


def count_plan(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """N, seed -> (talker count [N] int: i % 4, so equal shares; activity [N, 3, 2] float: each active talker's
    onset and offset in seconds, NaN for silent slots). An active talker speaks over a random sub-interval of at
    least COUNT_MIN_ACTIVE_S: length U(min, clip), onset U(0, clip - length)."""
    clip_s = CLIP / SR
    counts = np.arange(count) % (COUNT_MAX + 1)
    activity = np.full((count, COUNT_MAX, 2), np.nan)
    for i in range(count):
        rng = random.Random(stable_seed(seed, i))
        for s in range(counts[i]):
            length = rng.uniform(COUNT_MIN_ACTIVE_S, clip_s)
            onset = rng.uniform(0.0, clip_s - length)
            activity[i, s] = onset, onset + length
    return counts, activity


def activity_envelope(onset_s: float, offset_s: float, samples: int = CLIP, sr: int = SR) -> np.ndarray:
    """onset, offset (s) -> gate [samples] in [0, 1]: 1 inside, raised-cosine ramps of COUNT_RAMP_S at each end."""
    t = np.arange(samples) / sr
    ramp = COUNT_RAMP_S
    rise = np.clip((t - onset_s) / ramp + 0.5, 0.0, 1.0)
    fall = np.clip((offset_s - t) / ramp + 0.5, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))


def gated_speech(dry: np.ndarray, activity: np.ndarray) -> np.ndarray:
    """dry speech [N, S, T], activity [N, S, 2] (NaN: silent) -> float32 [N, S, T], each source gated to its span."""
    out = np.zeros_like(dry)
    for i, s in zip(*np.nonzero(np.isfinite(activity[..., 0]))):
        out[i, s] = dry[i, s] * activity_envelope(*activity[i, s], samples=dry.shape[-1])
    return out


def count_waves(rirs: list[np.ndarray], dry: np.ndarray, gain_db: np.ndarray, activity: np.ndarray,
                seed: int) -> np.ndarray:
    """RIRs (N x [2, 3, L]), dry speech [N, 3, T], gains [N, 3], activity [N, 3, 2] -> mixtures float32 [N, 2, T]:
    the active talkers over a diffuse pink floor COUNT_FLOOR_DB below the mean power of one talker speaking
    throughout (so a clip with no talker is that floor alone), peak-normalized."""
    talkers = mix_set(rirs, gated_speech(dry, activity), gain_db, normalize="none").astype(np.float64)
    everyone = mix_set(rirs, dry, gain_db, normalize="none").astype(np.float64)
    out = np.zeros_like(talkers)
    for i in range(len(rirs)):
        rng = np.random.default_rng(stable_seed(seed, "floor", i))
        floor = diffuse_noise(talkers.shape[-1], pair_x(MIC_SPACING), rng)  # unit power per mic
        one_talker = float(np.mean(everyone[i] ** 2)) / dry.shape[1]
        out[i] = talkers[i] + math.sqrt(one_talker * 10 ** (-COUNT_FLOOR_DB / 10)) * floor
    return peak_normalized(out)


# ---------------------------------------------------------------------------------------------- cache


def set_params(name: str, count: int, listing: dict[str, Any]) -> dict[str, Any]:
    """-> everything that shapes a set's cached waves (a cache is reused only when these match)."""
    params = {"recipe": RECIPE, "set": name, "mixtures": count, "speech_seed": SEEDS["speech"], "speech": listing,
              "sr": SR, "clip": CLIP, "gain_db": list(GAIN_DB), "generator_version": GENERATOR_VERSION,
              "simulate_config": {k: v for k, v in config_to_dict(SimulateConfig()).items() if k != "splits"}}
    if name != "fra":
        params.update(pra_seed=SEEDS["pra"], pyroomacoustics=pra.__version__, rir_tail_rt60=RIR_TAIL_RT60,
                      sound_speed=SOUND_SPEED)
    if name in NOISE_SETS:
        kind, snr = NOISE_SETS[name]
        params.update(derived=DERIVED_RECIPE, noise=kind, snr_db=snr, noise_seed=SEEDS["noise"],
                      diffuse_waves=DIFFUSE_WAVES, pink_floor_hz=PINK_FLOOR_HZ)
    elif name == "mismatch":
        params.update(derived=DERIVED_RECIPE, mismatch_seed=SEEDS["mismatch"], gain_db_error=MISMATCH_GAIN_DB,
                      latency_samples_error=MISMATCH_LATENCY_SAMPLES)
    elif name in SPACING_SETS:
        params.update(derived=DERIVED_RECIPE, mic_spacing=SPACING_SETS[name])
    elif name in RATE_SETS:
        params.update(derived=DERIVED_RECIPE, sample_rate=RATE_SETS[name])
    elif name in COUNT_SETS:
        params.update(derived=DERIVED_RECIPE, speech_seed=SEEDS["count_speech"], pra_seed=SEEDS["count_rooms"],
                      activity_seed=SEEDS["count_activity"], max_count=COUNT_MAX, min_active_s=COUNT_MIN_ACTIVE_S,
                      ramp_s=COUNT_RAMP_S, floor_db=COUNT_FLOOR_DB, diffuse_waves=DIFFUSE_WAVES,
                      pink_floor_hz=PINK_FLOOR_HZ)
        if COUNT_SETS[name]:  # "count" keeps the parameters its caches were written with
            params.update(min_source_separation_deg=COUNT_SETS[name])
    return json.loads(json.dumps(params))  # as it reads back from the JSON


def truth_width(name: str) -> int:
    """set name -> columns of its truth array (sources per scene; the count set pads silent slots with NaN)."""
    return COUNT_MAX if name in COUNT_SETS else 2


def load_cached(folder: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """cache folder, expected params -> {'waves', 'truth', 'rt60', 'meta'} when a complete cache of those params is
    there, else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("params") != params:
            return None
        arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in ("waves", "truth", "rt60")}
    except (OSError, ValueError):
        return None
    n, width = params["mixtures"], truth_width(params["set"])
    samples = CLIP * set_sample_rate(params["set"]) // SR
    if arrays["waves"].shape != (n, 2, samples) or arrays["truth"].shape != (n, width) or arrays["rt60"].shape != (n,):
        return None
    return {**arrays, "meta": meta}


def save_set(folder: Path, waves: np.ndarray, truth: np.ndarray, rt60: np.ndarray, meta: dict[str, Any]) -> None:
    """Write a set's .npy files and meta.json into a temporary folder, then swap it in (never a half-written cache)."""
    temp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    for name, array, dtype in (("waves", waves, np.float32), ("truth", truth, np.float32), ("rt60", rt60, np.float32)):
        np.save(temp / f"{name}.npy", np.ascontiguousarray(array, dtype=dtype), allow_pickle=False)
    (temp / "meta.json").write_text(json.dumps(meta, indent=1, allow_nan=True))
    if folder.exists():
        shutil.rmtree(folder)
    temp.rename(folder)


def scene_rows(rooms: Rooms, plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """rooms, plans -> per-mixture metadata (room, sources, speech)."""
    return [{"rt60": float(rooms.rt60[i]), "sources": rooms.sources[i], "rir_length": int(rooms.rir[i].shape[-1]),
             "talkers": plans[i]["talkers"], "speech_files": plans[i]["paths"], "gain_db": plans[i]["gain_db"],
             "crop_seed": plans[i]["crop_seed"]} for i in range(len(rooms.rir))]


def finish_set(name: str, cache: Path, waves: np.ndarray, truth: np.ndarray, rt60: np.ndarray,
               meta: dict[str, Any]) -> dict[str, Any]:
    """Cache a built set (meta gains its description and build date) -> the dict load_cached returns."""
    meta = {**meta, "description": SETS[name], "built": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    save_set(cache / name, waves, truth, rt60, meta)
    return {"waves": waves, "truth": truth.astype(np.float32), "rt60": rt60.astype(np.float32), "meta": meta}


def truth_of(rooms: Rooms) -> np.ndarray:
    """rooms -> lateral angles float32 [N, S] in source order."""
    return np.array([[s["lateral_deg"] for s in row] for row in rooms.sources], dtype=np.float32)


def build_room_set(name: str, count: int, cache: Path, talkers: list[str], plans: list[dict[str, Any]],
                   speech: Callable[[], tuple[np.ndarray, float]], params: dict[str, Any]) -> dict[str, Any]:
    """Render set `name` (fra, pra, spacing8/12: rooms, mixtures), cache it -> the dict load_cached returns.
    `speech()` -> (dry speech [N, 2, T], seconds spent rendering it in this call: 0 when another set already did)."""
    if name == "fra":
        rooms, room_seconds = timed(lambda: fra_rooms(cache / "fra_shards", count))
    else:
        rooms, room_seconds = timed(lambda: pra_rooms(count, SEEDS["pra"], pair_config(set_mic_spacing(name))))
    dry, speech_seconds = speech()
    gains = np.array([p["gain_db"] for p in plans], dtype=np.float32)
    waves, mix_seconds = timed(lambda: mix_set(rooms.rir, dry, gains))
    meta = {"params": params, "rooms": rooms.info, "scenes": scene_rows(rooms, plans), "talkers": talkers,
            "mic_spacing": set_mic_spacing(name),
            "build_seconds": {"rooms": room_seconds, "speech": speech_seconds, "mix": mix_seconds}}
    return finish_set(name, cache, waves, truth_of(rooms), rooms.rt60, meta)


def build_derived_set(name: str, cache: Path, base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A noise, mismatch or sample-rate set from the pra set's mixtures `base` -> the dict load_cached returns."""
    if name in RATE_SETS:
        waves, seconds = timed(lambda: resample(torch.from_numpy(base["waves"]), SR, RATE_SETS[name]).numpy())
        extra = {"sr": RATE_SETS[name]}
    elif name in NOISE_SETS:
        kind, snr = NOISE_SETS[name]
        waves, seconds = timed(lambda: noisy_waves(base["waves"], kind, snr, SEEDS["noise"]))
        extra = {"noise": {"kind": kind, "snr_db": snr, "plane_waves": DIFFUSE_WAVES if kind == "diffuse" else None,
                           "spectrum": "pink (1/f, flat below 50 Hz)" if kind == "diffuse" else "white"}}
    else:
        draws = mismatch_draws(len(base["waves"]), SEEDS["mismatch"])
        waves, seconds = timed(lambda: mismatched_waves(base["waves"], draws))
        extra = {"mismatch": {"mic1_gain_db": draws[:, 0].tolist(), "mic1_latency_samples": draws[:, 1].tolist()}}
    base_meta = base["meta"]
    meta = {"params": params, "rooms": base_meta["rooms"], "scenes": base_meta["scenes"], "talkers": base_meta["talkers"],
            "mic_spacing": MIC_SPACING, "derived_from": "pra", **extra,
            "build_seconds": {**base_meta["build_seconds"], "derive": seconds}}
    return finish_set(name, cache, waves, base["truth"], base["rt60"], meta)


def build_count_set(name: str, count: int, cache: Path, utterances: list[Utterance],
                    params: dict[str, Any]) -> dict[str, Any]:
    """A count set: 3-source pyroomacoustics scenes (sources at least COUNT_SETS[name] degrees apart), 0-3 active
    talkers each -> the dict load_cached returns. Every count set has the same speech, onsets and floor."""
    plans = plan_mixtures(utterances, count, SEEDS["count_speech"], sources=COUNT_MAX)
    cfg = replace(pair_config(sources=COUNT_MAX), min_source_separation_deg=COUNT_SETS[name])
    rooms, room_seconds = timed(lambda: pra_rooms(count, SEEDS["count_rooms"], cfg))
    dry, speech_seconds = timed(lambda: render_speech(utterances, plans))
    counts, activity = count_plan(count, SEEDS["count_activity"])
    gains = np.array([p["gain_db"] for p in plans], dtype=np.float32)
    waves, mix_seconds = timed(lambda: count_waves(rooms.rir, dry, gains, activity, SEEDS["count_activity"]))
    truth = truth_of(rooms).astype(np.float64)
    truth[~np.isfinite(activity[..., 0])] = np.nan
    scenes = scene_rows(rooms, plans)
    for i, scene in enumerate(scenes):
        scene.update(count=int(counts[i]), active_s=[[round(float(t), 4) for t in span]
                                                     for span in activity[i, :counts[i]]])
    meta = {"params": params, "rooms": rooms.info, "scenes": scenes, "talkers": sorted({u.talker for u in utterances}),
            "mic_spacing": MIC_SPACING, "counts": counts.tolist(),
            "build_seconds": {"rooms": room_seconds, "speech": speech_seconds, "mix": mix_seconds}}
    return finish_set(name, cache, waves, truth, rooms.rt60, meta)


def load_sets(names: list[str], count: int, cache: Path, speech_dir: Path) -> dict[str, dict[str, Any]]:
    """leaf set names, N, cache root, speech folder -> {name: {'waves', 'truth', 'rt60', 'meta', 'cached'}}; builds
    what is missing or stale (the pra set too when a set derived from it needs building). The two-talker speech is
    rendered at most once and shared by every set built."""
    listing = speech_listing(speech_dir)
    out: dict[str, dict[str, Any]] = {}
    todo = []
    for name in names:
        params = set_params(name, count, listing)
        cached = load_cached(cache / name, params)
        if cached is not None:
            out[name] = {**cached, "cached": True}
        else:
            todo.append((name, params))
    if not todo:
        return out
    utterances = index_speech(speech_dir)
    talkers = sorted({u.talker for u in utterances})
    plans = plan_mixtures(utterances, count, SEEDS["speech"])
    dry: dict[str, np.ndarray] = {}

    def speech() -> tuple[np.ndarray, float]:
        if "waves" in dry:
            return dry["waves"], 0.0
        dry["waves"], seconds = timed(lambda: render_speech(utterances, plans))
        return dry["waves"], seconds

    def base() -> dict[str, Any]:
        if "pra" not in out:
            params = set_params("pra", count, listing)
            cached = load_cached(cache / "pra", params)
            out["pra"] = ({**cached, "cached": True} if cached is not None else
                          {**build_room_set("pra", count, cache, talkers, plans, speech, params), "cached": False})
        return out["pra"]

    for name, params in todo:
        if name in out:  # pra, built already as the base of a derived set
            continue
        if name in NOISE_SETS or name in RATE_SETS or name == "mismatch":
            built = build_derived_set(name, cache, base(), params)
        elif name in COUNT_SETS:
            built = build_count_set(name, count, cache, utterances, params)
        else:
            built = build_room_set(name, count, cache, talkers, plans, speech, params)
        out[name] = {**built, "cached": False}
    return {name: out[name] for name in names}
