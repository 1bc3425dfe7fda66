"""Speech audio: finding files in a folder, and decoding any of them to mono at the rate a run needs.

Files or members in wav, flac or ogg (Vorbis/Opus), at any sample rate and channel count, decode with
soundfile, downmix to mono (the channel mean) and resample with torchaudio's windowed sinc. Used by the
speech packer, the training streams (speech shards and audio folders) and `localize` (which keeps both
channels).
"""
from __future__ import annotations

import io
import math
import random
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from shards.limits import check_audio_frames

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg")
SILENCE_DB = -50.0  # a segment whose RMS stays this far below full scale counts as silent
# Quieter than this (AC RMS, dB full scale) is no recording at all: 24-bit PCM's LSB is -144 dBFS, so
# anything below is digital silence, a DC offset or numerical noise.
SILENT_DBFS = -150.0
KERNEL_BUDGET = 1 << 22  # elements of the resampling kernel (float64 while built: 32 MB)


def find_audio(root: str | Path) -> list[PurePosixPath]:
    """Folder -> relative paths of its wav/flac/ogg files (any depth), sorted, so the order is the same anywhere."""
    root = Path(root)
    found = [p.relative_to(root) for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()]
    return sorted(PurePosixPath(p.as_posix()) for p in found)


def kernel_elements(orig: np.ndarray | int, new: np.ndarray | int) -> np.ndarray | int:
    """Size of torchaudio's windowed-sinc kernel for the reduced ratio orig -> new: [new, orig + 2 * width] with
    width = ceil(6 * orig / (0.99 * min(orig, new))) (torchaudio.functional._get_sinc_resample_kernel)."""
    width = np.ceil(6 * np.asarray(orig) / (0.99 * np.minimum(orig, new))).astype(np.int64)
    return np.asarray(new, dtype=np.int64) * (np.asarray(orig, dtype=np.int64) + 2 * width)


def resample_ratio(sr_in: int, sr_out: int, budget: int = KERNEL_BUDGET) -> tuple[int, int]:
    """(sr_in, sr_out) -> (orig, new) with new / orig closest to sr_out / sr_in among the ratios whose kernel fits
    `budget` elements: the exact ratio for every usual rate (44100 -> 16000 is 441 -> 160); for a rate like 44101
    or 1000003 Hz, where gcd(sr_in, sr_out) is 1 and the exact kernel would take gigabytes, the closest fitting
    ratio: off by 10 ppm for 96001 -> 16000 (as 6 -> 1), and at most 1 / min(sr_in, sr_out) for any rates, i.e. one
    sample per second (16001 -> 16000 as 1 -> 1), about a sound card clock's own tolerance (tests/test_audio.py)."""
    g = math.gcd(sr_in, sr_out)
    if kernel_elements(sr_in // g, sr_out // g) <= budget:
        return sr_in // g, sr_out // g
    ratio = sr_out / sr_in
    # The integer ratio (one of orig, new is 1): its kernel grows only with the input's own length.
    coarse = (max(1, round(1 / ratio)), 1) if ratio < 1 else (1, round(ratio))
    orig = np.arange(1, budget // 13 + 1, dtype=np.int64)  # new >= 1 makes every kernel >= 13 * orig
    new = np.maximum(np.round(orig * ratio).astype(np.int64), 1)
    error = np.where(kernel_elements(orig, new) <= budget, np.abs(new / orig - ratio), np.inf)
    best = int(np.argmin(error))  # the first minimum: the smallest kernel of that error
    if error[best] <= abs(coarse[1] / coarse[0] - ratio):
        return int(orig[best]), int(new[best])
    return coarse


def resample(wave: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """wave [..., T] at sr_in -> [..., ~T * sr_out / sr_in] at sr_out (torchaudio's windowed sinc), in bounded
    memory at any pair of rates (resample_ratio)."""
    if sr_in == sr_out:
        return wave
    orig, new = resample_ratio(int(sr_in), int(sr_out))
    return AF.resample(wave, orig, new)


def is_near_silent(wave: np.ndarray | torch.Tensor) -> bool:
    """wave [..., T] -> True when no channel holds a signal to localize: every channel's RMS after removing its
    mean (DC) is below SILENT_DBFS, i.e. zeros, a constant offset or noise far under any microphone's floor."""
    x = np.asarray(wave, dtype=np.float64)
    if x.size == 0:
        return True
    ac = x - x.mean(axis=-1, keepdims=True)
    power = np.mean(np.square(ac), axis=-1)
    return bool(np.all(power <= 10 ** (SILENT_DBFS / 10)))


def decode_audio(data: bytes | str | Path, name: str, sr: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Audio bytes or a file -> (float32 [T] mono, or [C, T] with mono=False, its rate); resampled to `sr` if given.

    ValueError naming `name` for a file soundfile cannot read, one whose header claims more than
    shards.limits.MAX_AUDIO_SAMPLES samples (checked before anything is allocated), an empty one, or NaN/Inf
    samples.
    """
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    try:
        with soundfile.SoundFile(source) as handle:
            check_audio_frames(handle.frames, handle.channels, name)  # a header may claim 2^36 samples
            audio, file_sr = handle.read(dtype="float32", always_2d=True), handle.samplerate  # [T, C]
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise ValueError(f"{name}: not a readable audio file ({str(err).splitlines()[0] if str(err) else err})") from None
    if audio.shape[0] == 0:
        raise ValueError(f"{name}: empty audio")
    if not np.isfinite(audio).all():
        raise ValueError(f"{name}: NaN or infinite samples")
    wave = torch.from_numpy(np.ascontiguousarray(audio.T))  # [C, T]
    if mono:
        wave = wave.mean(dim=0)
    if sr is not None and sr != file_sr:
        wave = resample(wave, int(file_sr), int(sr))
        file_sr = sr
    return wave.numpy(), int(file_sr)


def rms_db(audio: np.ndarray) -> float:
    """[T] -> RMS in dB below full scale (-inf for silence)."""
    power = float(np.mean(np.square(audio, dtype=np.float64))) if audio.size else 0.0
    return 10 * math.log10(power) if power > 0 else -math.inf


def fit_length(audio: np.ndarray, samples: int, rng: random.Random, tries: int = 8) -> np.ndarray:
    """audio [N] -> [samples]: a random crop when longer (redrawn up to `tries` times while it is near-silent,
    i.e. SILENCE_DB below the file's own level), zero-padded at the end when shorter."""
    if len(audio) < samples:
        return np.pad(audio, (0, samples - len(audio)))
    floor = rms_db(audio) + SILENCE_DB / 2  # 25 dB under the file's level
    crop = audio
    for _ in range(max(1, tries)):
        start = rng.randrange(len(audio) - samples + 1)
        crop = audio[start:start + samples]
        if rms_db(crop) > floor:
            break
    return crop


def speaker_of(relative: PurePosixPath) -> str:
    """`19/198/19-198-0001.flac` -> '19' (first folder); `19-198-0001.flac` at the top -> '19' (name prefix)."""
    if len(relative.parts) > 1:
        return relative.parts[0]
    return relative.stem.replace("_", "-").split("-")[0]
