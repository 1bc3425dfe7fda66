"""ssl_model.localize: bad input ends in a one-line error and exit 2; the JSON; resampling; windows; the plot."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hang_guard import HANG_S
from ssl_model import SSLModel
from shards.audio import resample
from ssl_model.localize import main
from ssl_model.loading import PRETRAINED
from ssl_model.stream_audio import window_starts
from training.checkpoint import CONFIG, WEIGHTS, export_weights
from training.config import dump_config, load_train_config

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """An untrained tiny run folder (config.yaml + model.safetensors): enough to test the CLI's plumbing."""
    run = tmp_path_factory.mktemp("run")
    # 1 s windows, so the window arithmetic below is easy to check by hand.
    cfg = load_train_config(ROOT / "configs" / "tiny.yaml", [f"run.dir={run}", "speech.clip_seconds=1.0"])
    torch.manual_seed(0)
    export_weights(SSLModel(cfg.model), cfg, run / WEIGHTS)
    dump_config(cfg, run / CONFIG)
    return run


def stereo(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """-> noise [T, 2] with mic 1 lagging mic 0 by 3 samples at 16 kHz."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.1, int(seconds * sr) + 64).astype(np.float32)
    lag = round(3 * sr / 16000)
    return np.stack([x[64:], x[64 - lag:len(x) - lag]], axis=1)


def bad_file(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.wav"
    if kind == "mono":
        sf.write(path, stereo(2.0, 16000)[:, 0], 16000)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "nan":
        sf.write(path, np.full((32000, 2), np.nan, np.float32), 16000, subtype="FLOAT")
    elif kind == "short":
        sf.write(path, stereo(0.5, 16000), 16000)
    elif kind == "text":
        path.write_text("this is not audio\n" * 50)
    elif kind == "silent":
        sf.write(path, np.zeros((32000, 2), np.float32), 16000)
    elif kind == "missing":
        pass
    return path


BAD = {"mono": "mono audio", "empty": "empty file", "nan": "NaN or infinite", "short": "too short",
       "text": "not a readable audio file", "silent": "silent", "missing": "no such file"}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_is_one_line_error(kind, run_dir, tmp_path, capsys):
    path = bad_file(kind, tmp_path)
    code = main([str(path), "--run", str(run_dir)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and BAD[kind] in lines[0], err
    assert str(path) in lines[0]


def test_cli_subprocess_has_no_traceback(run_dir, tmp_path):
    """The real entry point: a text file renamed .wav -> exit 2 and exactly one stderr line."""
    path = bad_file("text", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "ssl_model.localize", str(path), "--run", str(run_dir)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=HANG_S)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("device, words", [("cuda", "no CUDA device"), ("cuda:0", "no CUDA device"),
                                           ("gpu7", "not a torch device name")])
def test_a_device_that_is_not_there_is_named(device, words, run_dir, tmp_path, capsys):
    path = tmp_path / "ok.wav"
    sf.write(path, stereo(1.5, 16000), 16000)
    assert main([str(path), "--run", str(run_dir), "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --device {device}: ") and words in err[0]


def test_missing_run_folder(tmp_path, capsys):
    path = tmp_path / "ok.wav"
    sf.write(path, stereo(1.5, 16000), 16000)
    assert main([str(path), "--run", str(tmp_path / "no-run")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_json_structure_at_48k_with_plot(run_dir, tmp_path, capsys):
    path = tmp_path / "rec48k.flac"
    sf.write(path, stereo(2.3, 48000), 48000)
    plot = tmp_path / "half.png"
    assert main([str(path), "--run", str(run_dir), "--plot", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["target"] == "lateral"
    angles = result["angles_deg"]
    assert len(angles) == 2 and angles == sorted(angles) and all(0 <= a <= 180 for a in angles)
    assert len(result["probabilities"]) == 2 and all(0 <= p <= 1 for p in result["probabilities"])
    posteriors = np.asarray(result["posteriors"])
    assert posteriors.shape == (2, 36) and np.allclose(posteriors.sum(1), 1, atol=1e-3)
    assert result["sample_rate_in"] == 48000 and result["sample_rate_model"] == 16000
    assert result["duration_s"] == pytest.approx(2.3, abs=1e-3)
    # 1 s windows, half-overlapping, the last one aligned to the end: 0, 0.5, 1.0, 1.3 s.
    assert [w["start_s"] for w in result["windows"]] == [0.0, 0.5, 1.0, 1.3]
    assert all(len(w["angles_deg"]) == 2 and w["angles_deg"] == sorted(w["angles_deg"]) for w in result["windows"])
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_48k_and_16k_versions_agree(run_dir, tmp_path, capsys):
    """The same scene recorded at 48 kHz and at 16 kHz gives nearly the same posteriors after resampling."""
    sig48 = stereo(1.5, 48000, seed=3)
    sig16 = resample(torch.from_numpy(sig48.T.copy()), 48000, 16000).numpy().T
    results = []
    for name, sig, sr in (("a48.wav", sig48, 48000), ("a16.wav", sig16, 16000)):
        sf.write(tmp_path / name, sig, sr, subtype="FLOAT")
        assert main([str(tmp_path / name), "--run", str(run_dir)]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert np.abs(np.asarray(results[0]["posteriors"]) - np.asarray(results[1]["posteriors"])).max() < 1e-3


def test_resample_keeps_a_tone():
    sr_in, sr_out, f = 48000, 16000, 1000.0
    t_in = np.arange(sr_in) / sr_in
    tone = torch.from_numpy(np.sin(2 * np.pi * f * t_in).astype(np.float32))[None]
    out = resample(tone, sr_in, sr_out)
    assert out.shape == (1, sr_out)
    t_out = np.arange(sr_out) / sr_out
    expected = np.sin(2 * np.pi * f * t_out)
    assert np.abs(out[0, 200:-200].numpy() - expected[200:-200]).max() < 0.01


@pytest.mark.parametrize("n, window, starts", [
    (16000, 16000, [0]), (12000, 16000, [0]), (24000, 16000, [0, 8000]), (36800, 16000, [0, 8000, 16000, 20800]),
])
def test_window_starts(n, window, starts):
    assert window_starts(n, window) == starts


def test_many_files_one_json_line_each_and_bad_ones_do_not_stop_the_rest(run_dir, tmp_path, capsys):
    good = [tmp_path / "a.wav", tmp_path / "b.ogg"]
    sf.write(good[0], stereo(1.5, 16000, seed=1), 16000)
    sf.write(good[1], stereo(2.0, 22050, seed=2), 22050, format="OGG", subtype="VORBIS")
    bad = bad_file("mono", tmp_path)
    plots = tmp_path / "plots"
    plots.mkdir()
    code = main([str(good[0]), str(bad), str(good[1]), "--run", str(run_dir), "--plot", str(plots)])
    out, err = capsys.readouterr()
    assert code == 2  # one file failed
    lines = out.strip().splitlines()
    assert [json.loads(line)["file"] for line in lines] == [str(good[0]), str(good[1])]
    errors = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    warnings = [line for line in err.strip().splitlines() if line.startswith("warning: ")]
    assert sorted(err.strip().splitlines()) == sorted(errors + warnings)
    assert len(warnings) == 1 and "b.ogg: Ogg Vorbis" in warnings[0]  # the input checks' note, one line
    assert json.loads(lines[1])["warnings"] == [warnings[0].removeprefix("warning: ")]
    assert str(bad) in err and "mono audio" in err
    assert sorted(p.name for p in plots.iterdir()) == ["a.png", "b.png"]
    assert json.loads(lines[1])["sample_rate_in"] == 22050


def test_model_file_and_the_shipped_default(run_dir, tmp_path, capsys):
    path = tmp_path / "rec.wav"
    sf.write(path, stereo(1.5, 16000), 16000)
    assert main([str(path), "--model", str(run_dir / WEIGHTS)]) == 0
    by_model = json.loads(capsys.readouterr().out)
    assert main([str(path), "--run", str(run_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["angles_deg"] == by_model["angles_deg"]
    assert main([str(path), "--model", "two-talker"]) == 0  # a shipped model by name
    shipped = json.loads(capsys.readouterr().out)
    assert len(shipped["angles_deg"]) == 2 and shipped["target"] == "lateral"
    code = main([str(path)])  # no --run, no --model: the default shipped model, once ssl_model/pretrained/wide is in
    out, err = capsys.readouterr()
    if PRETRAINED.is_file():
        assert code == 0 and json.loads(out)["kind"] == "file"
    else:
        assert code == 2 and "the shipped model's weights are missing" in err
    assert main([str(path), "--model", str(tmp_path / "nope.safetensors")]) == 2
    assert "no such weights file or folder" in capsys.readouterr().err


def test_verbosity_flags_change_stderr_only(run_dir, tmp_path, capsys):
    path = tmp_path / "ok.wav"
    sf.write(path, stereo(1.5, 16000), 16000)
    outputs = {}
    for flag in ("-q", None, "-v"):
        assert main([str(path), "--run", str(run_dir), *([flag] if flag else [])]) == 0
        outputs[flag] = capsys.readouterr()
    assert outputs["-q"].out == outputs[None].out == outputs["-v"].out and json.loads(outputs["-v"].out)
    assert outputs["-q"].err == outputs[None].err == ""
    notes = outputs["-v"].err.splitlines()
    assert any(line.startswith("Localizer(") and "lateral" in line for line in notes)
    assert "1 file(s) localized, 0 failed" in notes
    # -q keeps the one-line errors
    assert main([str(bad_file("mono", tmp_path)), "--run", str(run_dir), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "mono audio" in err[0]
