"""No silent wrong answer at the localizer's edges: broken model outputs, input with no usable signal, silent
stretches of a stream, a file changed while it is read; the CLI's output lines, help, pipes, plots and progress;
paths and batches given to the Python API. Small untrained models built in memory (plumbing, not accuracy)."""
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ssl_model.levels as levels
import ssl_model.localizer as localizer_module
from hang_guard import HANG_S
from run_helpers import ROOT, subprocess_env
from ssl_model.config import preset
from ssl_model.loading import LocalizerSpec, save_localizer
from ssl_model.localize import main, parse_args
from ssl_model.localizer import LocalizationResult, LocalizeError, Localizer
from ssl_model.model import SSLModel

SR = 16000


def tiny_localizer(counting: bool) -> Localizer:
    """An untrained 1 s-window model in memory: 3 slots with count and track heads, or the two-talker layout."""
    torch.manual_seed(0)
    heads = dict(num_slots=3, count_head=True, frame_head=True) if counting else dict(num_slots=2)
    config = preset("srp", dim=32, depth=1, heads=2, dim_head=16, conv_kernel=7, **heads)
    spec = LocalizerSpec(model=config, clip_samples=SR, normalize="peak", target="lateral")
    return Localizer(SSLModel(config).eval(), spec)


@pytest.fixture(scope="module")
def counting() -> Localizer:
    return tiny_localizer(counting=True)


@pytest.fixture(scope="module")
def two_talker() -> Localizer:
    return tiny_localizer(counting=False)


@pytest.fixture(scope="module")
def weights(tmp_path_factory, counting, two_talker) -> dict[str, Path]:
    """Both models as weights files, for the command line."""
    folder = tmp_path_factory.mktemp("weights")
    return {name: save_localizer(loc.model, loc.spec, folder / f"{name}.safetensors")
            for name, loc in (("counting", counting), ("two-talker", two_talker))}


def noise(seconds: float, level: float = 0.1, seed: int = 0) -> np.ndarray:
    """-> [2, T] float32 white noise of RMS `level` on each mic, mic 1 a 3-sample-late copy of mic 0."""
    x = np.random.default_rng(seed).normal(0, level, int(seconds * SR) + 3).astype(np.float32)
    return np.stack([x[3:], x[:-3]])


def with_nan_weights(localizer: Localizer) -> Localizer:
    """A copy of the model whose first weight matrix holds a NaN (built in memory, never read from a file)."""
    model = SSLModel(localizer.spec.model)
    model.load_state_dict(localizer.model.state_dict())
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() >= 2)[0, 0] = float("nan")
    return Localizer(model.eval(), localizer.spec)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ---------------------------------------------------------------------------------------------- model outputs


@pytest.mark.parametrize("kind", ["counting", "two_talker"])
def test_non_finite_model_outputs_are_an_error_never_a_result(kind, request, tmp_path):
    broken = with_nan_weights(request.getfixturevalue(kind))
    with pytest.raises(LocalizeError, match="NaN or infinite outputs") as err:
        broken(noise(2.0), SR)
    assert "\n" not in str(err.value)
    path = tmp_path / "rec.wav"
    sf.write(path, noise(2.0).T, SR)
    with pytest.raises(LocalizeError, match=f"{path}: .*NaN or infinite outputs"):
        list(broken.stream(path))
    with pytest.raises(LocalizeError, match="NaN or infinite outputs"):
        broken.clip_angles(torch.from_numpy(noise(1.0)[None, :, :SR]))


