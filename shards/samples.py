"""What a sample holds: member names, metadata keys, encoding on write and validated decoding on read.

RIR sample `{split}-{index:09d}`: `rir.npy` and `early.npy` (float32 [mics, sources, L], no pickle) and
`json` (META_KEYS, and per source SOURCE_KEYS; since generator version 3 also the array record,
shards.array; the full field list is in shards/README.md).
Speech sample `speech-{index:09d}`: one audio member (AUDIO_MEMBERS) and `json` (SPEECH_KEYS).
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shards.array import ArraySetup
from shards.files import ShardError
from shards.limits import load_json as bounded_json

RIR_MEMBERS = ("rir.npy", "early.npy", "json")
META_KEYS = ("sr", "rt60", "room_dim", "mic_pos", "src_pos", "array_pos", "sources", "seed", "generator_version")
SOURCE_KEYS = ("azimuth_deg", "lateral_deg", "elevation_deg", "distance_m", "tdoa_s")
SPEECH_KEYS = ("duration", "sr", "speaker")
AUDIO_MEMBERS = ("flac", "wav", "ogg")


def npy_bytes(array: np.ndarray) -> bytes:
    """float array -> .npy bytes (little-endian float32, C order; loads with allow_pickle=False)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype="<f4"), allow_pickle=False)
    return buffer.getvalue()


def json_bytes(value: Any) -> bytes:
    """JSON-able value -> UTF-8 bytes with a stable key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def npy_header(data: bytes, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """.npy bytes -> (shape, dtype) from the header alone; ShardError unless the payload after the header holds
    exactly what the header claims (a header may claim gigabytes in a few bytes: nothing is allocated first)."""
    buffer = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buffer)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f".npy format version {version}")
        shape, _, dtype = read(buffer, max_header_size=1024)
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise ShardError(f"{where}: not a loadable .npy ({str(err).splitlines()[0] if str(err) else err})") from None
    if dtype.hasobject:
        raise ShardError(f"{where}: dtype {dtype} holds objects, expected float32")
    payload = len(data) - buffer.tell()
    claimed = math.prod(shape) * dtype.itemsize
    if claimed != payload:
        raise ShardError(f"{where}: header claims shape {shape} ({claimed} bytes), the member holds {payload}")
    return shape, dtype


def load_npy(data: bytes, where: str) -> np.ndarray:
    """.npy bytes -> float32 array; ShardError unless its header fits its bytes (npy_header) and it loads
    without pickle as float32."""
    npy_header(data, where)
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
        meta = bounded_json(data, where)
    except ValueError as err:
        raise ShardError(str(err)) from None
    if not isinstance(meta, dict):
        raise ShardError(f"{where}: expected a JSON object")
    return meta


@dataclass(frozen=True)
class RirSample:
    """One decoded, validated scene: rir and early float32 [mics, sources, L], its metadata and array record."""
    key: str
    rir: np.ndarray
    early: np.ndarray
    meta: dict[str, Any]
    array: ArraySetup

    def angles(self, name: str) -> np.ndarray:
        """'azimuth' or 'lateral' -> float32 [sources] in degrees, in source order."""
        return np.array([float(s[f"{name}_deg"]) for s in self.meta["sources"]], dtype=np.float32)


def decode_rir(key: str, parts: dict[str, bytes], where: str) -> RirSample:
    """One RIR sample's members -> RirSample; ShardError naming the shard and key on any mismatch."""
    if set(parts) != set(RIR_MEMBERS):
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
    sources_meta = meta["sources"]
    if (not isinstance(sources_meta, list) or len(sources_meta) != sources
            or any(not isinstance(s, dict) or k not in s for s in sources_meta for k in SOURCE_KEYS)):
        raise ShardError(f"{where}: sample {key} json 'sources' must hold {sources} objects with {SOURCE_KEYS}")
    if not all(np.isfinite(float(s[k])) for s in sources_meta for k in SOURCE_KEYS):
        raise ShardError(f"{where}: sample {key} json 'sources' hold NaN or Inf")
    try:
        array = ArraySetup.from_meta(meta, f"{where}: sample {key} json")
    except ValueError as err:
        raise ShardError(str(err)) from None
    return RirSample(key, rir, early, meta, array)


def speech_member(key: str, parts: dict[str, bytes], where: str) -> tuple[str, dict[str, Any]]:
    """One speech sample's members -> (its audio member's extension, its metadata); ShardError otherwise."""
    audio = [ext for ext in parts if ext in AUDIO_MEMBERS]
    if set(parts) != {"json", *audio} or len(audio) != 1:
        raise ShardError(f"{where}: sample {key} has members {sorted(parts)}, expected json and one of "
                         f"{', '.join(AUDIO_MEMBERS)}")
    meta = load_json(parts["json"], f"{where}: {key}.json")
    if any(name not in meta for name in SPEECH_KEYS):
        raise ShardError(f"{where}: sample {key} json lacks one of {SPEECH_KEYS}")
    return audio[0], meta
