"""Check shards against their manifests, decode every sample, and check that no scene repeats across splits."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from simulate.manifest import MANIFEST, load_manifest
from simulate.shards import ShardError, read_samples, sha256_file

RIR_MEMBERS = {"rir.npy", "early.npy", "json"}
META_KEYS = ("sr", "rt60", "room_dim", "mic_pos", "src_pos", "array_pos", "sources", "seed", "generator_version")
SOURCE_KEYS = ("azimuth_deg", "lateral_deg", "elevation_deg", "distance_m", "tdoa_s")
SPEECH_KEYS = ("duration", "sr", "speaker")


def find_manifests(root: Path) -> list[Path]:
    """A split folder, or a folder of splits (any depth) -> its manifest.json files, sorted."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return [root / MANIFEST]
    return sorted(root.rglob(MANIFEST))


def load_npy(data: bytes, where: str) -> np.ndarray:
    """.npy bytes -> float32 array; ShardError unless it loads without pickle as float32."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ShardError(f"{where}: not a loadable .npy ({err})") from None
    if array.dtype != np.float32:
        raise ShardError(f"{where}: dtype {array.dtype}, expected float32")
    return array


def load_json(data: bytes, where: str) -> dict[str, Any]:
    """json member bytes -> dict; ShardError naming the member otherwise."""
    try:
        meta = json.loads(data)
    except ValueError as err:
        raise ShardError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ShardError(f"{where}: expected a JSON object")
    return meta


def check_rir_sample(key: str, parts: dict[str, bytes], where: str) -> dict[str, Any]:
    """One RIR sample's members -> its metadata; ShardError naming the key on any mismatch."""
    if set(parts) != RIR_MEMBERS:
        raise ShardError(f"{where}: sample {key} has members {sorted(parts)}, expected {sorted(RIR_MEMBERS)}")
    meta = load_json(parts["json"], f"{where}: {key}.json")
    missing = [name for name in META_KEYS if name not in meta]
    if missing:
        raise ShardError(f"{where}: sample {key} json lacks {missing}")
    rir = load_npy(parts["rir.npy"], f"{where}: {key}.rir.npy")
    early = load_npy(parts["early.npy"], f"{where}: {key}.early.npy")
    mics, sources = len(meta["mic_pos"]), len(meta["src_pos"])
    if rir.ndim != 3 or rir.shape[:2] != (mics, sources) or rir.shape[2] < 1:
        raise ShardError(f"{where}: {key}.rir.npy shape {rir.shape}, expected ({mics}, {sources}, L)")
    if early.shape != rir.shape:
        raise ShardError(f"{where}: {key}.early.npy shape {early.shape} differs from rir {rir.shape}")
    if not np.isfinite(rir).all() or not np.isfinite(early).all():
        raise ShardError(f"{where}: {key} holds NaN or Inf")
    if len(meta["sources"]) != sources or any(k not in s for s in meta["sources"] for k in SOURCE_KEYS):
        raise ShardError(f"{where}: sample {key} json 'sources' must hold {sources} objects with {SOURCE_KEYS}")
    return meta


def check_speech_sample(key: str, parts: dict[str, bytes], where: str) -> dict[str, Any]:
    """One speech sample's members -> its metadata; the audio header must read with soundfile."""
    import soundfile

    audio = [ext for ext in parts if ext in ("flac", "wav")]
    if set(parts) != {"json", *audio} or len(audio) != 1:
        raise ShardError(f"{where}: sample {key} has members {sorted(parts)}, expected json and flac or wav")
    meta = load_json(parts["json"], f"{where}: {key}.json")
    if any(name not in meta for name in SPEECH_KEYS):
        raise ShardError(f"{where}: sample {key} json lacks one of {SPEECH_KEYS}")
    try:
        info = soundfile.info(io.BytesIO(parts[audio[0]]))
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise ShardError(f"{where}: {key}.{audio[0]} does not decode ({err})") from None
    if info.samplerate != meta["sr"]:
        raise ShardError(f"{where}: {key} sr {info.samplerate} differs from json {meta['sr']}")
    return meta


