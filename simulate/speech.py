"""Pack a folder of flac/wav files into speech shards: the audio bytes as they are, plus a json header."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import soundfile
from tqdm import tqdm

from simulate.manifest import merge_manifest
from simulate.seeds import shard_count
from simulate.shards import (atomic_write, json_bytes, remove_stale_temps, shard_is_current, sidecar_path,
                             tar_bytes, write_sidecar)
from simulate.yaml_config import ConfigError

AUDIO_EXTENSIONS = {".flac": "flac", ".wav": "wav"}


def find_audio(root: Path) -> list[PurePosixPath]:
    """Folder -> relative paths of its flac/wav files (any depth), sorted, so the order is the same anywhere."""
    root = Path(root)
    found = [p.relative_to(root) for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()]
    return sorted(PurePosixPath(p.as_posix()) for p in found)


def speaker_of(relative: PurePosixPath) -> str:
    """`19/198/19-198-0001.flac` -> '19' (first folder); `19-198-0001.flac` at the top -> '19' (name prefix)."""
    if len(relative.parts) > 1:
        return relative.parts[0]
    return relative.stem.replace("_", "-").split("-")[0]


def describe(root: Path, relative: PurePosixPath) -> dict[str, Any]:
    """One audio file -> its json header (duration, sr, speaker, ...); soundfile reads only the header."""
    info = soundfile.info(str(Path(root) / relative))
    return {"duration": info.frames / info.samplerate, "sr": info.samplerate, "frames": info.frames,
            "channels": info.channels, "speaker": speaker_of(relative), "path": relative.as_posix()}


def shard_members(root: Path, entries: list[dict[str, Any]], first: int) -> list[tuple[str, bytes]]:
    """Described files -> tar members `speech-{index:09d}.{flac|wav}` and `.json`."""
    members = []
    for offset, meta in enumerate(entries):
        key = f"speech-{first + offset:09d}"
        ext = AUDIO_EXTENSIONS[PurePosixPath(meta["path"]).suffix.lower()]
        members += [(f"{key}.{ext}", (Path(root) / meta["path"]).read_bytes()),
                    (f"{key}.json", json_bytes({**meta, "index": first + offset}))]
    return members


def listing_hash(entries: list[dict[str, Any]]) -> str:
    """What a shard holds (paths, frames, rates) -> hex digest; a changed folder rewrites the shard."""
    return hashlib.sha256(json_bytes(entries)).hexdigest()


def pack_speech(audio_dir: Path, out: Path, shard_size: int = 256, progress: bool = False) -> Path:
    """flac/wav folder -> `out/speech-{k:06d}.tar` shards, sidecars and manifest.json; returns the manifest."""
    audio_dir, out = Path(audio_dir), Path(out)
    if not audio_dir.is_dir():
        raise ConfigError(f"--audio-dir: {audio_dir} is not a folder")
    if shard_size < 1:
        raise ConfigError(f"--shard-size: must be >= 1, got {shard_size}")
    paths = find_audio(audio_dir)
    if not paths:
        raise ConfigError(f"--audio-dir: no .flac or .wav files under {audio_dir}")
    entries, skipped = [], []
    for relative in tqdm(paths, desc="headers", unit="file", disable=not progress):
        try:
            entries.append(describe(audio_dir, relative))
        except (RuntimeError, soundfile.LibsndfileError) as err:
            skipped.append({"path": relative.as_posix(), "reason": str(err).splitlines()[0]})
            print(f"warning: skipping {audio_dir / relative}: {skipped[-1]['reason']}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for k in tqdm(range(shard_count(len(entries), shard_size)), desc="speech", unit="shard", disable=not progress):
        first = k * shard_size
        chunk = entries[first:first + shard_size]
        path = out / f"speech-{k:06d}.tar"
        names.append(path.name)
        fields = {"shard": k, "first_index": first, "count": len(chunk), "listing": listing_hash(chunk),
                  "config_hash": "speech"}
        if shard_is_current(path, fields) is None:
            remove_stale_temps(path)
            remove_stale_temps(sidecar_path(path))
            atomic_write(path, tar_bytes(shard_members(audio_dir, chunk, first)))
            write_sidecar(path, fields)
    header = {"kind": "speech", "config_hash": "speech", "audio_dir": audio_dir.name, "shard_size": shard_size,
              "speakers": len({e["speaker"] for e in entries}),
              "hours": round(sum(e["duration"] for e in entries) / 3600, 4),
              "skipped": skipped}
    merge_manifest(out, header, names, len(entries))
    return out / "manifest.json"
