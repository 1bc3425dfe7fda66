"""Check shards against their manifests, decode every sample, and check that no scene repeats across splits."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import soundfile

from shards.files import ShardError, iter_samples, sha256_bytes
from shards.limits import MAX_JSON_BYTES, load_json, read_regular_file, regular_file_size
from shards.array import ArraySetup
from shards.layout import DATASET, MANIFEST, SPEECH, sample_key
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
    if not path.exists():
        raise ShardError(f"{path}: missing")
    try:
        size = regular_file_size(path)  # a FIFO or a symlink to /dev/zero is refused, never read
    except OSError as err:
        raise ShardError(str(err)) from None
    if size != record.get("bytes"):
        raise ShardError(f"{path}: {size} bytes, manifest says {record.get('bytes')} (truncated or replaced)")
    try:
        data = read_regular_file(path)
    except OSError as err:
        raise ShardError(str(err)) from None
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


def check_setup(meta: dict[str, Any], manifest: dict[str, Any], where: str) -> None:
    """One RIR sample vs its split's manifest: the same sample rate, sound speed, source count, and mics where the
    config put them (or a spacing inside mic_spacing_range); ShardError naming the sample and both values."""
    config, key = manifest.get("config", {}), meta.get("index")
    try:
        setup = ArraySetup.from_meta(meta, where)
    except (ValueError, KeyError, TypeError) as err:
        raise ShardError(f"{where}: sample {key}: {err}") from None
    expected = {"sr": config.get("sr"), "num_sources": config.get("num_sources"),
                "sound_speed": config.get("sound_speed")}
    for field, value in expected.items():
        if value is not None and not math.isclose(getattr(setup, field), value, rel_tol=1e-9):
            raise ShardError(f"{where}: sample {key} has {field} {getattr(setup, field)}, the split's manifest "
                             f"says {value} (a shard of another setup)")
    spacing_range = config.get("mic_spacing_range")
    if spacing_range is not None:
        lo, hi = spacing_range
        if not lo - 1e-9 <= setup.mic_spacing <= hi + 1e-9:
            raise ShardError(f"{where}: sample {key} has mic_spacing {setup.mic_spacing} m, outside the manifest's "
                             f"mic_spacing_range {spacing_range}")
    elif "mic_positions" in config:
        offsets = np.asarray(meta["mic_pos"], dtype=np.float64) - np.asarray(meta["array_pos"], dtype=np.float64)
        wanted = np.asarray(config["mic_positions"], dtype=np.float64)
        if offsets.shape != wanted.shape or not np.allclose(offsets, wanted, atol=1e-6):
            raise ShardError(f"{where}: sample {key} has mics at {offsets.round(6).tolist()} from the array centre, "
                             f"the split's manifest says {wanted.tolist()} (a shard of another setup)")


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
        if not (isinstance(record.get("name"), str) and Path(record["name"]).name == record["name"]):
            raise ShardError(f"{manifest_path}: lists {record.get('name')!r} as a shard; expected a file name")
        path = directory / record["name"]
        for meta in check_shard(path, record, prefix, check_sample):
            if kind == "rir":
                check_setup(meta, manifest, str(path))
                scenes.setdefault(scene_signature(meta), f"{path} (sample index {meta.get('index')})")
    return manifest, scenes


def missing_splits(root: Path) -> list[str]:
    """Splits `root` should hold but has no manifest for -> one line each: those its dataset.json lists, and any
    folder holding shards or sidecars without a manifest.json (deleted, or never merged)."""
    try:
        listed = load_json(read_regular_file(root / DATASET, MAX_JSON_BYTES), str(root / DATASET)).get("splits", {})
    except (OSError, ValueError, AttributeError):
        listed = {}
    folders = {root / name for name in listed if isinstance(name, str)}
    folders |= {p.parent for pattern in ("*/*.tar", "*/*.json") for p in root.glob(pattern)}
    return [f"{folder / MANIFEST}: missing; " + (f"{root / DATASET} lists split {folder.name!r}" if folder.name in listed
                                                 else "the folder holds shards") + "; rerun the writer"
            for folder in sorted(folders) if not (folder / MANIFEST).is_file()]


def verify(root: Path) -> tuple[list[str], list[str]]:
    """Every manifest under `root` -> (one-line problems, one-line summaries); no problems means valid."""
    manifests = find_manifests(root)
    problems = [] if (root / MANIFEST).is_file() else missing_splits(root)
    if not manifests:
        return problems or [f"{root}: no {MANIFEST} found"], []
    summaries = []
    by_root: dict[Path, list[tuple[str, dict[tuple, str]]]] = {}
    for path in manifests:
        try:
            manifest, scenes = verify_split(path)
        except (ShardError, ValueError, KeyError, TypeError, AttributeError, OverflowError) as err:
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
