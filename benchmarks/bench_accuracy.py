"""Accuracy on real speech in held-out rooms: the model(s) beside GCC-PHAT, pyroomacoustics' DOA and chance.

    python benchmarks/bench_accuracy.py [--speech shards/speech/eval] [--mixtures 400] [--cache bench_cache/accuracy]
                                        [--model FILE ...] [--run DIR ...] [--json out.json] [--sets fra,pra]

Two sets of N two-talker mixtures (3 s at 16 kHz, mics at x = -5 and +5 cm), built once, seeded and cached as
.npy files (no pickle) with a JSON of their metadata:
- `fra` (a): this project's FRA-RIR rooms under the seed protocol, from the eval split's seed stream (disjoint
  from the train split's, so the rooms are held out): `simulate.generate_dataset(..., splits={"eval": N})`.
- `pra` (b): rooms of the same prior (`simulate.scenes.sample_scenes` with the default SimulateConfig and a seed
  of their own) rendered by pyroomacoustics' image-source model with inverse-Sabine absorption, c = 340 m/s: a
  simulator the model never trained on. Scenes inverse Sabine cannot realize are skipped and counted.
Mixture i of both sets uses the same speech and gains, so the sets differ only in their rooms. Speech: held-out
talkers (by default the Dutch voice acting packed by `bash examples/prepare_speech.sh`), two characters per
mixture (different ones whenever the folder holds two), each a 3 s crop of random files of that character
concatenated to >= 3 s, gain U(-2.5, 2.5) dB; the two reverberant sources are summed and peak-normalized
(training.mixing.mix).

Every method sees the same waves and is scored on the lateral angle (the identifiable one, docs/protocol.md):
the model(s) through `ssl_model.localize`'s own code path, frame-voting GCC-PHAT (ssl_model.baselines),
pyroomacoustics' SRP-PHAT, MUSIC and NormMUSIC on one shared STFT per mixture, the best constant prediction
(chance) and the TDOA oracle's floor from a dense reference table (ssl_model.oracle).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np
import pyroomacoustics as pra
import soundfile
import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs import ConfigError, config_to_dict  # noqa: E402
from shards.audio import decode_audio, find_audio, fit_length, speaker_of  # noqa: E402
from shards.files import ShardError, read_samples, sha256_file  # noqa: E402
from shards.layout import shard_seed, stable_seed  # noqa: E402
from shards.manifest import load_manifest  # noqa: E402
from shards.samples import decode_rir, speech_member  # noqa: E402
from simulate import generate_dataset  # noqa: E402
from simulate.config import GENERATOR_VERSION, SimulateConfig  # noqa: E402
from simulate.scenes import sample_scenes  # noqa: E402
from simulate.geometry import source_geometry  # noqa: E402
from ssl_model.baselines import gcc_phat  # noqa: E402
from ssl_model.localize import PRETRAINED, LocalizeError, load_model_checked, localize_wave, weights_path  # noqa: E402
from ssl_model.metrics import localization_metrics  # noqa: E402
from ssl_model.oracle import chance_binned_mae, oracle_floor_binned_mae  # noqa: E402
from ssl_model.targets import angle_to_class  # noqa: E402
from training.evaluate import oracle_reference_table  # noqa: E402
from training.mixing import mix  # noqa: E402

RECIPE = "bench_accuracy/1"  # bump when anything that shapes the cached waves changes
SR = 16000
CLIP = 3 * SR  # 3 s per mixture
GAIN_DB = (-2.5, 2.5)
MIC_DISTANCE = 0.1
SOUND_SPEED = 340.0
MIC_OFFSETS = np.array([[-0.05, 0.05], [0.0, 0.0]])  # [xy, mics] relative to the array centre, for pra's DOA
NFFT, HOP = 512, 256
# Hz handed to pyroomacoustics' DOA (--freq-range). The full band above 300 Hz: with 10 cm spacing everything above
# c / 2d = 1.7 kHz aliases, and only a wide band averages the grating lobes out. On a 40-mixture dev set
# (both sets) [300, 3500] gave SRP-PHAT a lateral MAE of 34-36 degrees (chance level), [300, 8000] 16-20.
FREQ_RANGE = (300.0, 8000.0)
GRID_DEG = np.arange(0.0, 181.0, 1.0)  # a linear array along x cannot tell front from back: [0, 180] suffices
PRA_METHODS = ("SRP", "MUSIC", "NormMUSIC")
PRA_LABELS = {"SRP": "SRP-PHAT (pra)", "MUSIC": "MUSIC (pra)", "NormMUSIC": "NormMUSIC (pra)"}
PRA_SCENE_CHUNK = 64  # pra scenes are drawn in fixed chunks, so scene i does not depend on N
RIR_TAIL_RT60 = 1.5  # pra RIRs are cut at 1.5 * RT60 (the energy after it is ~90 dB down by definition of RT60)
ORACLE_REFERENCE_SOURCES = 200_000
SEEDS = {
    "speech": stable_seed("bench_accuracy", "speech"),
    "pra": stable_seed("bench_accuracy", "pra"),
    "oracle_reference": stable_seed("bench_accuracy", "oracle_reference"),
}
SETS = {"fra": "FRA-RIR (this project's renderer, seed protocol, eval seed stream: held-out rooms)",
        "pra": "pyroomacoustics ISM, inverse-Sabine absorption, same prior (a simulator never trained on)"}
SET_ALIASES = {"a": "fra", "b": "pra", "fra": "fra", "pra": "pra"}
RT60_BINS = (0.1, 0.3, 0.5, 0.7)
SEPARATION_BINS = (0.0, 10.0, 20.0, 40.0, 180.0)
NOTES = {
    "target": "lateral angle only: the angle between a source's direction and the +x array axis (mic 0 -> mic 1), "
              "0..180 degrees, which the TDOA fixes (azimuth is not identifiable from two mics, docs/protocol.md)",
    "metrics": "binned MAE per sorted slot: mean |floor(pred/5) - floor(true/5)| * 5 (the seed's metric); MAE in "
               "degrees; ACC@5/ACC@10: share of sources within 5/10 degrees; x real time: audio seconds per "
               "compute second (N * 3 s / wall time of the method, model loading excluded)",
    "speech": "mixture i of both sets uses the same two talkers, crops and gains; only the rooms differ",
    "gcc_phat": "ssl_model.baselines.gcc_phat, method 'votes' (512-sample Hann frames, hop 256, each voiced frame "
                "votes for its strongest lag on a 1/16-sample grid; the two top peaks), d = 0.1 m, c = 340 m/s",
    "pra_doa": f"pyroomacoustics.doa on one STFT per mixture (nfft {NFFT}, hop {HOP}, periodic Hann, built once and "
               f"handed to each algorithm; its time is counted in each), mics at x = -0.05/+0.05 m, c = 340 m/s, "
               "far field, azimuth grid 0..180 degrees in 1-degree steps (pra's azimuth from +x equals the lateral "
               "angle of a source at the array's height; for 2-D mic positions it is the lateral estimate), "
               "freq_range {freq_range} Hz (by default the full band above 300 Hz: everything above c / 2d = 1.7 kHz "
               "aliases at 10 cm spacing, and only a wide band averages the grating lobes out). The two estimates "
               "are the two largest local maxima of the spatial spectrum on the half-circle grid (not pra's circular "
               "peak finder), sorted ascending; with one maximum only, it is used twice",
    "music": "MUSIC and NormMUSIC run with a 1-dimensional signal subspace (num_src=1): with M = 2 mics and 2 "
             "sources the noise subspace would be empty; the two largest peaks of the resulting pseudo-spectrum "
             "give the two estimates",
    "chance": "the best constant prediction per sorted slot: the per-slot median of the true angles (binned MAE "
              "from ssl_model.oracle.chance_binned_mae, MAE/ACC from the median angle)",
    "oracle_floor": f"the TDOA oracle's expected binned MAE on the lateral angle (ssl_model.oracle): p(class | tdoa) "
                    f"from the 50 nearest in TDOA of {ORACLE_REFERENCE_SOURCES} reference sources drawn from the seed "
                    f"prior (leave-one-out among the set's own sources given beside it for comparison). For the pra "
                    f"set the prior is the seed prior minus the scenes inverse Sabine rejects",
    "pra_rooms": "pra.inverse_sabine(rt60, room_dim) -> (energy absorption, max order); pra.ShoeBox(room_dim, "
                 "fs=16000, materials=pra.Material(absorption), max_order=order), pyroomacoustics' fractional-delay "
                 "image sources (a fixed 40-sample offset common to both mics); RIRs cut at ceil(1.5 * 16000 * RT60) "
                 "samples (the tail energy dropped is reported)",
}


class BenchError(Exception):
    """Bad input; printed as one line."""


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


def pair_talkers(talkers: list[str], rng: random.Random) -> tuple[str, str]:
    """talker of every utterance [U] -> two talkers, each drawn in proportion to its utterance count; distinct
    whenever there are two or more."""
    first = rng.choice(talkers)
    others = [t for t in talkers if t != first]
    return first, rng.choice(others) if others else first


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


def plan_mixtures(utterances: list[Utterance], count: int, seed: int) -> list[dict[str, Any]]:
    """utterances, N, seed -> N mixture plans (talkers, files per source, gains, crop seeds); mixture i depends only
    on (utterances, seed, i), not on N."""
    talkers = [u.talker for u in utterances]
    seconds = [u.seconds for u in utterances]
    pools: dict[str, list[int]] = {}
    for i, talker in enumerate(talkers):
        pools.setdefault(talker, []).append(i)
    plans = []
    for i in range(count):
        rng = random.Random(stable_seed("bench_accuracy", "mixture", seed, i))
        pair = pair_talkers(talkers, rng)
        files = [draw_files(pools[t], seconds, CLIP / SR, rng) for t in pair]
        plans.append({"talkers": list(pair), "files": files, "paths": [[utterances[f].path for f in s] for s in files],
                      "gain_db": [rng.uniform(*GAIN_DB) for _ in pair], "crop_seed": [rng.getrandbits(63) for _ in pair]})
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
    """utterances, N plans -> dry speech float32 [N, 2, CLIP]: each source's files concatenated, a 3 s crop
    (shards.audio.fit_length: random, redrawn while near-silent)."""
    audio = decode_utterances(utterances, {f for plan in plans for files in plan["files"] for f in files})
    speech = np.zeros((len(plans), 2, CLIP), dtype=np.float32)
    for n, plan in enumerate(plans):
        for s, files in enumerate(plan["files"]):
            joined = np.concatenate([audio[f] for f in files])
            speech[n, s] = fit_length(joined, CLIP, random.Random(plan["crop_seed"][s]))
    return speech


# ---------------------------------------------------------------------------------------------- rooms


@dataclass
class Rooms:
    """N scenes: RIRs float32 [2 mics, 2 sources, L] each, RT60 [N], per-source truth, how they were built."""
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


def pra_rooms(count: int, seed: int) -> Rooms:
    """N, seed -> N seed-prior scenes rendered by pyroomacoustics (scenes inverse Sabine rejects are skipped and
    counted; scenes are drawn in fixed chunks, so the first scenes do not depend on N)."""
    cfg = SimulateConfig()
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
    return Rooms(rir, np.array(rt60), sources, info)


def mix_set(rirs: list[np.ndarray], speech: np.ndarray, gain_db: np.ndarray, chunk: int = 8) -> np.ndarray:
    """RIRs (N x [2, 2, L]), dry speech [N, 2, T], gains [N, 2] dB -> peak-normalized mixtures float32 [N, 2, T]."""
    waves = np.zeros((len(rirs), 2, speech.shape[-1]), dtype=np.float32)
    for start in tqdm(range(0, len(rirs), chunk), desc="mix", unit="chunk"):
        part = rirs[start:start + chunk]
        length = max(r.shape[-1] for r in part)
        rir = torch.zeros(len(part), 2, 2, length)
        for i, r in enumerate(part):
            rir[i, :, :, :r.shape[-1]] = torch.from_numpy(r)
        wave = mix(torch.from_numpy(speech[start:start + chunk]), rir,
                   gain_db=torch.from_numpy(gain_db[start:start + chunk]).float(), normalize="peak")
        waves[start:start + chunk] = wave.numpy()
    return waves


# ---------------------------------------------------------------------------------------------- cache


def set_params(name: str, count: int, listing: dict[str, Any]) -> dict[str, Any]:
    """-> everything that shapes a set's cached waves (a cache is reused only when these match)."""
    params = {"recipe": RECIPE, "set": name, "mixtures": count, "speech_seed": SEEDS["speech"], "speech": listing,
              "sr": SR, "clip": CLIP, "gain_db": list(GAIN_DB), "generator_version": GENERATOR_VERSION,
              "simulate_config": {k: v for k, v in config_to_dict(SimulateConfig()).items() if k != "splits"}}
    if name == "pra":
        params.update(pra_seed=SEEDS["pra"], pyroomacoustics=pra.__version__, rir_tail_rt60=RIR_TAIL_RT60,
                      sound_speed=SOUND_SPEED)
    return json.loads(json.dumps(params))  # as it reads back from the JSON


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
    n = params["mixtures"]
    if arrays["waves"].shape != (n, 2, CLIP) or arrays["truth"].shape != (n, 2) or arrays["rt60"].shape != (n,):
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


