"""Localizing recordings of any length as streams, models that count talkers, and the mic spacing as an input.

The stream stages (chunked reading, chunked resampling, sliding windows) must give what the whole recording gives;
a counting model's output format, the spacing reaching the network, and the clustering of window detections into
a recording's talkers are checked with small untrained models and hand-made detections (plumbing, not accuracy).
"""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from hang_guard import HANG_S
from ssl_model.config import preset
from ssl_model.export import LocalizerSpec, save_localizer
from ssl_model.localizer import LocalizationResult, LocalizeError, Localizer
from ssl_model.localize import main
from ssl_model.model import SSLModel
from ssl_model.stream_audio import (array_chunks, resampled_blocks, resampled_length, sliding_windows,
                                    window_starts)
from ssl_model.talkers import Decoding, TrackGrid, cluster_detections, track_peaks
from shards.audio import resample

SR = 16000


@pytest.mark.parametrize("sr_in", [44100, 22050, 48000, 8000, 16001])
@pytest.mark.parametrize("frames", [997, 20000])
def test_chunked_resampling_gives_the_whole_recordings_samples(sr_in, frames):
    wave = torch.randn(2, 3 * sr_in + 77, generator=torch.Generator().manual_seed(sr_in))
    whole = resample(wave, sr_in, SR)
    pieces = torch.cat(list(resampled_blocks(array_chunks(wave, frames), sr_in, SR)), dim=-1)
    assert pieces.shape == whole.shape and whole.shape[-1] == resampled_length(wave.shape[-1], sr_in, SR)
    assert torch.allclose(pieces, whole, atol=1e-6)


@pytest.mark.parametrize("total", [100, 24000, 24001, 36000, 61234])
@pytest.mark.parametrize("sizes", [(3001,), (1, 7, 5000, 24000, 13)])
def test_sliding_windows_are_the_whole_recordings_windows(total, sizes):
    """Blocks of any sizes, the length unknown until the end: the windows of window_starts(total), each with its own
    samples (zero-padded only when the recording is shorter than one window)."""
    wave = torch.randn(2, total)
    cuts = np.cumsum(np.resize(sizes, total))
    blocks = torch.tensor_split(wave, cuts[cuts < total].tolist(), dim=1)
    got = list(sliding_windows(iter(blocks), 24000))
    assert [s for s, _, _ in got] == window_starts(total, 24000)
    for start, window, length in got:
        expected = wave[:, start:start + 24000]
        assert window.shape == (2, 24000) and length == expected.shape[-1]
        assert torch.equal(window[:, :length], expected) and not window[:, length:].any()


def test_windows_come_out_before_the_recording_is_read():
    """The first window is out once its samples are in: a 10-minute stream is never held whole."""
    read = []

    def chunks():
        for i in range(600):  # 600 chunks of one second at 44.1 kHz
            read.append(i)
            yield torch.zeros(2, 44100)

    windows = sliding_windows(resampled_blocks(chunks(), 44100, SR), 24000)
    next(windows)  # 1.5 s, and the resampler's look-ahead of one chunk
    assert len(read) <= 3
    for _ in range(10):  # window 11 ends at 9 s
        next(windows)
    assert len(read) <= 11


def test_clustering_one_window_gives_back_its_talkers():
    talkers = cluster_detections(np.array([20.0, 24.0, 150.0]), np.array([0.9, 0.6, 0.7]), np.zeros(3, int), 1)
    assert np.allclose(talkers.angles_deg, [20.0, 24.0, 150.0])  # 4 degrees apart but named by one window: two
    assert np.allclose(talkers.shares, [0.9, 0.6, 0.7])


def test_clustering_may_merge_two_detections_of_one_window():
    angles, probs, windows = np.array([20.0, 24.0, 150.0]), np.array([0.9, 0.6, 0.7]), np.zeros(3, int)
    merged = cluster_detections(angles, probs, windows, 1, one_per_window=False)
    assert np.allclose(merged.angles_deg, [(20.0 * 0.9 + 24.0 * 0.6) / 1.5, 150.0])  # probability-weighted centre
    assert np.allclose(merged.shares, [1.0, 0.7])  # a share is capped at one talker heard throughout


