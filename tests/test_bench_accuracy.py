"""benchmarks/bench_accuracy.py and its accuracy_* modules: talker pairing, pyroomacoustics' angle convention, peak
picking, the cache, an anechoic physics check, the noise, count and array sets (SNR, coherence, shares, onsets,
spacing, mismatch), the count metrics, and (slow) the whole benchmark on a tiny case."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import accuracy_methods as methods  # noqa: E402
import accuracy_sets as sets  # noqa: E402
import bench_accuracy as bench  # noqa: E402
from shards.geometry import source_geometry  # noqa: E402
from ssl_model import SSLModel  # noqa: E402
from ssl_model.baselines import lateral_to_tdoa  # noqa: E402
from ssl_model.metrics import count_confusion, detection_metrics, match_angles  # noqa: E402
from training.checkpoint import export_weights  # noqa: E402
from training.config import load_train_config  # noqa: E402

METHOD_KINDS = {"model", "gcc_phat", "pra_SRP", "pra_MUSIC", "pra_NormMUSIC", "duet", "chance"}
COUNT_KINDS = {"model", "gcc_phat_count", "duet", "pra_SRP", "pra_NormMUSIC"}


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
    assert sets.talker_of("airplane/nl/let-m-divna.ogg") == "m"
    assert sets.talker_of("wreck/nl/pot-v-vidim.ogg") == "v"
    assert sets.talker_of("electromagnet/nl/b-hurt-0.ogg") == "hurt"
    assert sets.talker_of("briefcase/nl/help1.ogg") == "briefcase"  # no character field: the level folder
    assert sets.talker_of("alice_01.wav") == "alice"  # at the top: the name prefix


def utterances(talkers: dict[str, list[float]]) -> list:
    return [sets.Utterance(f"lvl/{t}-{k}.wav", t, d, f"/nowhere/{t}-{k}.wav")
            for t, durations in talkers.items() for k, d in enumerate(durations)]


def test_pairs_are_two_characters_with_enough_speech_each():
    pool = utterances({"m": [0.7, 1.1, 2.5, 0.4], "v": [4.0, 0.9], "x": [1.0]})
    plans = sets.plan_mixtures(pool, 60, seed=1)
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
    assert sets.plan_mixtures(pool, 60, seed=1) == plans  # seeded
    assert sets.plan_mixtures(pool, 10, seed=1) == plans[:10]  # mixture i does not depend on N
    assert sets.plan_mixtures(pool, 10, seed=2) != plans[:10]
    lone = sets.plan_mixtures(utterances({"m": [1.0, 2.0]}), 5, seed=1)
    assert all(p["talkers"] == ["m", "m"] for p in lone)  # one character: it talks twice


def test_render_speech_concatenates_and_crops_to_3_s(tmp_path):
    for k in range(2):
        soundfile.write(tmp_path / f"a-m-{k}.wav", speechlike(1.3, k), 16000)
        soundfile.write(tmp_path / f"a-v-{k}.wav", speechlike(2.0, 10 + k, sr=22050), 22050)  # resampled
    pool = sets.index_speech(tmp_path)
    assert [u.talker for u in pool] == ["m", "m", "v", "v"] and pool[2].seconds == pytest.approx(2.0)
    plans = sets.plan_mixtures(pool, 3, seed=0)
    speech = sets.render_speech(pool, plans)
    assert speech.shape == (3, 2, sets.CLIP) and speech.dtype == np.float32
    assert (np.abs(speech).max(axis=-1) > 0.1).all()  # both sources of every mixture hold sound


def test_missing_speech_folder_is_a_one_line_error(tmp_path, capsys):
    assert bench.main(["--speech", str(tmp_path / "nope"), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "prepare_speech.sh" in err
    (tmp_path / "empty").mkdir()
    assert bench.main(["--speech", str(tmp_path / "empty"), "--cache", str(tmp_path / "cache")]) == 2
    assert "prepare_speech.sh" in capsys.readouterr().err
    assert bench.main(["--speech", str(tmp_path / "empty"), "--sets", "z"]) == 2
    assert "--sets" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # nothing built


# ---------------------------------------------------------------------------------------------- DOA conventions


@pytest.mark.parametrize("lateral", [20.0, 60.0, 100.0, 155.0])
def test_pra_azimuth_is_our_lateral_angle(lateral):
    # One white source: mic 1 hears it tdoa = -d cos(lateral) / c after mic 0 (ssl_model.baselines' convention).
    source = np.random.default_rng(0).standard_normal(16000)
    tdoa = float(lateral_to_tdoa(torch.tensor(lateral, dtype=torch.float64)))
    wave = np.stack((source, delayed(source, tdoa * sets.SR)))
    X = methods.stft(wave)
    assert X.shape == (2, methods.NFFT // 2 + 1, 1 + (16000 - methods.NFFT) // methods.HOP)
    for name in methods.PRA_METHODS:
        doa = methods.make_doa(name)
        doa.locate_sources(X, freq_range=list(methods.FREQ_RANGE))
        best = methods.GRID_DEG[methods.grid_peaks(doa.grid.values)[0]]
        assert abs(best - lateral) <= 1.5, (name, best, lateral)  # not 180 - lateral


def test_grid_peaks_on_the_half_circle():
    values = np.array([5.0, 1, 2, 1, 0, 3, 3, 1, 4])
    assert methods.grid_peaks(values).tolist() == [0, 8]  # both ends count, and 0 and 180 are not neighbours
    assert methods.grid_peaks(values, 3).tolist() == [0, 8, 6]  # a plateau counts once, at its right end
    assert methods.grid_peaks(np.arange(5.0)).tolist() == [4, 4]  # one maximum: repeated
    assert methods.grid_peaks(np.ones(4)).tolist() == [3, 3]


def test_pra_rir_is_cut_at_1_5_rt60_with_a_negligible_tail():
    room, mics = [6.0, 5.0, 3.0], np.array([[2.95, 2.0, 1.5], [3.05, 2.0, 1.5]])
    sources = np.array([[4.0, 3.0, 1.5], [1.5, 3.5, 2.0]])
    rir, info = sets.pra_rir(room, mics, sources, rt60=0.3)
    assert rir.shape == (2, 2, math.ceil(1.5 * 16000 * 0.3)) and rir.dtype == np.float32
    assert info["tail_db"] < -40 and info["max_order"] > 5
    with pytest.raises(ValueError):
        sets.pra_rir([10.0, 6.0, 4.0], mics, sources, rt60=0.1)  # Sabine cannot make a room that big that dry


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
        rirs.append(sets.pra_rir(room.tolist(), mics, np.array(pos), rt60=None)[0])
    geometry = source_geometry(torch.tensor(np.array(src)), torch.tensor(np.stack([mics] * len(cases))),
                               torch.tensor(np.stack([centre] * len(cases))))
    truth = np.sort(geometry["lateral_deg"].numpy(), axis=1)
    np.testing.assert_allclose(truth, np.array([c[:2] for c in cases]), atol=1.0)  # near field: within a degree
    speech = np.stack([np.stack([speechlike(3.0, 2 * i), speechlike(3.0, 2 * i + 1)]) for i in range(len(cases))])
    waves = sets.mix_set(rirs, speech, np.zeros((len(cases), 2), dtype=np.float32))
    assert waves.shape == (len(cases), 2, sets.CLIP) and np.abs(waves).max() == pytest.approx(0.9, rel=1e-4)
    gcc = methods.gcc_angles(waves)
    srp = np.array(methods.pra_angles(waves)["SRP"][0])
    for name, pred in (("GCC-PHAT", gcc), ("SRP-PHAT", srp)):
        error = np.abs(pred - truth)
        assert error.max() < 4.0 and error.mean() < 2.0, (name, pred, truth)


def test_cache_is_reused_only_for_the_same_parameters(tmp_path):
    listing = {"folder": "x", "kind": "folder", "files": 1, "sha256": "0" * 64}
    params = sets.set_params("pra", 2, listing)
    waves = np.zeros((2, 2, sets.CLIP), np.float32)
    sets.save_set(tmp_path / "pra", waves, np.ones((2, 2)), np.full(2, 0.3), {"params": params})
    cached = sets.load_cached(tmp_path / "pra", params)
    assert cached is not None and cached["waves"].shape == waves.shape and cached["truth"].dtype == np.float32
    assert sets.load_cached(tmp_path / "pra", sets.set_params("pra", 3, listing)) is None
    assert sets.load_cached(tmp_path / "pra", sets.set_params("fra", 2, listing)) is None
    assert sets.load_cached(tmp_path / "pra", sets.set_params("pra", 2, {**listing, "files": 2})) is None
    assert sets.load_cached(tmp_path / "missing", params) is None
    assert not list(tmp_path.glob("*.tmp-*"))


# ---------------------------------------------------------------------------------------------- set names


def test_set_groups_expand_to_leaf_sets():
    assert bench.parse_sets("a,b") == ["fra", "pra"]
    assert bench.parse_sets("noise") == bench.parse_sets("c") == ["diffuse0", "diffuse10", "diffuse20", "sensor10"]
    assert bench.parse_sets("e,d,diffuse10,b,pra") == ["spacing5", "spacing8", "spacing12", "spacing18", "mismatch", "pra8k", "count", "count20",
                                                        "diffuse10", "pra"]
    assert bench.parse_sets("count") == ["count"]
    with pytest.raises(sets.BenchError, match="--sets"):
        bench.parse_sets("f")


# ---------------------------------------------------------------------------------------------- noise sets


def coherence(noise: np.ndarray, nperseg: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """[2, T] -> (frequencies [F], real part of the complex coherence [F]) by Welch averaging."""
    freq, s01 = scipy.signal.csd(noise[0], noise[1], fs=16000, nperseg=nperseg)
    _, s00 = scipy.signal.welch(noise[0], fs=16000, nperseg=nperseg)
    _, s11 = scipy.signal.welch(noise[1], fs=16000, nperseg=nperseg)
    return freq, (s01 / np.sqrt(s00 * s11)).real


@pytest.mark.parametrize("spacing", [0.1, 0.16])
def test_diffuse_noise_coherence_is_the_sinc_of_a_spherical_field(spacing):
    """Cook et al. (1955): a spherically isotropic field's coherence between two points d apart is
    sin(2 pi f d / c) / (2 pi f d / c)."""
    noise = sets.diffuse_noise(10 * 16000, sets.pair_x(spacing), np.random.default_rng(3))
    np.testing.assert_allclose(np.mean(noise ** 2, axis=-1), 1.0)
    freq, measured = coherence(noise)
    band = (freq >= 100) & (freq <= 6000)
    expected = np.sinc(2 * freq * spacing / 340.0)  # numpy's sinc(x) = sin(pi x) / (pi x)
    error = measured[band] - expected[band]
    assert np.sqrt(np.mean(error ** 2)) < 0.05 and np.abs(error).max() < 0.15
    wrong = np.sinc(2 * freq * (spacing + 0.05) / 340.0)  # the test tells spacings 5 cm apart
    assert np.sqrt(np.mean((measured[band] - wrong[band]) ** 2)) > 0.1
    assert measured[(freq >= 100) & (freq <= 300)].min() > 0.8  # coherent at low frequencies


def snr_of(noisy: np.ndarray, clean: np.ndarray) -> float:
    """noisy = g (clean + n) with n independent of clean -> 10 log10(|g clean|^2 / |g n|^2), g by projection."""
    g = float(np.sum(noisy * clean) / np.sum(clean * clean))
    return 10 * math.log10(np.sum((g * clean) ** 2) / np.sum((noisy - g * clean) ** 2))


@pytest.mark.parametrize("name", ["diffuse0", "diffuse10", "diffuse20", "sensor10"])
def test_noise_sets_have_the_snr_asked(name):
    kind, snr = sets.NOISE_SETS[name]
    clean = np.stack([np.stack((speechlike(3.0, 2 * i), speechlike(3.0, 2 * i + 1))) for i in range(3)])
    clean = clean.astype(np.float32)
    noisy = sets.noisy_waves(clean, kind, snr, seed=5)
    assert noisy.shape == clean.shape and noisy.dtype == np.float32
    np.testing.assert_allclose(np.abs(noisy).max(axis=(1, 2)), 0.9, rtol=1e-5)  # peak-normalized like training
    for i in range(3):
        assert snr_of(noisy[i].astype(np.float64), clean[i].astype(np.float64)) == pytest.approx(snr, abs=0.3)
    residual = noisy[0] - float(np.sum(noisy[0] * clean[0]) / np.sum(clean[0] ** 2)) * clean[0]
    low = coherence(residual.astype(np.float64), nperseg=256)[1][2:10].mean()  # 125-560 Hz
    assert low > 0.7 if kind == "diffuse" else abs(low) < 0.2  # diffuse noise is coherent low down, sensor noise not
    np.testing.assert_array_equal(sets.noisy_waves(clean, kind, snr, seed=5), noisy)  # seeded


# ---------------------------------------------------------------------------------------------- array sets


def test_mismatch_scales_and_delays_mic_1():
    rng = np.random.default_rng(0)
    source = np.convolve(rng.standard_normal(16000), np.hanning(5), mode="same")  # band-limited
    clean = np.stack((source, source))[None].repeat(4, axis=0)
    draws = sets.mismatch_draws(4, seed=1)
    assert set(np.abs(draws[:, 0])) == {2.0} and set(np.abs(draws[:, 1])) == {0.3}
    assert set(np.sign(sets.mismatch_draws(64, seed=1)[:, 0])) == {-1.0, 1.0}
    out = sets.mismatched_waves(clean, draws).astype(np.float64)
    for wave, (gain_db, latency) in zip(out, draws):
        core = slice(200, -200)  # away from the ends of the zero-padded delay
        assert 20 * math.log10(np.std(wave[1, core]) / np.std(wave[0, core])) == pytest.approx(gain_db, abs=0.05)
        spec = np.fft.rfft(wave[1]) * np.conj(np.fft.rfft(wave[0]))
        freq = np.fft.rfftfreq(wave.shape[-1])
        band = (freq > 0.005) & (freq < 0.2)
        slope = np.polyfit(2 * np.pi * freq[band], np.unwrap(np.angle(spec[band])), 1)[0]
        assert -slope == pytest.approx(latency, abs=0.02)  # mic 1 hears everything `latency` samples later


def test_spacing_sets_draw_the_prior_with_their_pair():
    assert sets.pair_config(0.1) == sets.SimulateConfig()
    cfg = sets.pair_config(0.12)
    assert cfg.mic_positions == [(-0.06, 0.0, 0.0), (0.06, 0.0, 0.0)] and cfg.num_sources == 2
    assert sets.pair_config(sources=3).num_sources == 3
    assert sets.set_mic_spacing("spacing8") == 0.08 and sets.set_mic_spacing("mismatch") == 0.1
    listing = {"folder": "x", "kind": "folder", "files": 1, "sha256": "0" * 64}
    params = {name: sets.set_params(name, 4, listing) for name in sets.SETS}
    assert len({json.dumps(p, sort_keys=True) for p in params.values()}) == len(sets.SETS)  # every set its own cache
    assert params["spacing12"]["mic_spacing"] == 0.12
    geometry = sets.sample_scenes(cfg, 8, torch.Generator().manual_seed(0))
    np.testing.assert_allclose((geometry.mic_pos[:, 1] - geometry.mic_pos[:, 0]).numpy(), [[0.12, 0, 0]] * 8)


def test_the_8khz_set_is_the_pra_mixtures_band_limited_and_stored_at_8khz(tmp_path):
    t = np.arange(sets.CLIP) / sets.SR
    tones = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 6000 * t)  # one tone a telephone keeps, one it drops
    base = {"waves": np.stack((tones, tones))[None].astype(np.float32), "truth": np.array([[60.0, 120.0]]),
            "rt60": np.array([0.3]), "meta": {"rooms": {}, "scenes": [{}], "talkers": ["a"], "build_seconds": {}}}
    params = sets.set_params("pra8k", 1, {"folder": "x", "kind": "folder", "files": 1, "sha256": "0" * 64})
    built = sets.build_derived_set("pra8k", tmp_path, base, params)
    assert built["waves"].shape == (1, 2, sets.CLIP // 2) and built["meta"]["sr"] == 8000
    assert sets.load_cached(tmp_path / "pra8k", params) is not None  # cached at its own length
    back = sets.at_bench_rate(built["waves"], 8000)[0, 0]
    spectrum = np.abs(np.fft.rfft(back))
    freq = np.fft.rfftfreq(back.shape[-1], 1 / sets.SR)
    assert spectrum[np.argmin(np.abs(freq - 1000))] > 1000 * spectrum[np.argmin(np.abs(freq - 6000))]
    assert sets.at_bench_rate(base["waves"], sets.SR) is base["waves"]


def test_the_separated_count_set_draws_sources_at_least_20_degrees_apart():
    cfg = sets.replace(sets.pair_config(sources=3), min_source_separation_deg=sets.COUNT_SETS["count20"])
    scenes = sets.sample_scenes(cfg, 64, torch.Generator().manual_seed(0))
    lateral = sets.source_geometry(scenes.src_pos, scenes.mic_pos, scenes.array_pos, cfg.sound_speed)["lateral_deg"]
    gaps = torch.sort(lateral, dim=-1).values.diff(dim=-1)
    assert gaps.min() >= 20.0 - 1e-3
    assert sets.set_params("count", 4, {})["set"] == "count" and "min_source_separation_deg" not in sets.set_params(
        "count", 4, {})  # the original count set keeps its cache key
    assert sets.set_params("count20", 4, {})["min_source_separation_deg"] == 20.0
    assert sets.truth_width("count20") == sets.COUNT_MAX


# ---------------------------------------------------------------------------------------------- count set


def test_count_plan_has_equal_shares_and_talkers_that_come_and_go():
    counts, activity = sets.count_plan(400, seed=2)
    assert np.bincount(counts).tolist() == [100, 100, 100, 100]
    for k, spans in zip(counts, activity):
        assert np.isfinite(spans[:k]).all() and np.isnan(spans[k:]).all()
        onset, offset = spans[:k, 0], spans[:k, 1]
        assert (onset >= 0).all() and (offset <= 3.0).all() and (offset - onset >= 0.5).all()
    spans = activity[counts > 0][:, 0]
    assert spans[:, 0].max() > 1.0 and spans[:, 1].min() < 2.0  # onsets and offsets fall inside the clip
    np.testing.assert_array_equal(sets.count_plan(400, seed=2)[1], activity)
    np.testing.assert_array_equal(sets.count_plan(8, seed=2)[1], activity[:8])  # clip i does not depend on N


def test_gated_speech_is_silent_outside_each_talkers_span():
    dry = np.ones((1, 3, sets.CLIP), dtype=np.float32)
    activity = np.array([[[0.5, 1.5], [2.0, 3.0], [np.nan, np.nan]]])
    gated = sets.gated_speech(dry, activity)
    t = np.arange(sets.CLIP) / sets.SR
    ramp = sets.COUNT_RAMP_S / 2
    for s, (on, off) in enumerate(activity[0, :2]):
        assert (gated[0, s, (t < on - ramp) | (t > off + ramp)] == 0).all()
        assert (gated[0, s, (t > on + ramp) & (t < off - ramp)] == 1).all()
    assert (gated[0, 2] == 0).all()


def test_count_waves_are_the_active_talkers_over_a_faint_floor():
    room, centre = [8.0, 6.0, 3.0], np.array([4.0, 3.0, 1.4])
    mics = centre + np.array([[-0.05, 0.0, 0.0], [0.05, 0.0, 0.0]])
    sources = centre + np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [-2.0, 0.0, 0.0]])
    rir = sets.pra_rir(room, mics, sources, rt60=None)[0]
    dry = np.stack([np.stack([speechlike(3.0, 3 * i + s) for s in range(3)]) for i in range(2)])
    activity = np.full((2, 3, 2), np.nan)
    activity[1, 0] = 1.0, 2.0  # clip 0: nobody; clip 1: talker 0 from 1 to 2 s
    waves = sets.count_waves([rir, rir], dry, np.zeros((2, 3), np.float32), activity, seed=0)
    assert waves.shape == (2, 2, sets.CLIP)
    t = np.arange(sets.CLIP) / sets.SR
    inside, outside = (t > 1.1) & (t < 1.9), t < 0.9
    level = 10 * np.log10(np.mean(waves[1][:, inside] ** 2) / np.mean(waves[1][:, outside] ** 2))
    assert 20 < level < 40  # the floor is 30 dB below a talker speaking throughout (speech-like: about half on)
    freq, measured = coherence(waves[0].astype(np.float64), nperseg=256)
    assert measured[(freq > 100) & (freq < 400)].min() > 0.7  # clip 0 is the diffuse floor alone


# ---------------------------------------------------------------------------------------------- count metrics


def test_detection_metrics_on_hand_made_clips():
    truth = [[], [40.0], [30.0, 120.0], [20.0, 90.0, 160.0], []]
    pred = [[], [44.0], [118.0, 60.0], [25.0, 150.0], [90.0]]
    m = detection_metrics(pred, truth, threshold_deg=10.0)
    # clip 1: hit (4); clip 2: 118 -> 120 hit, 60 -> 30 miss (30 > 10); clip 3: 25 -> 20 hit, 150 -> 160 hit, 90 missed;
    # clip 4: a detection with nobody there.
    assert (m["tp"], m["fp"], m["fn"]) == (4, 2, 2)
    assert m["f1"] == pytest.approx(8 / 12) and m["precision"] == pytest.approx(4 / 6) and m["recall"] == pytest.approx(4 / 6)
    assert m["count_accuracy"] == pytest.approx(3 / 5)
    assert m["confusion"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]]
    assert m["matched_pairs"] == 5 and m["matched_mae_deg"] == pytest.approx((4 + 2 + 30 + 5 + 10) / 5)
    nobody = detection_metrics([[], []], [[], []])
    assert nobody["count_accuracy"] == 1.0 and math.isnan(nobody["f1"]) and nobody["confusion"][0][0] == 2
    assert match_angles([100.0, 10.0], [12.0, 95.0]) == [(0, 1), (1, 0)]  # the assignment, not the nearest first
    assert match_angles([50.0, 52.0], [51.0]) in ([(0, 0)], [(1, 0)])
    assert count_confusion([3, 1], [5, 0]).tolist() == [[0] * 4, [1, 0, 0, 0], [0] * 4, [0, 0, 0, 1]]
    with pytest.raises(ValueError, match="clips"):
        detection_metrics([[]], [[], []])


def test_count_scores_break_down_by_true_count():
    truth = [[], [40.0], [30.0, 120.0], [20.0, 90.0, 160.0]]
    found = [{"angles_deg": a, "count": len(a)} for a in ([], [41.0], [29.0, 60.0], [21.0, 89.0, 161.0])]
    scores = methods.detection_scores(found, truth)
    assert set(scores["by_count"]) == {"0", "1", "2", "3"}
    assert scores["by_count"]["3"]["f1"] == 1.0 and scores["by_count"]["2"]["f1"] == pytest.approx(0.5)
    assert math.isnan(scores["by_count"]["0"]["f1"]) and scores["by_count"]["0"]["count_accuracy"] == 1.0
    assert methods.count_truth(np.array([[10.0, np.nan, 5.0], [np.nan] * 3])) == [[5.0, 10.0], []]
    assert methods.two_slots(found).tolist() == [[90.0, 90.0], [41.0, 41.0], [29.0, 60.0], [21.0, 89.0]]


def test_close_talkers_merge_in_chains_into_their_mean():
    assert methods.merge_close([], 10.0) == []
    assert methods.merge_close([10.0, 15.0, 40.0], 10.0) == [12.5, 40.0]
    assert methods.merge_close([10.0, 19.0, 28.0], 10.0) == [19.0]  # 10-19 and 19-28 chain, though 10-28 is 18 apart
    assert methods.merge_close([10.0, 20.0], 10.0) == [10.0, 20.0]  # exactly the resolution apart: resolved
    assert methods.merge_close([10.0, 10.5, 11.0], 0.0) == [10.0, 10.5, 11.0]


def test_resolution_ceiling_is_the_share_of_clips_with_every_talker_resolvable():
    truth = [[], [40.0], [30.0, 36.0], [30.0, 120.0], [20.0, 32.0, 160.0], [20.0, 90.0, 160.0]]
    ceilings = methods.resolution_ceilings(truth, resolutions=(5.0, 15.0))
    assert ceilings["5"]["count_accuracy"] == 1.0 and ceilings["5"]["f1"] == 1.0
    # at 15 degrees two clips lose a talker: 6 and 12 degrees apart
    assert ceilings["15"]["count_accuracy"] == pytest.approx(4 / 6)
    assert ceilings["15"]["confusion"][2] == [0, 1, 1, 0] and ceilings["15"]["confusion"][3] == [0, 0, 1, 1]
    # the merged 33 and 26 each match one of their talkers within 10 degrees; the other is missed (2 false negatives)
    tp = 1 + 1 + 2 + 2 + 3
    assert ceilings["15"]["f1"] == pytest.approx(2 * tp / (2 * tp + 0 + 2))


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
            "--json", str(out), "--sets", "a,b"]
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
    assert waves.shape == (4, 2, sets.CLIP) and waves.dtype == np.float32

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


@pytest.mark.slow
def test_noise_count_and_array_sets_end_to_end_on_a_tiny_case(tiny_case, tmp_path, capsys):
    speech, model = tiny_case
    cache, out = tmp_path / "cache", tmp_path / "out.json"
    argv = ["--speech", str(speech), "--mixtures", "4", "--cache", str(cache), "--model", str(model),
            "--json", str(out), "--sets", "c,d,e"]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert "set count" in printed and "confusion" in printed and "set diffuse0" in printed
    report = json.loads(out.read_text())
    leaves = ["diffuse0", "diffuse10", "diffuse20", "sensor10", "count", "count20", "spacing5", "spacing8", "spacing12",
              "spacing18", "mismatch", "pra8k"]
    assert list(report["sets"]) == leaves
    assert (cache / "pra" / "waves.npy").is_file()  # the noise and mismatch sets are built from the pra set
    pra_truth = np.load(cache / "pra" / "truth.npy", allow_pickle=False)
    for name in ("diffuse0", "sensor10", "mismatch", "pra8k"):
        np.testing.assert_array_equal(np.load(cache / name / "truth.npy", allow_pickle=False), pra_truth)
    assert report["sets"]["spacing12"]["mic_spacing"] == 0.12 and report["sets"]["spacing5"]["mic_spacing"] == 0.05
    assert np.load(cache / "pra8k" / "waves.npy", allow_pickle=False).shape == (4, 2, sets.CLIP // 2)
    separated = np.sort(np.load(cache / "count20" / "truth.npy", allow_pickle=False), axis=1)  # NaN (silent) last
    assert np.nanmin(np.diff(separated, axis=1)) >= 20.0 - 1e-3
    for name in leaves:
        if name not in sets.COUNT_SETS:
            assert {row["kind"] for row in report["sets"][name]["methods"].values()} == METHOD_KINDS
    count = report["sets"]["count"]
    assert count["counts"] == [0, 1, 2, 3] and {row["kind"] for row in count["methods"].values()} == COUNT_KINDS
    assert [len(t) for t in count["truth_deg"]] == [0, 1, 2, 3]
    for label, row in count["methods"].items():
        m = row["metrics"]
        assert np.array(m["confusion"]).sum() == 4 and 0 <= m["count_accuracy"] <= 1, label
        assert row["seconds"] > 0 and row["x_real_time"] > 0
    assert count["methods"]["model tiny.safetensors"]["metrics"]["confusion"] == [[0, 0, 1, 0], [0, 0, 1, 0],
                                                                                   [0, 0, 1, 0], [0, 0, 1, 0]]
    given = count["methods"]["SRP-PHAT (pra), given the true count"]["metrics"]
    assert given["count_accuracy"] == 1.0
    meta = json.loads((cache / "count" / "meta.json").read_text())
    assert [len(s["active_s"]) for s in meta["scenes"]] == [0, 1, 2, 3]


def test_a_dev_split_draws_every_set_from_other_seeds():
    test, dev = sets.split_seeds("test"), sets.split_seeds("dev")
    assert test == sets.SEEDS  # the benchmark's own sets (and their caches) keep their seeds
    assert set(test) == set(dev) and all(test[k] != dev[k] for k in test)
    assert sets.split_seeds("dev") == dev  # reproducible


def test_calibration_scores_count_accuracy_f1_and_single_talkers_and_covers_the_defaults():
    import calibrate_decoding as calib
    from ssl_model.talkers import Decoding
    truth = [[], [40.0], [40.0, 120.0], [10.0, 90.0, 170.0]]
    found = [{"angles_deg": []}, {"angles_deg": [42.0]}, {"angles_deg": [41.0, 60.0, 121.0]},
             {"angles_deg": [12.0, 88.0]}]
    got = calib.scored(found, truth)
    assert got["count_accuracy"] == 0.5  # silence and the single talker right; 3 for 2 and 2 for 3 wrong
    tp, fp, fn = 5, 1, 1  # every detection within 10 degrees of a talker but 60; the talker at 170 missed
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert got["one_named_one"] == 1.0  # the one single-talker clip named one
    assert got["score"] == pytest.approx((0.5 + got["f1"] + 1.0) / 3)
    doubled = calib.scored([found[0], {"angles_deg": [42.0, 100.0]}] + found[2:], truth)
    assert doubled["one_named_one"] == 0.0 and doubled["score"] < got["score"]
    assert Decoding() in calib.settings() and len(set(calib.settings())) == len(calib.settings())
    finer = calib.settings((0.5,), (0.5,), (0.3,))  # --min-share: only the given shares, every other axis whole
    assert {d.min_share for d in finer} == {0.3} and len(finer) == len(set(finer)) == (
        len(calib.MERGE_DEG) * len(calib.ONE_PER_WINDOW) * len(calib.REACH_LEVEL) * len(calib.TRACK_SUPPORT)
        * len(calib.MIRROR))
    assert {d.track_support for d in calib.settings((0.5,), (0.5,), (0.3,), (False,))} == {False}  # no frame head
    assert {d.mirror for d in calib.settings((0.5,), (0.5,), (0.3,), (False,), (True,))} == {True}  # --mirror on
    assert calib.switches("off,on", "--mirror") == (False, True) and calib.switches("on", "--mirror") == (True,)
    with pytest.raises(calib.BenchError, match="--mirror"):
        calib.switches("maybe", "--mirror")