def build_set(name: str, count: int, cache: Path, utterances: list[Utterance], plans: list[dict[str, Any]],
              speech: Callable[[], tuple[np.ndarray, float]], params: dict[str, Any]) -> dict[str, Any]:
    """Render set `name` (rooms, mixtures), cache it -> the same dict load_cached returns. `speech()` -> (dry
    speech [N, 2, T], seconds spent rendering it in this call: 0 when another set already did)."""
    rooms, room_seconds = timed(lambda: fra_rooms(cache / "fra_shards", count) if name == "fra"
                                else pra_rooms(count, SEEDS["pra"]))
    dry, speech_seconds = speech()
    mix_start = time.perf_counter()
    gains = np.array([p["gain_db"] for p in plans], dtype=np.float32)
    waves = mix_set(rooms.rir, dry, gains)
    truth = np.array([[s["lateral_deg"] for s in row] for row in rooms.sources], dtype=np.float32)
    scenes = [{"rt60": float(rooms.rt60[i]), "sources": rooms.sources[i], "rir_length": int(rooms.rir[i].shape[-1]),
               "talkers": plans[i]["talkers"], "speech_files": plans[i]["paths"], "gain_db": plans[i]["gain_db"],
               "crop_seed": plans[i]["crop_seed"]} for i in range(count)]
    meta = {"params": params, "description": SETS[name], "rooms": rooms.info, "scenes": scenes,
            "talkers": sorted({u.talker for u in utterances}),
            "build_seconds": {"rooms": room_seconds, "speech": speech_seconds, "mix": time.perf_counter() - mix_start},
            "built": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    save_set(cache / name, waves, truth, rooms.rt60, meta)
    return {"waves": waves, "truth": truth, "rt60": rooms.rt60.astype(np.float32), "meta": meta}


def load_sets(names: list[str], count: int, cache: Path, speech_dir: Path) -> dict[str, dict[str, Any]]:
    """set names, N, cache root, speech folder -> {name: {'waves', 'truth', 'rt60', 'meta', 'cached'}}; builds what
    is missing or stale. The speech is rendered at most once and shared by every set built."""
    listing = speech_listing(speech_dir)
    out, todo = {}, []
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
    plans = plan_mixtures(utterances, count, SEEDS["speech"])
    dry: dict[str, np.ndarray] = {}

    def speech() -> tuple[np.ndarray, float]:
        if "waves" in dry:
            return dry["waves"], 0.0
        dry["waves"], seconds = timed(lambda: render_speech(utterances, plans))
        return dry["waves"], seconds

    for name, params in todo:
        out[name] = {**build_set(name, count, cache, utterances, plans, speech, params), "cached": False}
    return out


# ---------------------------------------------------------------------------------------------- methods


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """-> (fn(), wall seconds)."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def gcc_angles(waves: np.ndarray, chunk: int = 32) -> np.ndarray:
    """waves [N, 2, T] -> frame-voting GCC-PHAT lateral angles [N, 2], sorted."""
    out = [gcc_phat(torch.from_numpy(waves[i:i + chunk]), sr=SR, mic_distance=MIC_DISTANCE, sound_speed=SOUND_SPEED)
           for i in tqdm(range(0, len(waves), chunk), desc="GCC-PHAT", unit="batch")]
    return torch.cat(out).double().numpy()


def stft(wave: np.ndarray) -> np.ndarray:
    """wave [M, T] -> X complex [M, NFFT//2+1, frames] (periodic Hann, hop HOP): pyroomacoustics' DOA input layout."""
    window = np.hanning(NFFT + 1)[:-1]
    frames = np.lib.stride_tricks.sliding_window_view(wave, NFFT, axis=-1)[:, ::HOP]  # [M, frames, NFFT]
    return np.fft.rfft(frames * window, axis=-1).transpose(0, 2, 1)


def make_doa(name: str) -> pra.doa.DOA:
    """'SRP' | 'MUSIC' | 'NormMUSIC' -> pyroomacoustics DOA object on the half-circle grid (MUSIC-type: num_src=1)."""
    return pra.doa.algorithms[name](MIC_OFFSETS, SR, NFFT, c=SOUND_SPEED, num_src=2 if name == "SRP" else 1,
                                    azimuth=np.deg2rad(GRID_DEG))


def grid_peaks(values: np.ndarray, count: int = 2) -> np.ndarray:
    """spectrum on the half-circle grid [G] -> indices [count] of its largest local maxima (ends count, no wrap);
    fewer maxima than `count`: the best repeated."""
    v = np.asarray(values, float)
    left = np.concatenate(([-np.inf], v[:-1]))
    right = np.concatenate((v[1:], [-np.inf]))
    maxima = np.flatnonzero((v >= left) & (v > right))
    if maxima.size == 0:
        maxima = np.array([int(np.argmax(v))])
    best = maxima[np.argsort(-v[maxima], kind="stable")][:count]
    return np.concatenate((best, np.full(count - best.size, best[0])))


def doa_angles(doa: pra.doa.DOA, X: np.ndarray, freq_range: tuple[float, float] = FREQ_RANGE) -> np.ndarray:
    """DOA object, X [M, F, frames] -> two lateral angles [2] in degrees, sorted."""
    doa.locate_sources(X, freq_range=list(freq_range))
    return np.sort(GRID_DEG[grid_peaks(doa.grid.values)])


def pra_angles(waves: np.ndarray, freq_range: tuple[float, float] = FREQ_RANGE) -> dict[str, tuple[np.ndarray, float]]:
    """waves [N, 2, T] -> {algorithm: (angles [N, 2] sorted, seconds incl. the shared STFT)}."""
    doas = {name: make_doa(name) for name in PRA_METHODS}
    angles = {name: np.zeros((len(waves), 2)) for name in PRA_METHODS}
    seconds = dict.fromkeys(PRA_METHODS, 0.0)
    for n in tqdm(range(len(waves)), desc="pyroomacoustics DOA", unit="mixture"):
        X, stft_seconds = timed(lambda: stft(waves[n].astype(np.float64)))
        for name, doa in doas.items():
            angles[name][n], spent = timed(lambda: doa_angles(doa, X, freq_range))
            seconds[name] += spent + stft_seconds
    return {name: (angles[name], seconds[name]) for name in PRA_METHODS}


def model_angles(model: torch.nn.Module, spec: Any, waves: np.ndarray, label: str) -> np.ndarray:
    """loaded model, waves [N, 2, T] -> angles [N, 2] sorted, through ssl_model.localize's localize_wave."""
    out = [localize_wave(wave, SR, model, spec)["angles_deg"] for wave in tqdm(waves, desc=label, unit="mixture")]
    return np.sort(np.array(out, dtype=np.float64), axis=1)


def chance_angles(true_sorted: np.ndarray) -> np.ndarray:
    """sorted truth [N, 2] -> the constant per-slot median [N, 2] (the lower median, like torch)."""
    median = torch.from_numpy(true_sorted).double().median(dim=0).values.numpy()
    return np.broadcast_to(median, true_sorted.shape).copy()


def model_sources(models: list[str], runs: list[str]) -> list[tuple[str, Path]]:
    """--model / --run values -> [(label, weights path)]; the shipped model when neither is given and it exists;
    BenchError for a missing file or run."""
    found = []
    try:
        for run in runs:
            found.append((f"model {Path(run).name}", weights_path(run, None)))
        for model in models:
            found.append((f"model {Path(model).name}", weights_path(None, model)))
    except LocalizeError as err:
        raise BenchError(str(err)) from None
    if not models and not runs and PRETRAINED.is_file():
        found.append(("model pretrained", PRETRAINED))
    labels: dict[str, int] = {}
    unique = []
    for label, path in found:  # two runs named alike keep distinct rows
        labels[label] = labels.get(label, 0) + 1
        unique.append((label if labels[label] == 1 else f"{label} #{labels[label]}", path))
    return unique


# ---------------------------------------------------------------------------------------------- scoring


def score(pred: np.ndarray, true_sorted: np.ndarray, rt60: np.ndarray) -> dict[str, Any]:
    """pred and sorted truth [N, 2] (degrees), rt60 [N] -> localization_metrics with RT60 and separation breakdowns."""
    true_t = torch.from_numpy(true_sorted).double()
    factors = {"rt60": torch.from_numpy(rt60).double(), "separation": true_t[:, 1] - true_t[:, 0]}
    bins = {"rt60": RT60_BINS, "separation": SEPARATION_BINS}
    return localization_metrics(torch.from_numpy(np.asarray(pred, float)).double(), true_t, factors, bins)


def scenes_tdoa(meta: dict[str, Any]) -> torch.Tensor:
    """set metadata -> direct-path TDOA [N, 2] in seconds, in source order."""
    return torch.tensor([[s["tdoa_s"] for s in scene["sources"]] for scene in meta["scenes"]], dtype=torch.float64)


def oracle_floors(meta: dict[str, Any], truth: np.ndarray, reference: dict[str, torch.Tensor]) -> dict[str, Any]:
    """set metadata, truth [N, 2] (source order), reference table -> lateral oracle floor per slot: dense and
    leave-one-out."""
    tdoa, lateral = scenes_tdoa(meta), torch.from_numpy(truth).double()
    dense = oracle_floor_binned_mae(tdoa=tdoa, angles_deg=lateral, reference=(reference["tdoa_s"], reference["lateral_deg"]))
    out = {"binned_mae_deg_slot1": float(dense[0]), "binned_mae_deg_slot2": float(dense[1]),
           "binned_mae_deg": float(dense.mean())}
    if len(truth) >= 2:
        loo = oracle_floor_binned_mae(tdoa=tdoa, angles_deg=lateral)
        out["leave_one_out"] = {"binned_mae_deg_slot1": float(loo[0]), "binned_mae_deg_slot2": float(loo[1])}
    return out


def score_set(data: dict[str, Any], models: list[tuple[str, torch.nn.Module, Any]],
              reference: dict[str, torch.Tensor], freq_range: tuple[float, float] = FREQ_RANGE) -> dict[str, Any]:
    """one set's waves and truth, loaded models, oracle reference -> {'methods': {label: result}, 'oracle_floor'}."""
    waves, rt60 = data["waves"], data["rt60"].astype(np.float64)
    true_sorted = np.sort(data["truth"].astype(np.float64), axis=1)
    audio_seconds = len(waves) * CLIP / SR
    methods: dict[str, dict[str, Any]] = {}

    def add(label: str, kind: str, pred: np.ndarray, seconds: float | None, **extra: Any) -> None:
        pred = np.asarray(pred, float)
        if pred.shape != true_sorted.shape or not np.isfinite(pred).all():
            raise BenchError(f"{label}: predictions of shape {pred.shape} or not finite")
        methods[label] = {"kind": kind, "seconds": seconds,
                          "x_real_time": audio_seconds / seconds if seconds else None,
                          "metrics": score(pred, true_sorted, rt60), **extra,
                          "angles_deg": np.round(pred, 3).tolist()}

    for label, model, spec in models:
        pred, seconds = timed(lambda: model_angles(model, spec, waves, label))
        add(label, "model", pred, seconds, target=spec.target, clip_seconds=spec.clip_samples / spec.sr)
    pred, seconds = timed(lambda: gcc_angles(waves))
    add("GCC-PHAT (votes)", "gcc_phat", pred, seconds)
    for name, (pred, seconds) in pra_angles(waves, freq_range).items():
        add(PRA_LABELS[name], f"pra_{name}", pred, seconds, num_src=2 if name == "SRP" else 1)
    chance = chance_angles(true_sorted)
    add("chance (median per slot)", "chance", chance, None)
    binned = chance_binned_mae(angle_to_class(torch.from_numpy(true_sorted)))
    methods["chance (median per slot)"]["metrics"].update(
        binned_mae_deg_slot1=float(binned[0]), binned_mae_deg_slot2=float(binned[1]), binned_mae_deg=float(binned.mean()))
    return {"methods": methods, "oracle_floor": oracle_floors(data["meta"], data["truth"], reference),
            "truth_sorted_deg": np.round(true_sorted, 3).tolist(), "rt60": np.round(rt60, 4).tolist()}


# ---------------------------------------------------------------------------------------------- report


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, pattern)


def metric_cells(m: dict[str, float]) -> str:
    """flat metrics -> 'slot1 slot2 MAE ACC@5 ACC@10' cells (MAEs in degrees, accuracies in %)."""
    acc5 = None if m["acc5"] is None else 100 * m["acc5"]
    acc10 = None if m["acc10"] is None else 100 * m["acc10"]
    return (f"{fmt(m['binned_mae_deg_slot1'], '6.2f'):>6s} {fmt(m['binned_mae_deg_slot2'], '6.2f'):>6s} "
            f"{fmt(m['mae_deg'], '6.2f'):>6s} {fmt(acc5, '6.1f'):>6s} {fmt(acc10, '6.1f'):>6s}")


def table_lines(name: str, result: dict[str, Any]) -> list[str]:
    """one set's result -> its printed table (rows: methods)."""
    floor_label = "oracle floor (exact TDOA, dense)"
    width = max(len(floor_label), *(len(label) for label in result["methods"]))
    lines = [f"set {name}: {result['description']}",
             f"  {result['mixtures']} mixtures, {result['talkers']} talkers; {result['build']}",
             "  lateral angle; slot1/slot2: binned MAE (deg); MAE (deg); ACC@5/ACC@10 (%); x real time = audio s / "
             "compute s",
             f"  {'method':{width}s} {'slot1':>6s} {'slot2':>6s} {'MAE':>6s} {'ACC@5':>6s} {'ACC@10':>6s} "
             f"{'seconds':>8s} {'x real time':>11s}"]
    for label, row in result["methods"].items():
        lines.append(f"  {label:{width}s} {metric_cells(row['metrics'])} {fmt(row['seconds'], '8.1f'):>8s} "
                     f"{fmt(row['x_real_time'], '11.1f'):>11s}")
    floor = result["oracle_floor"]
    cells = metric_cells({**floor, "mae_deg": None, "acc5": None, "acc10": None})
    lines.append(f"  {floor_label:{width}s} {cells} {'-':>8s} {'-':>11s}")
    return lines


def breakdown_lines(result: dict[str, Any]) -> list[str]:
    """one set's result -> the model(s) and GCC-PHAT broken down by RT60 and source separation."""
    chosen = [label for label, row in result["methods"].items() if row["kind"] in ("model", "gcc_phat")]
    width = max(len(label) for label in chosen)
    lines = []
    for factor, title in (("rt60", "RT60 (s)"), ("separation", "separation (deg)")):
        lines.append(f"  by {title}:")
        lines.append(f"    {'method':{width}s} {'bin':>8s} {'n':>4s} {'slot1':>6s} {'slot2':>6s} {'MAE':>6s} "
                     f"{'ACC@5':>6s} {'ACC@10':>6s}")
        for label in chosen:
            for bin_label, m in result["methods"][label]["metrics"][f"by_{factor}"].items():
                lines.append(f"    {label:{width}s} {bin_label:>8s} {int(m['count']):4d} {metric_cells(m)}")
    return lines


def build_summary(data: dict[str, Any]) -> str:
    """set data -> 'cached (built in ...)' or 'built in ...', with the pra rejections."""
    meta = data["meta"]
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in meta["build_seconds"].items())
    text = f"cached (built {meta.get('built', '?')}: {parts})" if data["cached"] else f"built now: {parts}"
    rooms = meta["rooms"]
    if "rejected_by_inverse_sabine" in rooms:
        text += (f"; inverse Sabine rejected {rooms['rejected_by_inverse_sabine']} of {rooms['drawn']} scenes drawn; "
                 f"max order {rooms['max_order_range'][0]}-{rooms['max_order_range'][1]}; RIR cut at 1.5 RT60 drops "
                 f"<= {rooms['rir_cut_tail_db_max']:.0f} dB of the energy")
    return text


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "pyroomacoustics": pra.__version__}


