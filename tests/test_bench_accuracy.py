"""benchmarks/bench_accuracy.py: talker pairing, pyroomacoustics' angle convention, peak picking, the cache, an
anechoic physics check, and (slow) the whole benchmark on a tiny case."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_accuracy as bench  # noqa: E402
from simulate.geometry import source_geometry  # noqa: E402
from ssl_model import SSLModel  # noqa: E402
from ssl_model.baselines import lateral_to_tdoa  # noqa: E402
from training.checkpoint import export_weights  # noqa: E402
from training.config import load_train_config  # noqa: E402

METHOD_KINDS = {"model", "gcc_phat", "pra_SRP", "pra_MUSIC", "pra_NormMUSIC", "chance"}


def delayed(signal: np.ndarray, samples: float) -> np.ndarray:
    """[T] -> [T] delayed by a fractional number of samples (circular, by a linear phase)."""
    freq = np.fft.rfftfreq(len(signal))
    return np.fft.irfft(np.fft.rfft(signal) * np.exp(-2j * np.pi * freq * samples), len(signal))


def speechlike(seconds: float, seed: int, sr: int = 16000) -> np.ndarray:
    """[T] noise bursts at a syllable rate (~4 Hz), band-limited, peak 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, np.pi)), 0, None) ** 2
    noise = np.convolve(rng.standard_normal(len(t)), np.hanning(9), mode="same")  # some low-pass
    wave = envelope * noise
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


# ---------------------------------------------------------------------------------------------- speech pairing


def test_talker_is_the_character_field_of_the_file_name():
    assert bench.talker_of("airplane/nl/let-m-divna.ogg") == "m"
    assert bench.talker_of("wreck/nl/pot-v-vidim.ogg") == "v"
    assert bench.talker_of("electromagnet/nl/b-hurt-0.ogg") == "hurt"
    assert bench.talker_of("briefcase/nl/help1.ogg") == "briefcase"  # no character field: the level folder
    assert bench.talker_of("alice_01.wav") == "alice"  # at the top: the name prefix


def utterances(talkers: dict[str, list[float]]) -> list:
    return [bench.Utterance(f"lvl/{t}-{k}.wav", t, d, f"/nowhere/{t}-{k}.wav")
            for t, durations in talkers.items() for k, d in enumerate(durations)]


def test_pairs_are_two_characters_with_enough_speech_each():
    pool = utterances({"m": [0.7, 1.1, 2.5, 0.4], "v": [4.0, 0.9], "x": [1.0]})
    plans = bench.plan_mixtures(pool, 60, seed=1)
    seen = set()
    for plan in plans:
        a, b = plan["talkers"]
        assert a != b
        seen.add(frozenset((a, b)))
        for talker, files in zip(plan["talkers"], plan["files"]):
            assert all(pool[f].talker == talker for f in files)
            assert sum(pool[f].seconds for f in files) >= 3.0
            assert sum(pool[f].seconds for f in files[:-1]) < 3.0  # stops as soon as there is enough
        assert all(-2.5 <= g <= 2.5 for g in plan["gain_db"])
    assert len(seen) == 3  # every pairing of the three characters occurs
    assert bench.plan_mixtures(pool, 60, seed=1) == plans  # seeded
    assert bench.plan_mixtures(pool, 10, seed=1) == plans[:10]  # mixture i does not depend on N
    assert bench.plan_mixtures(pool, 10, seed=2) != plans[:10]
    lone = bench.plan_mixtures(utterances({"m": [1.0, 2.0]}), 5, seed=1)
    assert all(p["talkers"] == ["m", "m"] for p in lone)  # one character: it talks twice


def test_render_speech_concatenates_and_crops_to_3_s(tmp_path):
    for k in range(2):
        soundfile.write(tmp_path / f"a-m-{k}.wav", speechlike(1.3, k), 16000)
        soundfile.write(tmp_path / f"a-v-{k}.wav", speechlike(2.0, 10 + k, sr=22050), 22050)  # resampled
    pool = bench.index_speech(tmp_path)
    assert [u.talker for u in pool] == ["m", "m", "v", "v"] and pool[2].seconds == pytest.approx(2.0)
    plans = bench.plan_mixtures(pool, 3, seed=0)
    speech = bench.render_speech(pool, plans)
    assert speech.shape == (3, 2, bench.CLIP) and speech.dtype == np.float32
    assert (np.abs(speech).max(axis=-1) > 0.1).all()  # both sources of every mixture hold sound