def test_clustering_merges_a_talker_across_windows_and_drops_rare_ones():
    # windows 0-3 hear a talker near 40 degrees; window 2 also one at 120 (1 of 4 windows, weight 0.6: share 0.15)
    angles = np.array([38.0, 41.0, 40.0, 42.0, 120.0])
    probs = np.array([0.9, 0.8, 1.0, 0.9, 0.6])
    windows = np.array([0, 1, 2, 3, 2])
    talkers = cluster_detections(angles, probs, windows, 4)
    assert talkers.angles_deg.shape == (1,) and abs(talkers.angles_deg[0] - 40.2) < 0.5
    assert talkers.shares[0] == pytest.approx(0.9)
    assert np.allclose(talkers.candidates_deg[1], 120.0)  # kept as a weaker candidate
    loose = cluster_detections(angles, probs, windows, 4, min_share=0.1)
    assert np.allclose(loose.angles_deg, [talkers.angles_deg[0], 120.0])
    capped = cluster_detections(np.array([10.0, 60.0, 110.0, 170.0]), np.ones(4), np.arange(4) * 0, 1, max_talkers=3)
    assert capped.angles_deg.shape == (3,)


def test_track_peaks_and_the_grid():
    activity = np.zeros((3, 36))
    activity[0, 8] = 0.9  # one talker in bin 8 (40-45 degrees)
    activity[1, [8, 9]] = [0.8, 0.8]  # a plateau: one peak
    activity[2, [4, 30]] = [0.7, 0.6]
    peaks = track_peaks(activity, 5.0)
    assert peaks[0] == [42.5] and len(peaks[1]) == 1 and 42.5 <= peaks[1][0] <= 47.5
    assert [round(a) for a in peaks[2]] == [22, 152]
    grid = TrackGrid(0.2, 36)
    grid.add(0.0, np.full((3, 36), 1.0))
    grid.add(0.41, np.zeros((3, 36)))  # starts at cell 2: cells 2-4
    assert np.allclose(grid.average()[:, 0], [1.0, 1.0, 0.5, 0.0, 0.0])


# ---------------------------------------------------------------------------------------------- counting model


@pytest.fixture(scope="module")
def counting(tmp_path_factory) -> Localizer:
    """An untrained 3-slot model with count, track and spacing inputs, existence biased so that two slots hold."""
    torch.manual_seed(0)
    config = preset("srp", dim=32, depth=1, heads=2, dim_head=16, conv_kernel=7, num_slots=3, count_head=True,
                    frame_head=True, spacing_input=True, mic_spacing_range=(0.06, 0.16))
    model = SSLModel(config).eval()
    path = tmp_path_factory.mktemp("counting") / "model.safetensors"
    spec = LocalizerSpec(model=config, clip_samples=24000, normalize="peak", target="lateral")
    save_localizer(model, spec, path)
    return Localizer.from_file(path)


def stereo(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, (2, int(seconds * sr))).astype(np.float32)


def test_streaming_a_file_equals_localizing_it_whole(counting, tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, stereo(7.3, 22050).T, 22050, subtype="FLOAT")
    whole = counting.localize_file(path)
    streamed = list(counting.stream(path, read_seconds=0.37))
    assert [w.start_s for w in streamed] == [w.start_s for w in whole.windows]
    for a, b in zip(streamed, whole.windows):
        assert a.count == b.count and np.allclose(a.posteriors, b.posteriors, atol=1e-5)
        assert np.allclose(a.angles_deg, b.angles_deg, atol=1e-3) and np.allclose(a.activity, b.activity, atol=1e-5)
    again = counting.aggregate(streamed, 7.3, 22050)
    assert again.count == whole.count and np.allclose(again.angles_deg, whole.angles_deg, atol=1e-3)
    assert [f.time_s for f in again.frames] == [f.time_s for f in whole.frames]


def test_a_counting_models_output(counting):
    result = counting(stereo(4.0), SR)
    assert isinstance(result, LocalizationResult)
    assert result.count == len(result.angles_deg) == len(result.probabilities) == len(result.classes) <= 3
    assert np.all(np.diff(result.angles_deg) > 0) and np.all((result.probabilities >= 0) & (result.probabilities <= 1))
    for w in result.windows:
        assert w.count == len(w.angles_deg) <= 3 and np.all(np.diff(w.angles_deg) >= 0)
        assert np.allclose(w.probabilities, w.existence[:w.count]) and np.all(w.existence[:w.count] > 0.5)
        assert w.count == 3 or w.existence[w.count] <= 0.5  # the count is the number of leading held slots
        steps = [f.time_s - w.start_s for f in w.frames]
        assert np.allclose(steps, (np.arange(len(steps)) + 0.5) * counting.step_s)
    assert counting.step_s == pytest.approx(0.2)
    times = [f.time_s for f in result.frames]
    assert np.allclose(np.diff(times), 0.2) and times[-1] <= result.duration_s + 0.2
    line = json.loads(json.dumps(result.to_dict()))
    assert line["count"] == result.count and line["mic_spacing"] == 0.1 and len(line["spectrum"]) == 36
    assert set(line["windows"][0]) >= {"start_s", "end_s", "count", "angles_deg", "probabilities", "frames"}