def check_shard(path: Path, record: dict[str, Any], prefix: str,
                check_sample: Callable[[str, dict[str, bytes], str], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Shard file vs its manifest record (bytes, sha256, count, keys `{prefix}-{index:09d}`) -> sample metadata."""
    if not path.is_file():
        raise ShardError(f"{path}: missing")
    size = path.stat().st_size
    if size != record.get("bytes"):
        raise ShardError(f"{path}: {size} bytes, manifest says {record.get('bytes')} (truncated or replaced)")
    if sha256_file(path) != record.get("sha256"):
        raise ShardError(f"{path}: sha256 differs from the manifest (corrupted)")
    count = 0
    for key, parts in read_samples(path):
        expected = f"{prefix}-{record.get('first_index', 0) + count:09d}"
        if key != expected:
            raise ShardError(f"{path}: sample key {key!r} where {expected!r} was expected")
        yield check_sample(key, parts, str(path))
        count += 1
    if count != record.get("count"):
        raise ShardError(f"{path}: {count} samples, manifest says {record.get('count')}")


def scene_signature(meta: dict[str, Any]) -> tuple:
    """Sample metadata -> rounded geometry (room, array, sources): equal for a repeated scene."""
    values = [*meta["room_dim"], *meta["array_pos"], *(x for p in meta["src_pos"] for x in p)]
    return tuple(round(float(v), 6) for v in values)


def verify_split(manifest_path: Path) -> tuple[dict[str, Any], dict[tuple, str]]:
    """One split -> (its manifest, {scene signature: 'shard key'}); ShardError on the first problem."""
    manifest = load_manifest(manifest_path)
    directory = manifest_path.parent
    if not manifest.get("complete", False):
        present, total = manifest.get("present_shards"), manifest.get("num_shards")
        raise ShardError(f"{manifest_path}: incomplete ({present}/{total} shards); rerun the writer")
    kind = manifest.get("kind", "rir")
    check_sample = check_rir_sample if kind == "rir" else check_speech_sample
    prefix = manifest["split"] if kind == "rir" else "speech"
    listed = {record["name"] for record in manifest["shards"]}
    stray = sorted(p.name for p in directory.glob("*.tar") if p.name not in listed)
    if stray:
        raise ShardError(f"{directory / stray[0]}: shard not listed in {manifest_path}")
    scenes: dict[tuple, str] = {}
    for record in manifest["shards"]:
        path = directory / record["name"]
        for meta in check_shard(path, record, prefix, check_sample):
            if kind == "rir":
                scenes.setdefault(scene_signature(meta), f"{path} (sample index {meta.get('index')})")
    return manifest, scenes


def verify(root: Path) -> tuple[list[str], list[str]]:
    """Every manifest under `root` -> (one-line problems, one-line summaries); no problems means valid."""
    manifests = find_manifests(root)
    if not manifests:
        return [f"{root}: no {MANIFEST} found"], []
    problems, summaries = [], []
    by_root: dict[Path, list[tuple[str, dict[tuple, str]]]] = {}
    for path in manifests:
        try:
            manifest, scenes = verify_split(path)
        except (ShardError, ValueError, KeyError, TypeError) as err:
            problems.append(str(err) if isinstance(err, (ShardError, ValueError)) else f"{path}: malformed ({err!r})")
            continue
        summaries.append(f"{path.parent}: {len(manifest['shards'])} shards, {manifest['count']} samples ok")
        if manifest.get("kind", "rir") == "rir":
            by_root.setdefault(path.parent.parent, []).append((path.parent.name, scenes))
    for splits in by_root.values():
        splits.sort(key=lambda item: (item[0] != "train", item[0]))  # blame the non-train split
        for i, (name_a, scenes_a) in enumerate(splits):
            for name_b, scenes_b in splits[i + 1:]:
                shared = scenes_a.keys() & scenes_b.keys()
                if shared:
                    signature = min(shared)
                    problems.append(f"{scenes_b[signature]}: repeats {name_a} scene {scenes_a[signature]} "
                                    f"({len(shared)} shared scenes between {name_a} and {name_b})")
    return problems, summaries
