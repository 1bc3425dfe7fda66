"""benchmarks/real_array.py (the real-array set `rsmnmf`) on a small fake checkout of polimi-ispl/rs-mnmf written
here: the direct-path truth (known fractional delays, the sign of the lateral angle), the pairs, the clip plans,
the set's cache, and the miss / false-alarm scores (accuracy_methods.rate_scores). No network, no real data."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import soundfile
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import accuracy_methods as methods  # noqa: E402
import bench_accuracy as bench  # noqa: E402
import real_array as ra  # noqa: E402
from accuracy_sets import SR, BenchError  # noqa: E402
from shards.array import SOUND_SPEED  # noqa: E402
from ssl_model.baselines import gcc_phat  # noqa: E402

FAKE_SAMPLES = 12000  # 0.25 s at 48 kHz
# (distance from the array line, position along it from channel 0) in metres: near the array, as in the office,
# and two far beyond its ends (the sign check)
POSITIONS = [(0.3, 0.1), (0.3, 0.45), (0.3, 0.8), (0.6, 0.1), (0.6, 0.45), (0.6, 0.8), (0.9, 0.1), (0.05, 6.0),
             (0.05, -5.0)]


def pulse(length: int, at: float, cutoff: float = 0.45, half: int = 48) -> np.ndarray:
    """[length] a band-limited impulse (windowed sinc, cutoff in cycles per sample) centred at the fractional
    sample `at`."""
    n = np.arange(length, dtype=np.float64)
    x = n - at
    window = np.where(np.abs(x) <= half, 0.5 + 0.5 * np.cos(np.pi * x / half), 0.0)
    return 2 * cutoff * np.sinc(2 * cutoff * x) * window


def arrival_samples(position: tuple[float, float], offsets: np.ndarray | None = None) -> np.ndarray:
    """a source position -> its direct path's arrival at each of the 32 mics, in samples at 48 kHz (c = 340)."""
    y = np.arange(ra.ARRAY_CHANNELS) * ra.ARRAY_PITCH_M
    t = np.hypot(position[0], y - position[1]) / SOUND_SPEED * ra.ARRAY_SR + 60.0
    return t if offsets is None else t + offsets