def test_missing_speech_folder_is_a_one_line_error(tmp_path, capsys):
    assert bench.main(["--speech", str(tmp_path / "nope"), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "prepare_speech.sh" in err
    (tmp_path / "empty").mkdir()
    assert bench.main(["--speech", str(tmp_path / "empty"), "--cache", str(tmp_path / "cache")]) == 2
    assert "prepare_speech.sh" in capsys.readouterr().err
    assert bench.main(["--speech", str(tmp_path / "empty"), "--sets", "c"]) == 2
    assert "--sets" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # nothing built


# ---------------------------------------------------------------------------------------------- DOA conventions


@pytest.mark.parametrize("lateral", [20.0, 60.0, 100.0, 155.0])
def test_pra_azimuth_is_our_lateral_angle(lateral):
    # One white source: mic 1 hears it tdoa = -d cos(lateral) / c after mic 0 (ssl_model.baselines' convention).
    source = np.random.default_rng(0).standard_normal(16000)
    tdoa = float(lateral_to_tdoa(torch.tensor(lateral, dtype=torch.float64)))
    wave = np.stack((source, delayed(source, tdoa * bench.SR)))
    X = bench.stft(wave)
    assert X.shape == (2, bench.NFFT // 2 + 1, 1 + (16000 - bench.NFFT) // bench.HOP)
    for name in bench.PRA_METHODS:
        doa = bench.make_doa(name)
        doa.locate_sources(X, freq_range=list(bench.FREQ_RANGE))
        best = bench.GRID_DEG[bench.grid_peaks(doa.grid.values)[0]]
        assert abs(best - lateral) <= 1.5, (name, best, lateral)  # not 180 - lateral


def test_grid_peaks_on_the_half_circle():
    values = np.array([5.0, 1, 2, 1, 0, 3, 3, 1, 4])
    assert bench.grid_peaks(values).tolist() == [0, 8]  # both ends count, and 0 and 180 are not neighbours
    assert bench.grid_peaks(values, 3).tolist() == [0, 8, 6]  # a plateau counts once, at its right end
    assert bench.grid_peaks(np.arange(5.0)).tolist() == [4, 4]  # one maximum: repeated
    assert bench.grid_peaks(np.ones(4)).tolist() == [3, 3]


def test_pra_rir_is_cut_at_1_5_rt60_with_a_negligible_tail():
    room, mics = [6.0, 5.0, 3.0], np.array([[2.95, 2.0, 1.5], [3.05, 2.0, 1.5]])
    sources = np.array([[4.0, 3.0, 1.5], [1.5, 3.5, 2.0]])
    rir, info = bench.pra_rir(room, mics, sources, rt60=0.3)
    assert rir.shape == (2, 2, math.ceil(1.5 * 16000 * 0.3)) and rir.dtype == np.float32
    assert info["tail_db"] < -40 and info["max_order"] > 5
    with pytest.raises(ValueError):
        bench.pra_rir([10.0, 6.0, 4.0], mics, sources, rt60=0.1)  # Sabine cannot make a room that big that dry


def test_anechoic_mixtures_are_localized_by_gcc_phat_and_srp():
    """Physics: two speech-like sources in an anechoic room (pyroomacoustics, direct paths only), 2-3 m away
    at lateral angles 25-155 degrees, at least 30 apart: GCC-PHAT and SRP-PHAT find both within a few degrees."""
    room = np.array([8.0, 6.0, 3.0])
    centre = np.array([4.0, 3.0, 1.4])
    mics = centre + np.array([[-0.05, 0.0, 0.0], [0.05, 0.0, 0.0]])
    cases = [(35.0, 110.0, 2.0, 0.0), (60.0, 150.0, 2.5, 20.0), (25.0, 80.0, 3.0, -10.0), (95.0, 140.0, 2.0, 5.0)]
    rirs, src = [], []
    for a, b, distance, elevation in cases:
        pos = []
        for k, lateral in enumerate((a, b)):
            lat, el = math.radians(lateral), math.radians(elevation * (1 if k else -1))
            direction = np.array([math.cos(lat), math.sin(lat) * math.cos(el), math.sin(lat) * math.sin(el)])
            pos.append(centre + distance * direction)
        src.append(pos)
        rirs.append(bench.pra_rir(room.tolist(), mics, np.array(pos), rt60=None)[0])
    geometry = source_geometry(torch.tensor(np.array(src)), torch.tensor(np.stack([mics] * len(cases))),
                               torch.tensor(np.stack([centre] * len(cases))))
    truth = np.sort(geometry["lateral_deg"].numpy(), axis=1)
    np.testing.assert_allclose(truth, np.array([c[:2] for c in cases]), atol=1.0)  # near field: within a degree
    speech = np.stack([np.stack([speechlike(3.0, 2 * i), speechlike(3.0, 2 * i + 1)]) for i in range(len(cases))])
    waves = bench.mix_set(rirs, speech, np.zeros((len(cases), 2), dtype=np.float32))
    assert waves.shape == (len(cases), 2, bench.CLIP) and np.abs(waves).max() == pytest.approx(0.9, rel=1e-4)
    gcc = bench.gcc_angles(waves)
    srp = bench.pra_angles(waves)["SRP"][0]
    for name, pred in (("GCC-PHAT", gcc), ("SRP-PHAT", srp)):
        error = np.abs(pred - truth)
        assert error.max() < 4.0 and error.mean() < 2.0, (name, pred, truth)


def test_cache_is_reused_only_for_the_same_parameters(tmp_path):
    listing = {"folder": "x", "kind": "folder", "files": 1, "sha256": "0" * 64}
    params = bench.set_params("pra", 2, listing)
    waves = np.zeros((2, 2, bench.CLIP), np.float32)
    bench.save_set(tmp_path / "pra", waves, np.ones((2, 2)), np.full(2, 0.3), {"params": params})
    cached = bench.load_cached(tmp_path / "pra", params)
    assert cached is not None and cached["waves"].shape == waves.shape and cached["truth"].dtype == np.float32
    assert bench.load_cached(tmp_path / "pra", bench.set_params("pra", 3, listing)) is None
    assert bench.load_cached(tmp_path / "pra", bench.set_params("fra", 2, listing)) is None
    assert bench.load_cached(tmp_path / "pra", bench.set_params("pra", 2, {**listing, "files": 2})) is None
    assert bench.load_cached(tmp_path / "missing", params) is None
    assert not list(tmp_path.glob("*.tmp-*"))


# ---------------------------------------------------------------------------------------------- the whole benchmark


@pytest.fixture
def tiny_case(tmp_path):
    """A folder of speech-like files of two characters (m and v) in two 'levels', and an untrained tiny model."""
    speech = tmp_path / "speech"
    seed = 0
    for level in ("one", "two"):
        (speech / level / "nl").mkdir(parents=True)
        for k in range(2):
            for character in ("m", "v"):
                seed += 1
                soundfile.write(speech / level / "nl" / f"{level[:2]}-{character}-{k}.flac", speechlike(1.4, seed), 16000)
    model = tmp_path / "tiny.safetensors"
    cfg = load_train_config(ROOT / "configs" / "tiny.yaml")
    torch.manual_seed(0)
    export_weights(SSLModel(cfg.model), cfg, model)
    return speech, model


@pytest.mark.slow
def test_benchmark_end_to_end_on_a_tiny_case(tiny_case, tmp_path, capsys):
    speech, model = tiny_case
    cache, out = tmp_path / "cache", tmp_path / "out.json"
    argv = ["--speech", str(speech), "--mixtures", "4", "--cache", str(cache), "--model", str(model),
            "--json", str(out)]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert "set fra" in printed and "set pra" in printed and "GCC-PHAT" in printed and "oracle floor" in printed
    report = json.loads(out.read_text())
    assert {"machine", "date", "command", "parameters", "notes", "sets"} <= set(report)
    assert set(report["sets"]) == {"fra", "pra"}
    for name, result in report["sets"].items():
        assert not result["cached"]
        assert {row["kind"] for row in result["methods"].values()} == METHOD_KINDS
        truth = np.array(result["truth_sorted_deg"])
        assert truth.shape == (4, 2) and (np.diff(truth, axis=1) >= 0).all()
        for label, row in result["methods"].items():
            angles = np.array(row["angles_deg"])
            assert angles.shape == (4, 2), label
            assert ((angles >= 0) & (angles <= 180)).all() and (np.diff(angles, axis=1) >= 0).all(), label
            m = row["metrics"]
            for key in ("binned_mae_deg_slot1", "binned_mae_deg_slot2", "mae_deg", "acc5", "acc10"):
                assert np.isfinite(m[key]), (label, key)
            assert 0 <= m["acc5"] <= m["acc10"] <= 1
            assert set(m["by_rt60"]) == {"0.1-0.3", "0.3-0.5", "0.5-0.7"}
            assert set(m["by_separation"]) == {"0-10", "10-20", "20-40", "40-180"}
            assert sum(b["count"] for b in m["by_rt60"].values()) == 4
            if row["kind"] != "chance":
                assert row["seconds"] > 0 and row["x_real_time"] > 0
        floor = result["oracle_floor"]
        assert 0 <= floor["binned_mae_deg_slot1"] < 1.0 and 0 <= floor["binned_mae_deg_slot2"] < 1.0
    pra_rooms = report["sets"]["pra"]["rooms"]
    assert pra_rooms["drawn"] == 4 + pra_rooms["rejected_by_inverse_sabine"]
    # The two sets share their speech and differ in their rooms.
    fra_meta = json.loads((cache / "fra" / "meta.json").read_text())
    pra_meta = json.loads((cache / "pra" / "meta.json").read_text())
    assert [s["speech_files"] for s in fra_meta["scenes"]] == [s["speech_files"] for s in pra_meta["scenes"]]
    assert all(set(s["talkers"]) == {"m", "v"} for s in fra_meta["scenes"])
    assert fra_meta["scenes"][0]["sources"] != pra_meta["scenes"][0]["sources"]
    waves = np.load(cache / "fra" / "waves.npy", allow_pickle=False)
    assert waves.shape == (4, 2, bench.CLIP) and waves.dtype == np.float32

    # A second run reuses the cache: the .npy files are not rewritten, and the numbers are the same.
    stamps = {p: p.stat().st_mtime_ns for p in cache.glob("*/*.npy")}
    assert len(stamps) == 6
    assert bench.main(argv) == 0
    capsys.readouterr()
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*/*.npy")} == stamps
    again = json.loads(out.read_text())
    for name in ("fra", "pra"):
        assert again["sets"][name]["cached"]
        assert again["sets"][name]["methods"]["GCC-PHAT (votes)"]["angles_deg"] == \
            report["sets"][name]["methods"]["GCC-PHAT (votes)"]["angles_deg"]
