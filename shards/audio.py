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

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg")
SILENCE_DB = -50.0  # a segment whose RMS stays this far below full scale counts as silent


def find_audio(root: str | Path) -> list[PurePosixPath]:
    """Folder -> relative paths of its wav/flac/ogg files (any depth), sorted, so the order is the same anywhere."""
    root = Path(root)
    found = [p.relative_to(root) for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()]
    return sorted(PurePosixPath(p.as_posix()) for p in found)


def resample(wave: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """wave [..., T] at sr_in -> [..., T * sr_out / sr_in] at sr_out (torchaudio's windowed sinc)."""
    if sr_in == sr_out:
        return wave
    g = math.gcd(sr_in, sr_out)
    return AF.resample(wave, sr_in // g, sr_out // g)


def decode_audio(data: bytes | str | Path, name: str, sr: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Audio bytes or a file -> (float32 [T] mono, or [C, T] with mono=False, its rate); resampled to `sr` if given.

    ValueError naming `name` for a file soundfile cannot read, an empty one, or NaN/Inf samples.
    """
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    try:
        audio, file_sr = soundfile.read(source, dtype="float32", always_2d=True)  # [T, C]
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
