"""The accuracy benchmark's real-recordings set `rsmnmf` (group `real`): two-mic pairs cut from a measured
32-microphone linear array, convolved with held-out speech.

The measurement (github.com/polimi-ispl/rs-mnmf, GPL-3, never part of this project; `--real-array CHECKOUT` names a
local clone): room impulse responses measured in an office (T60 about 40 ms) from 9 loudspeaker positions to a
uniform linear array of 32 microphones 3 cm apart (two eSticks), 48 kHz, `data/sources/rir_source_{1..9}.wav`
[48000 samples, 32 channels]. Channel order follows the array (checked on the direct paths, which arrive in
order along it).

Pairs: channels (i, i + k) for k = 2..6 (6, 9, 12, 15 and 18 cm), i = 0, 4, 8, ... while i + k < 32; channel i is
our mic 0 and channel i + k our mic 1, so 0 degrees points along the array towards higher channel numbers.

Truth: per (pair, source) the measured direct-path delay tau = t1 - t0 between the pair's two mics, read from the
48 kHz RIRs: each channel's first strong peak (the first sample at >= half the channel's largest magnitude, moved
to the local maximum just after it), then the cross-correlation of the 1.5 ms around the two direct paths (0.5 ms
before, 1 ms after; Tukey-windowed), interpolated 32x in frequency and refined by a parabola. The lateral angle
is arccos(clip(-c tau / d)) with c = 340 m/s (shards.array.SOUND_SPEED): the angle a far-field model with that
pair reads that delay as. The sources are 0.3-1 m from the array, so a far-field angle from the positions would
not be the delay the pair hears; the positions (`source_location.mat`, frame undocumented) are recorded, not used.

Mixtures (N, seeded, mixture i independent of N): clip i holds 1, 2 or 3 talkers (i % 3: equal shares) on the
pair spacing SPACING_STEPS[(i // 3) % 5] (equal shares per count), a pair position and sources drawn at random
among those whose delays at that pair are pairwise >= 1 sample apart at 16 kHz (resolvable by a pair at all).
Each talker is 3 s of held-out speech (accuracy_sets.plan_mixtures / render_speech, the Dutch voices), convolved
with the pair's RIRs resampled to 16 kHz (first 0.5 s), +-2.5 dB gains, peak-normalized; no added noise (the
measured responses carry the room's and the mics' own noise). Cached as .npy (allow_pickle=False) + meta.json under
`{cache}/rsmnmf`, keyed by REAL_RECIPE, the checkout's git commit and a sha256 of its data files.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch

from accuracy_sets import (CLIP, GAIN_DB, SR, BenchError, index_speech, mix_set, plan_mixtures, render_speech,
                           speech_listing, timed)
from shards.array import SOUND_SPEED
from shards.audio import resample
from shards.layout import stable_seed

REAL_RECIPE = "bench_accuracy_real/1"  # bump when anything that shapes the cached waves or truth changes
SET_NAME = "rsmnmf"
REAL_SETS = {SET_NAME: "pairs (6-18 cm) cut from a real 32-mic array, measured office RIRs (T60 ~40 ms, "
                       "loudspeakers) convolved with held-out speech, 1-3 talkers"}
REAL_GROUP = "real"
REPOSITORY = "https://github.com/polimi-ispl/rs-mnmf"
ARRAY_SR = 48000
ARRAY_CHANNELS = 32
ARRAY_PITCH_M = 0.03
SOURCE_COUNT = 9
SOURCE_FILES = tuple(f"data/sources/rir_source_{s}.wav" for s in range(1, SOURCE_COUNT + 1))
POSITIONS_FILE = "data/sources/source_location.mat"
SPACING_STEPS = (2, 3, 4, 5, 6)  # channel steps: 6, 9, 12, 15, 18 cm
POSITION_STEP = 4  # pairs start at channels 0, 4, 8, ...
COUNTS = (1, 2, 3)
RIR_SECONDS = 0.5  # of each measured response (T60 ~40 ms: ~12 T60)
ONSET_FRACTION = 0.5  # a direct path: the first sample at >= this share of the channel's largest magnitude
PEAK_SEARCH_S = 0.00025  # then the local maximum within this after it
WINDOW_BEFORE_S = 0.0005  # cross-correlation window around each direct path
WINDOW_AFTER_S = 0.001
UPSAMPLE = 32
MIN_DELAY_SAMPLES = 1.0  # at SR: the least delay difference between two talkers of one clip
SEED_SALT = "rsmnmf"


def real_seeds(split: str = "test") -> dict[str, int]:
    """-> the seeds of the set's draws (pairs and sources, speech); another split draws others."""
    salt = () if split == "test" else (split,)
    return {key: stable_seed("bench_accuracy", *salt, SEED_SALT, key) for key in ("clips", "speech")}