def test_the_mic_spacing_steers_the_network(counting):
    wave = stereo(1.5, seed=3)
    window = torch.from_numpy(wave)[None]
    for spacing in (0.07, 0.13):
        result = counting(wave, SR, mic_spacing=spacing)
        with torch.no_grad():
            posteriors, exist, _ = counting.network(window, torch.tensor([spacing]))
        assert result.mic_spacing == spacing  # the slots come back reordered (held first): compare them as sets
        assert np.allclose(np.sort(result.windows[0].existence), np.sort(exist[0].numpy()), atol=1e-5)
        assert np.allclose(np.sort(result.windows[0].posteriors.max(-1)), np.sort(posteriors[0].max(-1).values), atol=1e-5)
    near, far = counting(wave, SR, mic_spacing=0.07), counting(wave, SR, mic_spacing=0.13)
    assert not np.allclose(near.windows[0].posteriors, far.windows[0].posteriors)
    assert np.allclose(counting(wave, SR).windows[0].posteriors, counting(wave, SR, mic_spacing=0.1).windows[0].posteriors)
    with pytest.raises(LocalizeError, match="outside the 6-16 cm"):
        counting(wave, SR, mic_spacing=0.2)


def test_a_one_spacing_model_refuses_another_spacing():
    shipped = Localizer.from_pretrained("two-talker")
    wave = stereo(1.5)
    assert shipped(wave, SR, mic_spacing=0.1).count == 2
    with pytest.raises(LocalizeError, match="serves one spacing, 10 cm"):
        shipped(wave, SR, mic_spacing=0.09)
    code = main([__file__, "--mic-spacing", "0.09", "-q"])
    assert code == 2


def test_the_command_line_streams_window_lines_then_the_file_line(counting, tmp_path):
    path = tmp_path / "talk.flac"
    sf.write(path, stereo(4.0, 44100).T, 44100)
    proc = subprocess.run([sys.executable, "-m", "ssl_model.localize", str(path), "--model", str(counting.source),
                           "--mic-spacing", "0.12", "--stream", "-q"], capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    *windows, summary = lines
    assert all(w["kind"] == "window" and w["file"] == str(path) for w in windows) and summary["kind"] == "file"
    assert len(windows) == len(summary["windows"]) == len(window_starts(4 * SR, 24000))
    assert [w["angles_deg"] for w in windows] == [w["angles_deg"] for w in summary["windows"]]
    assert summary["mic_spacing"] == 0.12 and summary["count"] == len(summary["angles_deg"])
    plain = subprocess.run([sys.executable, "-m", "ssl_model.localize", str(path), "--model", str(counting.source),
                            "--mic-spacing", "0.12", "-q"], capture_output=True, text=True, timeout=HANG_S)
    assert plain.stdout.splitlines() == [proc.stdout.splitlines()[-1]]  # --json lines: one per file


def test_the_existence_threshold_sets_how_many_slots_hold(counting):
    wave = stereo(4.0, seed=3)  # copies kept (resolve_samples=0): an untrained model's slots sit one delay apart
    base = counting.with_decoding(Decoding(resolve_samples=0.0))(wave, SR)
    loose = counting.with_decoding(Decoding(existence=1e-6, resolve_samples=0.0))(wave, SR)
    strict = counting.with_decoding(Decoding(existence=1 - 1e-6, resolve_samples=0.0))(wave, SR)
    for a, b, c in zip(loose.windows, base.windows, strict.windows):
        same = np.sort(b.existence)  # held slots are reordered by angle: compare the sets
        assert np.allclose(np.sort(a.existence), same) and np.allclose(np.sort(c.existence), same)
        assert a.count == 3 >= b.count >= c.count == 0  # an untrained model's existence is never that sure
        assert b.count == int((b.existence > 0.5).cumprod().sum())
    assert loose.count >= base.count >= strict.count == 0
    assert counting.decoding == Decoding()  # the original keeps its thresholds


def test_decoding_thresholds_travel_in_the_weights_file(counting, tmp_path):
    chosen = Decoding(existence=0.7, merge_deg=15.0, min_share=0.34, one_per_window=False)
    path = save_localizer(counting.model, dataclasses.replace(counting.spec, decoding=chosen), tmp_path / "m.safetensors")
    loaded = Localizer.from_file(path)
    assert loaded.decoding == chosen and loaded.spec == dataclasses.replace(counting.spec, decoding=chosen)
    assert counting.decoding == Decoding()  # a file written without them: the defaults
    wave = stereo(3.0, seed=5)
    assert loaded(wave, SR).count == counting.with_decoding(chosen)(wave, SR).count
