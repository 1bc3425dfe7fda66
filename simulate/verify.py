"""Check shards against their manifests, decode every sample, and check that no scene repeats across splits."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable, Iterator

import soundfile

from shards.files import ShardError, iter_samples, sha256_bytes
from shards.layout import MANIFEST, SPEECH, sample_key
from shards.manifest import load_manifest
from shards.samples import decode_rir, speech_member


def find_manifests(root: Path) -> list[Path]:
    """A split folder, or a folder of splits (any depth) -> its manifest.json files, sorted."""
    root = Path(root)
    if (root / MANIFEST).is_file():
        return [root / MANIFEST]
    return sorted(root.rglob(MANIFEST))


def check_rir_sample(key: str, parts: dict[str, bytes], where: str) -> dict[str, Any]:
    """One RIR sample's members -> its metadata; ShardError naming the key on any mismatch."""
    return decode_rir(key, parts, where).meta


def check_speech_sample(key: str, parts: dict[str, bytes], where: str) -> dict[str, Any]:
    """One speech sample's members -> its metadata; the audio header must read with soundfile."""
    ext, meta = speech_member(key, parts, where)
    try:
        info = soundfile.info(io.BytesIO(parts[ext]))
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise ShardError(f"{where}: {key}.{ext} does not decode ({err})") from None
    if info.samplerate != meta["sr"]:
        raise ShardError(f"{where}: {key} sr {info.samplerate} differs from json {meta['sr']}")
    return meta


def check_shard(path: Path, record: dict[str, Any], prefix: str,
                check_sample: Callable[[str, dict[str, bytes], str], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Shard file vs its manifest record (bytes, sha256, count, keys `{prefix}-{index:09d}`) -> sample metadata."""
    if not path.is_file():
        raise ShardError(f"{path}: missing")
    data = path.read_bytes()
    if len(data) != record.get("bytes"):
        raise ShardError(f"{path}: {len(data)} bytes, manifest says {record.get('bytes')} (truncated or replaced)")
    if sha256_bytes(data) != record.get("sha256"):
        raise ShardError(f"{path}: sha256 differs from the manifest (corrupted)")
    count = 0
    for key, parts in iter_samples(data, str(path)):
        expected = sample_key(prefix, record.get("first_index", 0) + count)
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
    prefix = manifest["split"] if kind == "rir" else SPEECH
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