def parse_sets(text: str) -> list[str]:
    """'a,b' / 'fra,pra' / 'pra' -> ['fra', 'pra'] (deduplicated, in the order given)."""
    names = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part not in SET_ALIASES:
            raise BenchError(f"--sets: unknown set {part!r}; expected a, b, fra or pra (comma-separated)")
        if SET_ALIASES[part] not in names:
            names.append(SET_ALIASES[part])
    if not names:
        raise BenchError("--sets: expected a, b, fra or pra (comma-separated)")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speech", default="shards/speech/eval", help="speech shards or an audio folder (held-out talkers)")
    p.add_argument("--mixtures", type=int, default=400, help="mixtures per set")
    p.add_argument("--cache", default="bench_cache/accuracy", help="where the sets are cached")
    p.add_argument("--model", action="append", default=[], help="a weights file (repeatable)")
    p.add_argument("--run", action="append", default=[], help="a run folder holding model.safetensors (repeatable)")
    p.add_argument("--json", help="write every number here")
    p.add_argument("--sets", default="fra,pra", help="a,b (= fra,pra), or one of them")
    p.add_argument("--freq-range", default=f"{FREQ_RANGE[0]:g},{FREQ_RANGE[1]:g}",
                   help="LO,HI in Hz for pyroomacoustics' DOA (default %(default)s)")
    return p.parse_args(argv)