def fake_checkout(root: Path, offsets: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Write data/sources/rir_source_{1..9}.wav (32 channels, 48 kHz: a coloured direct path at the known fractional
    arrival, a reflection 3-4 ms later, a faint noise floor) and source_location.mat -> {'arrivals': [9, 32]}."""
    folder = root / "data" / "sources"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrivals = np.array([arrival_samples(p, offsets) for p in POSITIONS])
    colour = np.array([1.0, -0.45, 0.2, -0.05])  # a loudspeaker's short response, the same at every mic
    for s, row in enumerate(arrivals):
        rir = np.zeros((FAKE_SAMPLES, ra.ARRAY_CHANNELS))
        for c, t in enumerate(row):
            direct = np.convolve(pulse(FAKE_SAMPLES, t), colour)[:FAKE_SAMPLES]
            reflection = np.convolve(pulse(FAKE_SAMPLES, t + 150 + 3 * c), colour)[:FAKE_SAMPLES]
            rir[:, c] = 0.5 * direct + 0.15 * reflection + 1e-4 * rng.standard_normal(FAKE_SAMPLES)
        soundfile.write(folder / f"rir_source_{s + 1}.wav", rir, ra.ARRAY_SR, subtype="FLOAT")
    scipy.io.savemat(folder / "source_location.mat", {"sourceLocation": np.array(POSITIONS)})
    return {"arrivals": arrivals}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("rs-mnmf")
    return root, fake_checkout(root)


# ---------------------------------------------------------------------------------------------- truth


def test_measured_delays_and_angles_match_the_synthesized_ones(checkout):
    root, known = checkout
    rirs = ra.read_array(root)
    assert rirs.shape == (9, 32, FAKE_SAMPLES)
    pairs = ra.array_pairs()
    table = ra.pair_truth(rirs, pairs)
    true_delay = np.array([[known["arrivals"][s, b] - known["arrivals"][s, a] for s in range(9)] for a, b in pairs])
    measured = table["tdoa_s"] * ra.ARRAY_SR
    assert np.abs(measured - true_delay).max() < 0.03  # samples at 48 kHz
    spacing = np.array([(b - a) * ra.ARRAY_PITCH_M for a, b in pairs])
    true_angle = np.degrees(np.arccos(np.clip(-SOUND_SPEED * true_delay / ra.ARRAY_SR / spacing[:, None], -1, 1)))
    near = slice(0, 7)  # the sources beside the array: no clipping at endfire
    assert np.abs(table["lateral_deg"][:, near] - true_angle[:, near]).max() < 0.5
    assert np.allclose(table["spacing_m"], spacing)


def test_zero_degrees_is_towards_mic_1_the_higher_channel(checkout):
    root, _ = checkout
    table = ra.pair_truth(ra.read_array(root), [(4, 8), (20, 26)])
    beyond_high, beyond_low = table["lateral_deg"][:, 7], table["lateral_deg"][:, 8]
    assert (beyond_high < 5).all() and (beyond_low > 175).all()
    assert (table["tdoa_s"][:, 7] < 0).all()  # mic 1 hears it first: t1 - t0 < 0
    assert table["lateral_deg"][0, 0] > 90  # the source at 0.1 m along the line is behind channel 4 (0.12 m)


def test_truth_is_what_the_project_gcc_phat_hears_on_the_rendered_pair(checkout):
    """The sign and scale against the project's convention: speech-like noise through a pair's RIRs (resampled to
    16 kHz, as the set does) is localized by ssl_model.baselines.gcc_phat at the truth's angle."""
    root, _ = checkout
    rirs = ra.read_array(root)
    rirs16 = ra.rirs_at_bench_rate(rirs)
    pairs = [(2, 8), (14, 18)]
    table = ra.pair_truth(rirs, pairs)
    rng = np.random.default_rng(3)
    for p, (a, b) in enumerate(pairs):
        for source in (0, 2, 4, 6):
            plan = {"channels": [a, b], "sources": [source]}
            rir = ra.clip_rirs(rirs16, [plan], slots=1)[0]  # [2, 1, L]
            dry = rng.standard_normal(SR)
            wave = np.stack([np.convolve(dry, rir[m, 0])[:SR] for m in range(2)])
            found = gcc_phat(torch.from_numpy(wave[None]), sr=SR, mic_spacing=(b - a) * ra.ARRAY_PITCH_M,
                             num_sources=1)
            assert abs(float(found[0, 0]) - table["lateral_deg"][p, source]) < 3.0


def test_wavefront_fit_finds_the_geometry_and_a_latency_per_channel(tmp_path):
    offsets = np.where(np.arange(ra.ARRAY_CHANNELS) % 2 == 1, -1.0, 0.0)  # odd channels 1 sample early
    fake_checkout(tmp_path, offsets)
    rirs = ra.read_array(tmp_path)[:7]  # the sources beside the array
    fit = ra.wavefront_fit(rirs, sound_speed=SOUND_SPEED)
    assert fit["rms_samples"] > 0.3  # a line of point-like mics cannot explain the offsets
    assert fit["rms_samples_with_offsets"] < 0.05
    found = np.array(fit["channel_offsets_samples"])
    assert np.abs((found - found[fit["reference_channel"]]) - (offsets - offsets[fit["reference_channel"]])).max() < 0.1
    assert np.abs(np.array(fit["positions_m"]) - np.array(POSITIONS[:7])).max() < 0.03


# ---------------------------------------------------------------------------------------------- pairs and plans


def test_pairs_cover_every_step_along_the_array():
    pairs = ra.array_pairs()
    steps = sorted({b - a for a, b in pairs})
    assert steps == [2, 3, 4, 5, 6]
    assert all(0 <= a < b < ra.ARRAY_CHANNELS and a % ra.POSITION_STEP == 0 for a, b in pairs)
    for k in steps:
        starts = [a for a, b in pairs if b - a == k]
        assert len(starts) >= 6 and max(starts) + k >= 24  # several positions, out to the far end


def test_clip_plans_have_equal_counts_resolvable_distinct_sources_and_do_not_depend_on_n():
    rng = np.random.default_rng(1)
    pairs = ra.array_pairs()
    spacing = np.array([(b - a) * ra.ARRAY_PITCH_M for a, b in pairs])
    tdoa = -np.cos(np.radians(rng.uniform(0, 180, (len(pairs), 9)))) * spacing[:, None] / SOUND_SPEED
    plans = ra.plan_clips(tdoa, pairs, 60, seed=5)
    assert [p["count"] for p in plans] == [1, 2, 3] * 20
    assert [round(p["spacing_m"] * 100) for p in plans[::3]] == [6, 9, 12, 15, 18] * 4
    for plan in plans:
        a, b = pairs[plan["pair"]]
        assert plan["channels"] == [a, b] and math.isclose((b - a) * ra.ARRAY_PITCH_M, plan["spacing_m"])
        assert len(set(plan["sources"])) == plan["count"]
        delays = np.sort(tdoa[plan["pair"], plan["sources"]] * SR)
        assert (np.diff(delays) >= ra.MIN_DELAY_SAMPLES).all()
    assert len({tuple(p["sources"]) for p in plans}) > 20  # drawn, not fixed
    assert ra.plan_clips(tdoa, pairs, 12, seed=5) == plans[:12]
    assert ra.plan_clips(tdoa, pairs, 12, seed=6) != plans[:12]
    with pytest.raises(BenchError, match="1 sample apart"):
        ra.plan_clips(np.zeros_like(tdoa), pairs, 2, seed=5)  # every source at one delay: no two resolvable


def speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t), 0, None) ** 2
    return (0.3 * envelope * rng.standard_normal(len(t))).astype(np.float32)