def test_the_command_line_reports_a_broken_model_in_one_line(counting, weights, tmp_path, capsys, monkeypatch):
    path = tmp_path / "rec.wav"
    sf.write(path, noise(2.0).T, SR)
    broken = with_nan_weights(counting)
    monkeypatch.setattr(Localizer, "from_file", classmethod(lambda cls, *_: broken))
    for stream in ([], ["--stream"]):
        assert main([str(path), "--model", str(weights["counting"]), *stream]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "NaN or infinite outputs" in one_error_line(err)


# ---------------------------------------------------------------------------------------------- no usable signal


def pcm16_lsb(seconds: float = 2.0) -> np.ndarray:
    """-> [2, T]: random +-1 LSB of a 16-bit file on both mics (-90 dBFS)."""
    steps = np.random.default_rng(1).integers(-1, 2, (2, int(seconds * SR)))
    return (steps / 32768).astype(np.float32)


def one_mic(wave: np.ndarray, channel: int, value: float) -> np.ndarray:
    out = wave.copy()
    out[channel] = value
    return out


NO_SIGNAL = {  # name -> ([2, T] wave, file subtype, words of the error)
    "16-bit +-1 LSB": (pcm16_lsb(), "PCM_16", "silent"),
    "1e-7 noise": (noise(2.0, level=1e-7), "FLOAT", "silent"),
    "mic 1 zeros": (one_mic(noise(2.0), 1, 0.0), "FLOAT", "mic 1 (channel 1) is dead (all zeros"),
    "mic 0 DC": (one_mic(noise(2.0), 0, 0.3), "FLOAT", "mic 0 (channel 0) is dead (constant"),
    "mic 1 at -100 dBFS": (np.stack([noise(2.0)[0], noise(2.0, level=1e-5, seed=2)[0]]), "FLOAT",
                           "mic 1 (channel 1) is dead (RMS -100"),
}


@pytest.mark.parametrize("name", sorted(NO_SIGNAL))
def test_input_without_usable_signal_is_refused(name, counting, weights, tmp_path, capsys):
    wave, subtype, words = NO_SIGNAL[name]
    path = tmp_path / "quiet.wav"
    sf.write(path, wave.T, SR, subtype=subtype)
    for stream in ([], ["--stream"]):
        assert main([str(path), "--model", str(weights["counting"]), *stream]) == 2
        out, err = capsys.readouterr()
        assert words in one_error_line(err) and str(path) in err, err
        assert out == "" or stream  # --stream may have printed window lines before the file's end
    with pytest.raises(LocalizeError, match=f"wave: .*{re.escape(words[:12])}"):
        counting(wave, SR)


def test_integer_samples_are_measured_against_their_full_scale(counting):
    with pytest.raises(LocalizeError, match="wave: silent"):
        counting(np.round(pcm16_lsb() * 32768).astype(np.int16), SR)  # +-1 of +-32768
    assert counting((noise(2.0) * 32768).astype(np.int16), SR).duration_s == 2.0


def test_a_quiet_real_recording_is_still_localized(counting):
    """-60 dBFS noise (a quiet recording, 20 dB over the floor) on both mics is not refused."""
    assert levels.SIGNAL_FLOOR_DBFS == -80.0
    result = counting(noise(2.0, level=1e-3), SR)
    assert all(not w.silent for w in result.windows)


def with_silence(seconds: tuple[float, float, float]) -> np.ndarray:
    """(talk, silence, talk) seconds -> [2, T]: noise, digital silence, noise."""
    talk1, quiet, talk2 = seconds
    return np.concatenate([noise(talk1, seed=3), np.zeros((2, int(quiet * SR)), np.float32), noise(talk2, seed=4)],
                          axis=1)


@pytest.mark.parametrize("kind", ["counting", "two_talker"])
def test_silent_windows_of_a_stream_name_no_talkers(kind, request, tmp_path):
    localizer = request.getfixturevalue(kind)
    path = tmp_path / "pause.wav"
    sf.write(path, with_silence((2.0, 3.0, 2.0)).T, SR, subtype="FLOAT")
    windows = list(localizer.stream(path, read_seconds=0.7))
    silent = [w for w in windows if 2.0 <= w.start_s and w.end_s <= 5.0]  # 1 s windows every 0.5 s inside the pause
    assert [w.start_s for w in silent] == [2.0, 2.5, 3.0, 3.5, 4.0]
    assert all(w.silent and w.count == 0 and w.angles_deg.size == 0 and w.frames == () for w in silent)
    assert not any(w.silent for w in windows if w.start_s <= 1.5 or w.start_s >= 4.5)
    line = silent[0].to_dict()
    assert line["count"] == 0 and line["angles_deg"] == [] and line["silent"] is True
    whole = localizer.localize_file(path)
    heard = [w for w in whole.windows if not w.silent]
    assert np.allclose(whole.posteriors, np.mean([w.posteriors for w in heard], axis=0), atol=1e-6)
    if kind == "two_talker":
        assert whole.count == 2  # the talk around the pause still names two
    json.dumps(whole.to_dict(), allow_nan=False)


def test_a_stream_whose_every_window_is_silent_names_nobody(counting, tmp_path):
    """Mic 0 picks up sound in the first 1.5 s only, mic 1 in the last 1.5 s: the file has signal on both mics,
    none of its 1 s windows has."""
    wave = noise(4.0)
    wave[0, 3 * SR // 2:] = 0.0
    wave[1, :5 * SR // 2] = 0.0
    result = counting(wave, SR)
    assert all(w.silent for w in result.windows) and result.count == 0 and result.angles_deg.size == 0


# ---------------------------------------------------------------------------------------------- files changing


def rewrite_after_first_chunk(change):
    """A file_chunks that lets `change(path)` alter the file on disk once its first chunk has been read."""
    real = localizer_module.file_chunks

    def chunks(path, frames, *args, **kwargs):
        for i, chunk in enumerate(real(path, frames, *args, **kwargs)):
            yield chunk
            if i == 0:
                change(Path(path))
    return chunks


def grow(path: Path) -> None:
    sf.write(path, noise(30.0, seed=9).T, SR)


def replace(path: Path) -> None:
    other = path.with_name("other.wav")
    sf.write(other, noise(2.0, seed=9).T, SR)
    os.replace(other, path)


@pytest.mark.parametrize("change, words", [(grow, "changed on disk while being read"),
                                           (replace, "replaced by another file while being read")])
def test_a_file_changed_while_it_is_streamed_is_refused(change, words, counting, weights, tmp_path, capsys,
                                                        monkeypatch):
    path = tmp_path / "live.wav"
    sf.write(path, noise(2.0).T, SR)
    stream = counting.stream(path, read_seconds=0.5)
    next(stream)
    change(path)
    with pytest.raises(LocalizeError, match=words):
        list(stream)
    sf.write(path, noise(2.0).T, SR)
    monkeypatch.setattr(localizer_module, "file_chunks", rewrite_after_first_chunk(change))
    assert main([str(path), "--model", str(weights["counting"]), "--stream"]) == 2
    out, err = capsys.readouterr()
    assert words in one_error_line(err)
    assert all(json.loads(line)["kind"] == "window" for line in out.splitlines())  # no file line


# ---------------------------------------------------------------------------------------------- output lines


def test_the_file_line_says_kind_file_and_a_model_without_a_track_omits_frames(weights, tmp_path, capsys):
    path = tmp_path / "talk.wav"
    sf.write(path, noise(2.5).T, SR)
    for name, tracked in (("counting", True), ("two-talker", False)):
        assert main([str(path), "--model", str(weights[name]), "--stream"]) == 0
        *windows, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert summary["kind"] == "file" and all(w["kind"] == "window" for w in windows)
        assert summary["duration_s"] == 2.5 == windows[-1]["end_s"]
        assert ("frames" in summary) == tracked and all(("frames" in w) == tracked for w in windows)
        assert all(("frames" in w) == tracked for w in summary["windows"])


# ---------------------------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("argv0, usage", [("/venv/bin/ssl-localize", "usage: ssl-localize "),
                                          (str(ROOT / "ssl_model" / "localize.py"), "usage: python -m ssl_model.localize ")])
def test_help_names_the_command_that_was_run(argv0, usage, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert capsys.readouterr().out.startswith(usage)


def test_the_console_script_help(tmp_path):
    script = Path(sys.executable).with_name("ssl-localize")
    if not script.is_file():
        pytest.skip("no ssl-localize console script beside this python")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=subprocess_env(),
                          timeout=HANG_S)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: ssl-localize ")


def test_a_closed_stdout_ends_quietly_with_141(weights, tmp_path):
    """`ssl-localize x.wav | head -c 100`: the reader is gone before anything is written (its end is closed
    first), so the first line hits a broken pipe every time."""
    path = tmp_path / "rec.wav"
    sf.write(path, noise(2.0).T, SR)
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "ssl_model.localize", str(path), "--model",
                               str(weights["counting"]), "--stream"], stdout=write, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, env=subprocess_env(), timeout=HANG_S)
    finally:
        os.close(write)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr


def test_an_image_path_for_the_plots_of_several_files_is_refused(weights, tmp_path, capsys):
    files = []
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, noise(1.5).T, SR)
        files.append(str(tmp_path / name))
    plot = tmp_path / "multi.png"
    assert main([*files, "--model", str(weights["counting"]), "--plot", str(plot)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--plot" in one_error_line(err) and "multi.png" in err and not plot.exists()


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_goes_to_a_terminals_stderr_only(weights, tmp_path, capsys, monkeypatch):
    files = [str(tmp_path / "long.wav"), str(tmp_path / "short.wav")]
    sf.write(files[0], noise(9.0).T, SR)  # 17 windows of 1 s: more than one model pass, a bar
    sf.write(files[1], noise(1.5).T, SR)  # 2 windows: no bar of its own
    for quiet, expect_bar in (([], True), (["-q"], False)):
        terminal = Terminal()
        with monkeypatch.context() as patch:
            patch.setattr(sys, "stderr", terminal)
            assert main([*files, "--model", str(weights["counting"]), *quiet]) == 0
        out = capsys.readouterr().out
        assert [json.loads(line)["file"] for line in out.splitlines()] == files  # stdout: the JSON lines only
        bars = terminal.getvalue()
        assert ("0/2" in bars and "0/17" in bars) == expect_bar, bars
        assert expect_bar or bars == ""
    assert main([*files, "--model", str(weights["counting"])]) == 0  # stderr not a terminal: no bar
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------------------- the Python API


def test_a_path_is_localized_like_localize_file(counting, tmp_path):
    path = tmp_path / "rec.wav"
    sf.write(path, noise(2.0).T, SR, subtype="FLOAT")
    expected = counting.localize_file(path).to_dict()
    assert counting(str(path)).to_dict() == expected and counting(path).to_dict() == expected
    with pytest.raises(LocalizeError, match="rec.wav: a file carries its own sample rate"):
        counting(path, SR)


@pytest.mark.parametrize("as_torch", [False, True])
def test_a_batch_gives_one_result_per_row(as_torch, two_talker):
    batch = np.stack([noise(1.5, seed=s) for s in range(3)])  # [3, 2, T]
    given = torch.from_numpy(batch) if as_torch else batch
    results = two_talker(given, SR)
    assert isinstance(results, list) and len(results) == 3
    assert all(isinstance(r, LocalizationResult) for r in results)
    for row, result in zip(batch, results):
        assert np.allclose(result.posteriors, two_talker(row, SR).posteriors, atol=1e-6)
    with pytest.raises(LocalizeError, match=r"batch\[1\]: .*silent"):
        two_talker(np.stack([batch[0], np.zeros_like(batch[1])]), SR)


def test_a_list_of_paths_is_told_where_to_go(two_talker):
    with pytest.raises(LocalizeError, match="wave: not audio samples .*localize_files"):
        two_talker(["a.wav", "b.wav"], SR)


@pytest.mark.parametrize("shape", [(2, 2 * SR), (3, 2, 2 * SR)])
def test_a_wave_or_batch_without_its_sample_rate_is_refused(shape, two_talker):
    with pytest.raises(LocalizeError, match="sample_rate is required"):
        two_talker(np.random.default_rng(0).normal(0, 0.1, shape).astype(np.float32))
