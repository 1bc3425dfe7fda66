"""The array record: one frozen description of the setup a scene was simulated with and a run must match.

The simulator writes it as the `array` object of every RIR sample's json and of each split's manifest;
training reads it back (`ArraySetup.from_meta`) and checks it once; nothing else restates its fields.
It describes the pair mic 0 -> mic 1, the pair every sample's `tdoa_s` refers to.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SOUND_SPEED = 340.0  # m/s, the seed protocol's speed of sound (docs/protocol.md); the one place it is written
ARRAY_KEY = "array"  # the record's key in a sample's json and in a split's manifest
_MIN_TDOA_S = 1e-6  # a source this close to broadside cannot tell the speed of sound (legacy records)


def _need(ok: bool, where: str, field: str, expected: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{where}: {field} must be {expected}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ArraySetup:
    """sr (Hz), mic_spacing (m, mic 0 to mic 1), sound_speed (m/s), num_sources (sources per scene)."""

    sr: int
    mic_spacing: float
    sound_speed: float = SOUND_SPEED
    num_sources: int = 2

    def validate(self, where: str = ARRAY_KEY) -> ArraySetup:
        """-> self; ValueError naming `where` and the field unless every field is finite and physical."""
        _need(_is_int(self.sr) and self.sr > 0, where, "sr", "a positive integer (Hz)", self.sr)
        for field in ("mic_spacing", "sound_speed"):
            value = getattr(self, field)
            _need(_is_number(value) and math.isfinite(value) and value > 0, where, field,
                  "a finite number > 0", value)
        _need(_is_int(self.num_sources) and self.num_sources >= 1, where, "num_sources",
              "an integer >= 1", self.num_sources)
        return self

    def to_dict(self) -> dict[str, Any]:
        """-> {'sr', 'mic_spacing', 'sound_speed', 'num_sources'} as plain JSON values."""
        return {"sr": int(self.sr), "mic_spacing": float(self.mic_spacing),
                "sound_speed": float(self.sound_speed), "num_sources": int(self.num_sources)}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ArraySetup:
        """A dict written by to_dict -> the validated record; ValueError naming `where` and the key otherwise."""
        fields = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object with keys {fields}, got {type(d).__name__}")
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; expected keys {fields}")
        missing = [name for name in ("sr", "mic_spacing") if name not in d]
        if missing:
            raise ValueError(f"{where}: lacks {missing[0]!r}; expected keys {fields}")
        return cls(**d).validate(where)

    @classmethod
    def from_meta(cls, meta: dict[str, Any], where: str) -> ArraySetup:
        """A RIR sample's json -> its record: its `array` object, checked against the sample's own sr, mic
        and source positions; shards of generator versions before it derive the record from those fields."""
        mic = np.asarray(meta["mic_pos"], dtype=np.float64)
        if mic.ndim != 2 or mic.shape[0] < 2 or mic.shape[1] != 3:
            raise ValueError(f"{where}: mic_pos must list at least two [x, y, z] mics, got shape {list(mic.shape)}")
        spacing = float(np.linalg.norm(mic[1] - mic[0]))
        if ARRAY_KEY not in meta:
            return cls(int(meta["sr"]), spacing, _legacy_sound_speed(meta, mic), len(meta["src_pos"])).validate(where)
        setup = cls.from_dict(meta[ARRAY_KEY], f"{where}: {ARRAY_KEY}")
        for field, recorded, derived in (("sr", setup.sr, meta["sr"]),
                                         ("num_sources", setup.num_sources, len(meta["src_pos"]))):
            if recorded != derived:
                raise ValueError(f"{where}: {ARRAY_KEY}.{field} is {recorded}, the sample's own fields say {derived}")
        if not math.isclose(setup.mic_spacing, spacing, rel_tol=1e-6, abs_tol=1e-9):
            raise ValueError(f"{where}: {ARRAY_KEY}.mic_spacing is {setup.mic_spacing} m, mic_pos puts mic 0 and "
                             f"mic 1 {spacing} m apart")
        return setup


def _legacy_sound_speed(meta: dict[str, Any], mic: np.ndarray) -> float:
    """Records before `array`: c from the geometry and the TDOAs, tdoa = (|s - m1| - |s - m0|) / c (median over
    sources); SOUND_SPEED when every source is broadside."""
    speeds = []
    for src, source in zip(meta["src_pos"], meta["sources"]):
        src = np.asarray(src, dtype=np.float64)
        tdoa = float(source["tdoa_s"])
        if abs(tdoa) > _MIN_TDOA_S:
            speeds.append((np.linalg.norm(src - mic[1]) - np.linalg.norm(src - mic[0])) / tdoa)
    return float(np.median(speeds)) if speeds else SOUND_SPEED