# ---------------------------------------------------------------------------------------------- the checkout


def check_checkout(checkout: str | os.PathLike) -> Path:
    """--real-array value -> its root; BenchError (one line) unless it holds the nine RIR files."""
    root = Path(checkout)
    for needed in SOURCE_FILES:
        if not (root / needed).is_file():
            raise BenchError(f"--real-array {checkout}: not a checkout of polimi-ispl/rs-mnmf (no {needed}); "
                             f"git clone {REPOSITORY}")
    return root


def checkout_identity(root: Path) -> dict[str, Any]:
    """checkout -> {'commit': its git HEAD (None outside git), 'data_sha256': sha256 over its data files' bytes}."""
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30, check=False)
        commit = done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    digest = hashlib.sha256()
    for name in (*SOURCE_FILES, POSITIONS_FILE):
        path = root / name
        digest.update(name.encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return {"commit": commit, "data_sha256": digest.hexdigest()}


def read_array(root: Path) -> np.ndarray:
    """checkout -> measured RIRs float64 [sources, channels, samples] at ARRAY_SR; BenchError naming a file that
    is not 32-channel 48 kHz audio."""
    rirs = []
    for name in SOURCE_FILES:
        path = root / name
        try:
            data, sr = soundfile.read(str(path), dtype="float64", always_2d=True)
        except (OSError, RuntimeError, soundfile.LibsndfileError) as err:
            raise BenchError(f"--real-array {path}: unreadable: {str(err).splitlines()[0]}") from None
        if sr != ARRAY_SR or data.shape[1] != ARRAY_CHANNELS:
            raise BenchError(f"--real-array {path}: expected {ARRAY_CHANNELS} channels at {ARRAY_SR} Hz, got "
                             f"{data.shape[1]} at {sr} Hz")
        rirs.append(data.T)
    length = min(r.shape[-1] for r in rirs)
    return np.stack([r[:, :length] for r in rirs])


def source_positions(root: Path) -> list[list[float]] | None:
    """checkout -> the 9 x 2 source positions of source_location.mat as stored (frame undocumented), or None."""
    path = root / POSITIONS_FILE
    if not path.is_file():
        return None
    import scipy.io  # noqa: PLC0415
    try:
        found = [np.asarray(v, float) for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")]
    except (OSError, ValueError, NotImplementedError):
        return None
    return np.round(found[0], 5).tolist() if found else None


# ---------------------------------------------------------------------------------------------- truth


def direct_peaks(rir: np.ndarray, sr: int = ARRAY_SR) -> np.ndarray:
    """RIRs [..., T] -> each channel's direct-path sample index [...]: the first sample whose magnitude reaches
    ONSET_FRACTION of the channel's largest, moved to the largest magnitude within PEAK_SEARCH_S after it."""
    mag = np.abs(rir)
    first = np.argmax(mag >= ONSET_FRACTION * mag.max(axis=-1, keepdims=True), axis=-1)
    reach = max(1, round(PEAK_SEARCH_S * sr))
    flat_mag, flat_first = mag.reshape(-1, mag.shape[-1]), first.reshape(-1)
    out = np.array([f + int(np.argmax(m[f:f + reach + 1])) for m, f in zip(flat_mag, flat_first)])
    return out.reshape(first.shape)


def direct_segment(rir: np.ndarray, peak: int, sr: int = ARRAY_SR) -> np.ndarray:
    """one channel's RIR [T], its direct peak -> the WINDOW_BEFORE_S + WINDOW_AFTER_S around it (zero-padded
    at the ends), Tukey-windowed (25% cosine tapers)."""
    before, after = round(WINDOW_BEFORE_S * sr), round(WINDOW_AFTER_S * sr)
    padded = np.concatenate((np.zeros(before), rir, np.zeros(after)))
    segment = padded[peak:peak + before + after]
    n = len(segment)
    taper = max(1, n // 8)
    window = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(taper) + 0.5) / taper)
    window[:taper], window[n - taper:] = ramp, ramp[::-1]
    return segment * window


def parabolic_offset(left: float, centre: float, right: float) -> float:
    """three samples around a maximum -> the vertex offset in (-0.5, 0.5) of the parabola through them."""
    denominator = left - 2 * centre + right
    return 0.0 if denominator == 0 else float(np.clip(0.5 * (left - right) / denominator, -0.5, 0.5))


def pair_delay(rir0: np.ndarray, rir1: np.ndarray, sr: int = ARRAY_SR) -> float:
    """the two mics' RIRs [T] -> their direct-path delay t1 - t0 in samples at sr: the windows around the two
    direct paths cross-correlated, interpolated UPSAMPLE x in frequency, the peak refined by a parabola."""
    p0, p1 = (int(p) for p in direct_peaks(np.stack((rir0, rir1)), sr))
    s0, s1 = direct_segment(rir0, p0, sr), direct_segment(rir1, p1, sr)
    n = 2 * len(s0)
    cross = np.fft.rfft(s1, n) * np.conj(np.fft.rfft(s0, n))
    corr = np.fft.fftshift(np.fft.irfft(cross, n * UPSAMPLE))  # lag l / UPSAMPLE at index n * UPSAMPLE / 2 + l
    best = int(np.argmax(corr))
    lag = (best + parabolic_offset(corr[best - 1], corr[best], corr[best + 1]) - n * UPSAMPLE // 2) / UPSAMPLE
    return p1 - p0 + lag


def wavefront_fit(rirs: np.ndarray, pitch: float = ARRAY_PITCH_M, sr: int = ARRAY_SR,
                  sound_speed: float = 343.0, reference: int | None = None) -> dict[str, Any]:
    """RIRs [S, C, T] -> how well the measured delays (pair_delay of every channel against a reference channel)
    fit point sources in the array's plane heard by mics on a line `pitch` apart: least squares over the source
    positions (x: distance from the line, y: along it from channel 0), with and without a latency per channel.
    -> {'rms_samples', 'max_samples' (at sr, no per-channel term), 'rms_samples_with_offsets', 'channel_offsets_samples'
    (the per-channel latency fitted, reference 0), 'positions_m' [S, 2]}."""
    from scipy.optimize import least_squares  # noqa: PLC0415
    sources, channels = rirs.shape[:2]
    ref = channels // 2 if reference is None else reference
    measured = np.array([[pair_delay(rirs[s, ref], rirs[s, c], sr) for c in range(channels)]
                         for s in range(sources)]) / sr
    y = np.arange(channels) * pitch

    def residual(p: np.ndarray, offsets: bool) -> np.ndarray:
        xy = p[:2 * sources].reshape(sources, 2)
        off = np.insert(p[2 * sources:], ref, 0.0) if offsets else np.zeros(channels)
        dist = np.hypot(xy[:, :1], y[None] - xy[:, 1:])
        return ((dist - dist[:, ref:ref + 1]) / sound_speed + off[None] - measured).ravel() * sr

    start = np.tile([0.5, y.mean()], sources)
    plain = least_squares(lambda p: residual(p, False), start)
    full = least_squares(lambda p: residual(p, True), np.concatenate((plain.x, np.zeros(channels - 1))))
    plain_res, full_res = residual(plain.x, False), residual(full.x, True)
    return {"rms_samples": float(np.sqrt(np.mean(plain_res ** 2))), "max_samples": float(np.abs(plain_res).max()),
            "rms_samples_with_offsets": float(np.sqrt(np.mean(full_res ** 2))),
            "channel_offsets_samples": np.round(np.insert(full.x[2 * sources:], ref, 0.0) * sr, 3).tolist(),
            "positions_m": np.round(full.x[:2 * sources].reshape(sources, 2), 4).tolist(),
            "reference_channel": ref, "sound_speed": sound_speed, "sr": sr}


def delay_to_lateral(tdoa_s: np.ndarray | float, spacing: float, sound_speed: float = SOUND_SPEED) -> np.ndarray:
    """delay t1 - t0 (s), pair spacing (m) -> lateral angle (deg) from the mic 0 -> mic 1 axis: arccos(-c tau / d),
    clipped to [0, 180] (0: the source is beyond mic 1, which hears it first)."""
    return np.degrees(np.arccos(np.clip(-sound_speed * np.asarray(tdoa_s, float) / spacing, -1.0, 1.0)))


def array_pairs(steps: tuple[int, ...] = SPACING_STEPS, position_step: int = POSITION_STEP,
                channels: int = ARRAY_CHANNELS) -> list[tuple[int, int]]:
    """-> the pairs (mic 0 channel, mic 1 channel): (i, i + k) for each k, i = 0, position_step, ... < channels - k."""
    return [(i, i + k) for k in steps for i in range(0, channels - k, position_step)]


def pair_truth(rirs: np.ndarray, pairs: list[tuple[int, int]], pitch: float = ARRAY_PITCH_M,
               sr: int = ARRAY_SR) -> dict[str, np.ndarray]:
    """RIRs [S, C, T] at sr, pairs -> {'tdoa_s', 'lateral_deg', 'ratio' (-c tau / d before the clip): [P, S];
    'spacing_m': [P]}."""
    tdoa = np.array([[pair_delay(rirs[s, a], rirs[s, b], sr) for s in range(len(rirs))] for a, b in pairs])
    spacing = np.array([(b - a) * pitch for a, b in pairs])
    tdoa_s = tdoa.reshape(len(pairs), len(rirs)) / sr
    return {"tdoa_s": tdoa_s, "spacing_m": spacing,
            "lateral_deg": delay_to_lateral(tdoa_s, spacing[:, None]),
            "ratio": -SOUND_SPEED * tdoa_s / spacing[:, None]}


# ---------------------------------------------------------------------------------------------- clips


def resolvable(tdoa_s: np.ndarray, sources: tuple[int, ...], sr: int = SR) -> bool:
    """delays of every source at one pair [S] (s), a set of sources -> True when their delays are pairwise at
    least MIN_DELAY_SAMPLES apart at sr."""
    delays = np.sort(np.asarray(tdoa_s, float)[list(sources)] * sr)
    return bool(np.all(np.diff(delays) >= MIN_DELAY_SAMPLES))


def plan_clips(tdoa_s: np.ndarray, pairs: list[tuple[int, int]], count: int, seed: int,
               pitch: float = ARRAY_PITCH_M) -> list[dict[str, Any]]:
    """delays [P, S] (s), pairs, N, seed -> N clip plans {'pair', 'channels', 'spacing_m', 'count', 'sources'}:
    clip i has COUNTS[i % 3] talkers on spacing step SPACING_STEPS[(i // 3) % len], a pair of that step and
    sources drawn at random among the resolvable sets (resolvable); clip i does not depend on N."""
    by_step: dict[int, list[int]] = {}
    for p, (a, b) in enumerate(pairs):
        by_step.setdefault(b - a, []).append(p)
    steps = sorted(by_step)
    plans = []
    for i in range(count):
        talkers = COUNTS[i % len(COUNTS)]
        step = steps[(i // len(COUNTS)) % len(steps)]
        rng = random.Random(stable_seed("rsmnmf", "clip", seed, i))
        candidates = rng.sample(by_step[step], len(by_step[step]))
        for p in candidates:
            options = [c for c in itertools.combinations(range(tdoa_s.shape[1]), talkers) if resolvable(tdoa_s[p], c)]
            if options:
                sources = list(rng.choice(options))
                rng.shuffle(sources)
                plans.append({"pair": p, "channels": list(pairs[p]), "spacing_m": round(step * pitch, 6),
                              "count": talkers, "sources": sources})
                break
        else:
            raise BenchError(f"--real-array: no pair {step} channels apart has {talkers} sources whose delays are "
                             f">= {MIN_DELAY_SAMPLES:g} sample apart")
    return plans


def rirs_at_bench_rate(rirs: np.ndarray, sr: int = ARRAY_SR) -> np.ndarray:
    """RIRs [S, C, T] at sr -> the first RIR_SECONDS resampled to SR, float32 [S, C, RIR_SECONDS * SR]."""
    head = torch.from_numpy(np.ascontiguousarray(rirs[..., :round(RIR_SECONDS * sr)]))
    return resample(head, sr, SR).numpy().astype(np.float32)


def clip_rirs(rirs16: np.ndarray, plans: list[dict[str, Any]], slots: int = max(COUNTS)) -> list[np.ndarray]:
    """RIRs at SR [S, C, L], plans -> per clip [2, slots, L]: the pair's responses to its talkers, zeros after."""
    out = []
    for plan in plans:
        rir = np.zeros((2, slots, rirs16.shape[-1]), dtype=np.float32)
        for slot, source in enumerate(plan["sources"]):
            rir[:, slot] = rirs16[source, plan["channels"]]
        out.append(rir)
    return out


# ---------------------------------------------------------------------------------------------- the set and its cache


def real_params(count: int, listing: dict[str, Any], identity: dict[str, Any], seeds: dict[str, int]) -> dict[str, Any]:
    """-> everything that shapes the cached set (reused only when these match)."""
    params = {"recipe": REAL_RECIPE, "set": SET_NAME, "mixtures": count, "speech": listing, "seeds": seeds,
              "checkout": identity, "sr": SR, "clip": CLIP, "gain_db": list(GAIN_DB), "sound_speed": SOUND_SPEED,
              "spacing_steps": list(SPACING_STEPS), "position_step": POSITION_STEP, "counts": list(COUNTS),
              "rir_seconds": RIR_SECONDS, "onset_fraction": ONSET_FRACTION, "peak_search_s": PEAK_SEARCH_S,
              "window_s": [WINDOW_BEFORE_S, WINDOW_AFTER_S], "upsample": UPSAMPLE,
              "min_delay_samples": MIN_DELAY_SAMPLES}
    return json.loads(json.dumps(params))


ARRAYS = ("waves", "truth", "spacing")


def load_real_cached(folder: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """cache folder, expected params -> {'waves', 'truth', 'spacing', 'meta'} when a complete cache of those params
    is there, else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("params") != params:
            return None
        arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in ARRAYS}
    except (OSError, ValueError):
        return None
    n = params["mixtures"]
    if (arrays["waves"].shape != (n, 2, CLIP) or arrays["truth"].shape != (n, max(COUNTS))
            or arrays["spacing"].shape != (n,)):
        return None
    return {**arrays, "meta": meta}


def save_real(folder: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write the arrays (float32 .npy, no pickle) and meta.json into a temporary folder, then swap it in."""
    temp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    for name in ARRAYS:
        np.save(temp / f"{name}.npy", np.ascontiguousarray(arrays[name], dtype=np.float32), allow_pickle=False)
    (temp / "meta.json").write_text(json.dumps(meta, indent=1, allow_nan=True))
    if folder.exists():
        shutil.rmtree(folder)
    temp.rename(folder)


def build_real_set(root: Path, count: int, cache: Path, speech_dir: Path, seeds: dict[str, int],
                   params: dict[str, Any]) -> dict[str, Any]:
    """checkout, N, cache root, speech folder -> the set {'waves' [N, 2, T], 'truth' [N, 3] (lateral deg, NaN after
    the clip's count), 'spacing' [N] (m), 'meta'}, cached."""
    rirs, read_seconds = timed(lambda: read_array(root))
    pairs = array_pairs()
    truth_table, truth_seconds = timed(lambda: pair_truth(rirs, pairs))
    plans = plan_clips(truth_table["tdoa_s"], pairs, count, seeds["clips"])
    utterances = index_speech(speech_dir)
    speech_plans = plan_mixtures(utterances, count, seeds["speech"], sources=max(COUNTS))
    dry, speech_seconds = timed(lambda: render_speech(utterances, speech_plans))
    rirs16 = rirs_at_bench_rate(rirs)
    for i, plan in enumerate(plans):
        dry[i, plan["count"]:] = 0.0
    gains = np.array([p["gain_db"] for p in speech_plans], dtype=np.float32)
    waves, mix_seconds = timed(lambda: mix_set(clip_rirs(rirs16, plans), dry, gains))
    truth = np.full((count, max(COUNTS)), np.nan)
    clips = []
    for i, (plan, speech) in enumerate(zip(plans, speech_plans)):
        n = plan["count"]
        truth[i, :n] = truth_table["lateral_deg"][plan["pair"], plan["sources"]]
        clips.append({**plan, "tdoa_s": truth_table["tdoa_s"][plan["pair"], plan["sources"]].tolist(),
                      "lateral_deg": np.round(truth[i, :n], 4).tolist(), "talkers": speech["talkers"][:n],
                      "speech_files": speech["paths"][:n], "gain_db": speech["gain_db"][:n],
                      "crop_seed": speech["crop_seed"][:n]})
    fit, fit_seconds = timed(lambda: wavefront_fit(rirs))
    meta = {"params": params, "description": REAL_SETS[SET_NAME], "mic_spacing": "per clip (spacing.npy)",
            "talkers": sorted({t for c in clips for t in c["talkers"]}),
            "rooms": {"renderer": f"measured RIRs of {REPOSITORY} (one office, T60 ~40 ms, 9 loudspeaker positions, "
                                  f"32-mic ULA 3 cm pitch, 48 kHz), first {RIR_SECONDS:g} s resampled to {SR} Hz",
                      "source_positions_m": source_positions(root)},
            "pairs": [{"channels": list(p), "spacing_m": float(truth_table["spacing_m"][k]),
                       "tdoa_s": truth_table["tdoa_s"][k].tolist(),
                       "lateral_deg": np.round(truth_table["lateral_deg"][k], 4).tolist(),
                       "ratio": np.round(truth_table["ratio"][k], 5).tolist()} for k, p in enumerate(pairs)],
            "truth_check": {"wavefront_fit": fit, "clipped_ratios": int(np.sum(np.abs(truth_table["ratio"]) > 1))},
            "clips": clips, "counts": [p["count"] for p in plans],
            "build_seconds": {"read": read_seconds, "truth": truth_seconds, "truth_check": fit_seconds,
                              "speech": speech_seconds,
                              "mix": mix_seconds},
            "built": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    arrays = {"waves": waves, "truth": truth, "spacing": np.array([p["spacing_m"] for p in plans])}
    save_real(cache / SET_NAME, arrays, meta)
    return {"waves": waves, "truth": truth.astype(np.float32), "spacing": arrays["spacing"].astype(np.float32),
            "meta": meta}


def load_real_set(checkout: str | os.PathLike, count: int, cache: Path, speech_dir: Path,
                  split: str = "test") -> dict[str, Any]:
    """--real-array, N, cache root, speech folder -> the set (cached or built now) with 'cached'."""
    root = check_checkout(checkout)
    seeds = real_seeds(split)
    params = real_params(count, speech_listing(speech_dir), checkout_identity(root), seeds)
    cached = load_real_cached(cache / SET_NAME, params)
    if cached is not None:
        return {**cached, "cached": True}
    return {**build_real_set(root, count, cache, speech_dir, seeds, params), "cached": False}