def test_the_set_is_built_truthful_and_cached(tmp_path, checkout):
    root, _ = checkout
    speech = tmp_path / "speech"
    speech.mkdir()
    for k, talker in enumerate(("m", "v", "x", "z")):
        soundfile.write(speech / f"lvl-{talker}-{k}.wav", speechlike(3.5, k), SR)
    cache = tmp_path / "cache"
    data = ra.load_real_set(root, 6, cache, speech)
    assert not data["cached"]
    assert data["waves"].shape == (6, 2, 3 * SR) and np.isfinite(data["waves"]).all()
    counts = np.isfinite(data["truth"]).sum(axis=1)
    assert counts.tolist() == [1, 2, 3, 1, 2, 3]
    assert np.allclose(data["spacing"], [0.06] * 3 + [0.09] * 3)
    clips = data["meta"]["clips"]
    for i, clip in enumerate(clips):
        assert np.allclose(clip["lateral_deg"], data["truth"][i, :clip["count"]], atol=1e-3)
        assert np.allclose(clip["lateral_deg"], ra.delay_to_lateral(np.array(clip["tdoa_s"]), clip["spacing_m"]),
                           atol=1e-3)
    for name in ra.ARRAYS:
        np.load(cache / "rsmnmf" / f"{name}.npy", allow_pickle=False)
    meta = json.loads((cache / "rsmnmf" / "meta.json").read_text())
    assert meta["params"]["checkout"]["data_sha256"] and meta["rooms"]["source_positions_m"][0] == [0.3, 0.1]
    again = ra.load_real_set(root, 6, cache, speech)
    assert again["cached"] and np.array_equal(again["waves"], data["waves"])