def parse_freq_range(text: str) -> tuple[float, float]:
    """'300,8000' -> (300.0, 8000.0); BenchError unless 0 <= LO < HI <= sr / 2."""
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise BenchError(f"--freq-range: expected LO,HI in Hz, got {text!r}") from None
    if not 0 <= lo < hi <= SR / 2:
        raise BenchError(f"--freq-range: need 0 <= LO < HI <= {SR // 2} Hz, got {text!r}")
    return lo, hi


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """parsed CLI, the command line -> the report (also printed, and written to --json)."""
    names = parse_sets(args.sets)
    freq_range = parse_freq_range(args.freq_range)
    if args.mixtures < 1:
        raise BenchError(f"--mixtures: must be >= 1, got {args.mixtures}")
    sources = model_sources(args.model, args.run)
    speech_dir = Path(args.speech)
    speech_kind(speech_dir)  # fail before any work
    models = []
    for label, path in sources:
        try:
            model, spec = load_model_checked(path, torch.device("cpu"))
        except LocalizeError as err:
            raise BenchError(str(err)) from None
        models.append((label, model, spec))
    notes = {**NOTES, "pra_doa": NOTES["pra_doa"].replace("{freq_range}", f"[{freq_range[0]:g}, {freq_range[1]:g}]")}
    if not sources:
        notes["model"] = (f"no model row: {PRETRAINED} does not exist and neither --model nor --run was given")
        print(f"note: {notes['model']}", flush=True)
    elif any(spec.target != "lateral" for _, _, spec in models):
        notes["model"] = "a model trained on azimuth is scored here on the lateral angle (its angles read as lateral)"
    data = load_sets(names, args.mixtures, Path(args.cache), speech_dir)
    reference, ref_seconds = timed(lambda: oracle_reference_table(SimulateConfig(), ORACLE_REFERENCE_SOURCES,
                                                                   SEEDS["oracle_reference"]))
    report: dict[str, Any] = {
        "benchmark": "bench_accuracy", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "command": command,
        "parameters": {"speech": str(speech_dir), "mixtures": args.mixtures, "cache": str(args.cache), "sets": names,
                       "models": [{"label": label, "path": str(path)} for label, path in sources],
                       "seeds": SEEDS, "sr": SR, "clip_seconds": CLIP / SR, "gain_db": list(GAIN_DB),
                       "mic_distance": MIC_DISTANCE, "sound_speed": SOUND_SPEED, "nfft": NFFT, "hop": HOP,
                       "freq_range_hz": list(freq_range), "grid_deg": [0, 180, 1],
                       "oracle_reference_sources": int(reference["tdoa_s"].numel()),
                       "oracle_reference_seconds": ref_seconds, "recipe": RECIPE},
        "notes": notes, "sets": {},
    }
    for name in names:
        result = score_set(data[name], models, reference, freq_range)
        meta = data[name]["meta"]
        result.update(description=SETS[name], mixtures=args.mixtures, talkers=len(meta["talkers"]),
                      build=build_summary(data[name]), cached=data[name]["cached"],
                      build_seconds=meta["build_seconds"], rooms=meta["rooms"], cache=str(Path(args.cache) / name))
        report["sets"][name] = result
        print("\n".join(["", *table_lines(name, result), *breakdown_lines(result)]), flush=True)
    print("\n" + "\n".join(f"note ({k}): {v}" for k, v in notes.items() if k in ("pra_doa", "music", "model")))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, allow_nan=True))
        print(f"wrote {args.json}")
    return report


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        run(parse_args(argv), " ".join(["benchmarks/bench_accuracy.py", *argv]))
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
