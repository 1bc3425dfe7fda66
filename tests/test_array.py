"""The array record (shards.array): validation, round trips, reading it from new and older sample metadata."""
from __future__ import annotations

import ast
import math
import tokenize
from pathlib import Path

import numpy as np
import pytest

from shards.array import SOUND_SPEED, ArraySetup
from shards.files import ShardError
from shards.samples import decode_rir, json_bytes, npy_bytes

ROOT = Path(__file__).resolve().parents[1]


def scene_meta(spacing: float = 0.1, sound_speed: float = SOUND_SPEED, sources=((3.0, 2.5, 1.2), (1.0, 2.0, 1.6)),
               record: bool = True) -> dict:
    """Metadata of a scene with two mics at x = 2 -/+ spacing/2, TDOAs computed at `sound_speed`."""
    mics = np.array([[2.0 - spacing / 2, 2.0, 1.5], [2.0 + spacing / 2, 2.0, 1.5]])
    src = np.array(sources, dtype=np.float64)
    tdoa = (np.linalg.norm(src - mics[1], axis=1) - np.linalg.norm(src - mics[0], axis=1)) / sound_speed
    meta = {"sr": 16000, "mic_pos": mics.tolist(), "src_pos": src.tolist(),
            "sources": [{"azimuth_deg": 0.0, "lateral_deg": 0.0, "elevation_deg": 0.0, "distance_m": 1.0,
                         "tdoa_s": float(t)} for t in tdoa]}
    if record:
        meta["array"] = ArraySetup(16000, spacing, sound_speed, len(src)).to_dict()
    return meta


def test_round_trip_and_defaults():
    setup = ArraySetup(16000, 0.08)
    assert setup.sound_speed == SOUND_SPEED and setup.num_sources == 2
    assert ArraySetup.from_dict(setup.to_dict(), "here") == setup
    assert ArraySetup.from_dict({"sr": 16000, "mic_spacing": 0.08}, "here") == setup
    with pytest.raises(AttributeError):
        setup.sr = 8000  # frozen


@pytest.mark.parametrize("field, value", [
    ("sr", 0), ("sr", 16000.0), ("sr", True), ("mic_spacing", 0.0), ("mic_spacing", -0.1),
    ("mic_spacing", math.nan), ("mic_spacing", "0.1"), ("sound_speed", math.inf), ("sound_speed", 0.0),
    ("num_sources", 0), ("num_sources", 1.5),
])
def test_validate_names_the_field_in_one_line(field, value):
    fields = {"sr": 16000, "mic_spacing": 0.1, "sound_speed": 343.0, "num_sources": 2, field: value}
    with pytest.raises(ValueError, match=rf"^shard x: {field} must be ") as err:
        ArraySetup(**fields).validate("shard x")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("data, message", [
    ({"sr": 16000, "mic_spacing": 0.1, "spacing": 0.1}, "unknown key 'spacing'"),
    ({"sr": 16000}, "lacks 'mic_spacing'"),
    ([16000, 0.1], "expected an object"),
])
def test_from_dict_refuses_unknown_missing_and_non_objects(data, message):
    with pytest.raises(ValueError, match=message):
        ArraySetup.from_dict(data, "m.json")


def test_from_meta_reads_the_record_and_checks_it_against_the_scene():
    assert ArraySetup.from_meta(scene_meta(0.12, 343.0), "s") == ArraySetup(16000, 0.12, 343.0, 2)
    for field, value, message in [("mic_spacing", 0.1, "mic_pos puts mic 0 and mic 1 0.12"),
                                  ("sr", 8000, "array.sr is 8000"), ("num_sources", 3, "array.num_sources is 3")]:
        meta = scene_meta(0.12)
        meta["array"][field] = value
        with pytest.raises(ValueError, match=message):
            ArraySetup.from_meta(meta, "s")


def test_records_of_older_generators_are_derived_from_geometry_and_tdoas():
    # No `array` object: the spacing from mic_pos, c from the TDOAs (here simulated at 343 m/s), sources counted.
    legacy = ArraySetup.from_meta(scene_meta(0.07, 343.0, record=False), "old")
    assert legacy.sr == 16000 and legacy.num_sources == 2
    assert legacy.mic_spacing == pytest.approx(0.07, rel=1e-12)
    assert legacy.sound_speed == pytest.approx(343.0, rel=1e-9)
    # Every source broadside (no TDOA to read c from): the default speed.
    broadside = scene_meta(0.1, 343.0, sources=((2.0, 4.0, 1.5),), record=False)
    assert ArraySetup.from_meta(broadside, "old").sound_speed == SOUND_SPEED


def test_decode_rir_refuses_a_sample_whose_record_disagrees():
    meta = {**scene_meta(0.1), "rt60": 0.3, "room_dim": [5, 5, 3], "array_pos": [2, 2, 1.5], "seed": 0,
            "generator_version": "x"}
    rir = npy_bytes(np.zeros((2, 2, 8), dtype=np.float32))
    parts = {"rir.npy": rir, "early.npy": rir, "json": json_bytes(meta)}
    assert decode_rir("k", parts, "shard.tar").array == ArraySetup(16000, 0.1)
    meta["array"]["mic_spacing"] = 0.2
    with pytest.raises(ShardError, match=r"shard.tar: sample k json: array.mic_spacing is 0.2"):
        decode_rir("k", {**parts, "json": json_bytes(meta)}, "shard.tar")


def number_literals(path: Path, value: float) -> list[str]:
    """-> 'path:line' of every numeric literal equal to `value` in a Python file (strings and comments not counted)."""
    with path.open("rb") as handle:
        return [f"{path.relative_to(ROOT)}:{token.start[0]}" for token in tokenize.tokenize(handle.readline)
                if token.type == tokenize.NUMBER and ast.literal_eval(token.string) == value]


def test_the_speed_of_sound_is_written_once_in_simulate_and_shards():
    found = [hit for folder in ("simulate", "shards") for path in sorted((ROOT / folder).glob("*.py"))
             for hit in number_literals(path, SOUND_SPEED)]
    assert found == ["shards/array.py:16"], f"340 written outside SOUND_SPEED: {found}"