def test_a_folder_that_is_not_the_checkout_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(BenchError, match="rir_source_1.wav"):
        ra.check_checkout(tmp_path)
    folder = tmp_path / "data" / "sources"
    folder.mkdir(parents=True)
    for s in range(1, 10):
        soundfile.write(folder / f"rir_source_{s}.wav", np.zeros((100, 2)), ra.ARRAY_SR)
    with pytest.raises(BenchError, match="expected 32 channels"):
        ra.read_array(ra.check_checkout(tmp_path))
    speech = tmp_path / "speech"
    speech.mkdir()
    soundfile.write(speech / "a-m-0.wav", speechlike(1.0, 0), SR)
    assert bench.main(["--speech", str(speech), "--sets", "real", "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--real-array" in err
    assert bench.main(["--speech", str(speech), "--sets", "rsmnmf", "--real-array", str(tmp_path / "no"),
                       "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a checkout" in err
    assert bench.parse_sets("real,pra") == ["rsmnmf", "pra"]


# ---------------------------------------------------------------------------------------------- scores


def test_miss_and_false_alarm_rates_on_hand_made_detections():
    truth = [[30.0], [40.0, 100.0], [20.0, 60.0, 120.0]]
    pred = [[31.0, 90.0], [45.0], [20.0, 61.0, 119.0]]
    m = methods.rate_scores(pred, truth)
    assert (m["talkers"], m["detections"], m["hits"]) == (6, 6, 5)
    assert math.isclose(m["mdr"], 1 / 6) and math.isclose(m["far"], 1 / 6) and math.isclose(m["false_share"], 1 / 6)
    assert math.isclose(m["count_accuracy"], 1 / 3) and math.isclose(m["f1"], 10 / 12)
    assert math.isclose(m["matched_mae_deg"], (1 + 5 + 0 + 1 + 1) / 5)
    assert m["confusion"][1] == [0, 0, 1, 0] and m["confusion"][2] == [0, 1, 0, 0]
    # FAR is per true talker (SRP-DNN's getMetric), so it can pass 100%; false_share is per detection
    m = methods.rate_scores([[10.0, 50.0, 130.0]], [[90.0]])
    assert m["mdr"] == 1.0 and m["far"] == 3.0 and m["false_share"] == 1.0 and math.isnan(m["matched_mae_deg"])
    # the matching is gated before the assignment: the plain min-sum matching pairs 10-45 and 50-100 (no hit)
    assert methods.rate_scores([[10.0, 50.0]], [[45.0, 100.0]])["hits"] == 1


def test_real_scores_break_down_by_count_and_spacing_and_each_call_gets_its_spacing():
    truth = [[30.0], [40.0, 100.0], [50.0]]
    found = [{"angles_deg": [30.0], "count": 1}, {"angles_deg": [40.0], "count": 1},
             {"angles_deg": [50.0, 52.0], "count": 2}]
    m = methods.real_scores(found, truth, np.array([0.06, 0.06, 0.12]))
    assert set(m["by_count"]) == {"1", "2"} and set(m["by_spacing"]) == {"6", "12"}
    assert m["by_count"]["1"]["clips"] == 2 and m["by_count"]["1"]["far"] == 0.5
    assert m["by_spacing"]["6"]["mdr"] == 1 / 3 and m["by_spacing"]["12"]["false_share"] == 0.5
    assert m["one_talker_windows"] is None  # a method without windows (a baseline)
    calls = []

    def run(idx, key):
        calls.append((key, idx.tolist()))
        return [{"angles_deg": [float(i)], "count": 1} for i in idx]

    out = methods.per_group([0.12, 0.06, 0.12, 0.06], run)
    assert [d["angles_deg"] for d in out] == [[0.0], [1.0], [2.0], [3.0]]
    assert calls == [(0.06, [1, 3]), (0.12, [0, 2])]


def test_single_talker_windows_count_what_each_window_of_a_one_talker_clip_names():
    truth = [[30.0], [40.0, 100.0], [90.0]]
    found = [{"angles_deg": [30.0], "windows": [[31.0], [29.0, 60.0], [37.0]]},  # one, two, one but 7 deg off
             {"angles_deg": [40.0, 100.0], "windows": [[40.0]]},  # a two-talker clip: not counted
             {"angles_deg": [90.0], "windows": [[], [92.0]]}]  # a window naming nobody counts against
    got = methods.real_scores(found, truth, np.array([0.06, 0.06, 0.12]))["one_talker_windows"]
    assert got == {"windows": 5, "named_one": 3, "named_one_within": 2, "within_deg": 5.0}


def test_gcc_phat_handed_the_count_names_each_window_of_a_one_talker_clip():
    """A pair hearing one white source with mic 1 two samples later, 3 s at 10 cm: the clip and each of its three
    half-overlapping 1.5 s windows name one talker at arccos(-2 c / (sr d)) (mic 1 late: the far half)."""
    rng = np.random.default_rng(0)
    source = rng.standard_normal(3 * SR + 2)
    clip = np.stack([source[2:], source[:-2]])[None].astype(np.float32)  # mic 1 hears it two samples later
    want = math.degrees(math.acos(-2 * SOUND_SPEED / (SR * 0.1)))
    [got] = methods.gcc_given_count(clip, 0.1, 1)
    assert len(got["windows"]) == 3 and all(len(w) == 1 for w in got["windows"])
    assert abs(got["angles_deg"][0] - want) < 1.0 and all(abs(w[0] - want) < 1.0 for w in got["windows"])
    scored = methods.real_scores([got], [[want]], np.array([0.1]))["one_talker_windows"]
    assert scored == {"windows": 3, "named_one": 3, "named_one_within": 3, "within_deg": 5.0}
