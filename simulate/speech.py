"""Pack a folder of speech files into speech shards: mono FLAC at one sample rate, plus a json header.

Any wav, flac or ogg file at any rate and channel count is decoded, downmixed to mono and resampled to
`sr` (shards.audio); leading and trailing near-silence is trimmed, and a file that is silent throughout
is skipped and counted, as is one that does not decode. Shards are written atomically and a rerun skips
shards whose sidecar verifies, so an interrupted packing run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import soundfile
from tqdm import tqdm

from configs import ConfigError
from shards.audio import SILENCE_DB, decode_audio, find_audio, rms_db, speaker_of
from shards.files import atomic_write, remove_stale_temps, shard_is_current, tar_bytes, write_sidecar
from shards.layout import MANIFEST, SPEECH, sample_key, shard_count, shard_name
from shards.manifest import merge_manifest
from shards.samples import json_bytes

log = logging.getLogger(__name__)

FRAME_S = 0.02  # trimming works on 20 ms frames


def trim_silence(audio: np.ndarray, sr: int) -> np.ndarray:
    """[T] -> the span from the first to the last 20 ms frame within 50 dB of the loudest frame ([0] if none)."""
    frame = max(1, int(sr * FRAME_S))
    frames = len(audio) // frame
    if frames == 0:
        return audio
    power = np.square(audio[: frames * frame].astype(np.float64)).reshape(frames, frame).mean(axis=1)
    loud = np.flatnonzero(power > power.max() * 10 ** (SILENCE_DB / 10)) if power.max() > 0 else []
    if len(loud) == 0:
        return audio[:0]
    end = len(audio) if loud[-1] == frames - 1 else (loud[-1] + 1) * frame  # keep a loud file's partial last frame
    return audio[loud[0] * frame: end]


def flac_bytes(audio: np.ndarray, sr: int) -> bytes:
    """float [T] in [-1, 1] -> 24-bit mono FLAC bytes."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(audio, -1.0, 1.0), sr, format="FLAC", subtype="PCM_24")
    return buffer.getvalue()


def prepare(root: Path, relative: PurePosixPath, sr: int) -> tuple[bytes, dict[str, Any]]:
    """One file -> (FLAC bytes at `sr`, its json header); ValueError when it does not decode or is silent."""
    audio, _ = decode_audio(root / relative, str(root / relative), sr=sr)
    info = soundfile.info(str(root / relative))
    audio = trim_silence(audio, sr)
    if len(audio) < sr * FRAME_S or rms_db(audio) < SILENCE_DB:
        raise ValueError(f"{root / relative}: silent throughout")
    header = {"duration": len(audio) / sr, "sr": sr, "frames": len(audio), "channels": 1,
              "source_sr": info.samplerate, "source_channels": info.channels,
              "speaker": speaker_of(relative), "path": relative.as_posix()}
    return flac_bytes(audio, sr), header


def listing_hash(paths: list[PurePosixPath], root: Path, sr: int) -> str:
    """What a shard is made of (paths, sizes, mtimes, rate) -> hex digest; a changed folder rewrites the shard."""
    stats = [(p.as_posix(), (root / p).stat().st_size, int((root / p).stat().st_mtime)) for p in paths]
    return hashlib.sha256(json_bytes({"files": stats, "sr": sr})).hexdigest()


def pack_speech(audio_dir: Path, out: Path, shard_size: int = 256, sr: int = 16000, include: str = "*",
                progress: bool = False) -> Path:
    """Audio folder (files whose relative path matches `include`, a glob) -> `out/speech-{k:06d}.tar` shards,
    sidecars and manifest.json; returns the manifest path."""
    audio_dir, out = Path(audio_dir), Path(out)
    if not audio_dir.is_dir():
        raise ConfigError(f"--audio-dir: {audio_dir} is not a folder")
    if shard_size < 1:
        raise ConfigError(f"--shard-size: must be >= 1, got {shard_size}")
    if sr < 1000:
        raise ConfigError(f"--sr: must be >= 1000 Hz, got {sr}")
    paths = [p for p in find_audio(audio_dir) if p.match(include)]
    if not paths:
        raise ConfigError(f"--audio-dir: no .wav, .flac or .ogg files under {audio_dir}"
                          + (f" match --include {include}" if include != "*" else ""))
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    names, skipped, kept, seconds, speakers = [], [], 0, 0.0, set()
    bar = tqdm(total=len(paths), desc="speech", unit="file", disable=not progress)
    for k in range(shard_count(len(paths), shard_size)):
        chunk = paths[k * shard_size:(k + 1) * shard_size]
        path = out / shard_name(SPEECH, k)
        names.append(path.name)
        fields = {"shard": k, "files": len(chunk), "listing": listing_hash(chunk, audio_dir, sr), "config_hash": "speech"}
        record = shard_is_current(path, fields)
        if record is None:
            members, headers, shard_skips = [], [], []
            for relative in chunk:
                try:
                    data, header = prepare(audio_dir, relative, sr)
                except ValueError as err:
                    shard_skips.append({"path": relative.as_posix(), "reason": str(err).split(": ", 1)[-1]})
                    log.warning("skipping %s", err)
                    continue
                headers.append(header)
                members.append(data)
            first = k * shard_size
            tar = []
            for offset, (data, header) in enumerate(zip(members, headers)):
                key = sample_key(SPEECH, first + offset)
                tar += [(f"{key}.flac", data), (f"{key}.json", json_bytes({**header, "index": first + offset}))]
            atomic_write(path, tar_bytes(tar))
            record = write_sidecar(path, {**fields, "first_index": first, "count": len(headers), "skipped": shard_skips,
                                          "seconds": sum(h["duration"] for h in headers),
                                          "speakers": sorted({h["speaker"] for h in headers})})
        skipped += record["skipped"]
        kept += record["count"]
        seconds += record["seconds"]
        speakers.update(record["speakers"])
        bar.update(len(chunk))
    bar.close()
    header = {"kind": "speech", "config_hash": "speech", "audio_dir": audio_dir.name, "include": include,
              "shard_size": shard_size,
              "sr": sr, "speakers": len(speakers), "hours": round(seconds / 3600, 4), "skipped": skipped}
    merge_manifest(out, header, names, kept)
    return out / MANIFEST
