"""ssl_model.Localizer: physics of a single far-field source, the result object, batches of files, refusals,
the exported graph, the README's example, and the console scripts of a `pip install`."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from ssl_model import LocalizationResult, LocalizeError, Localizer
from ssl_model.export import ONNX, PROGRAM, SPEC_FILE, Posteriors, onnx_available, write_exports
from ssl_model.localize import main as localize_main
from ssl_model.stream_audio import window_starts
from training.checkpoint import WEIGHTS

from hang_guard import HANG_S
from run_helpers import ROOT
from test_evaluate import untrained_run

SR = 16000
PACKAGES = ("configs", "shards", "simulate", "ssl_model", "training")  # pyproject.toml's [tool.setuptools] packages


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """An untrained configs/tiny.yaml run with 1 s windows: the API's plumbing, not its accuracy."""
    root = tmp_path_factory.mktemp("api")
    return untrained_run(root / "run", root / "no-shards", ["speech.clip_seconds=1.0"], seed=0)


@pytest.fixture(scope="module")
def pretrained() -> Localizer:
    return Localizer.from_pretrained("two-talker")  # these tests check two-talker behaviour


def far_field(theta_deg: float, seconds: float = 3.0, spacing: float = 0.1, speed: float = 340.0,
              seed: int = 0) -> np.ndarray:
    """One plane wave from lateral angle theta (0 = towards mic 1) -> noise [2, T]: mic 0 hears it
    spacing * cos(theta) / speed later than mic 1 (exact fractional delay, applied in the frequency domain)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR) + 400
    spectrum = np.fft.rfft(rng.normal(0, 0.1, n))
    f = np.fft.rfftfreq(n, 1 / SR)
    tau = spacing * np.cos(np.deg2rad(theta_deg)) / speed  # mic 0 minus mic 1 arrival time
    mics = [np.fft.irfft(spectrum * np.exp(-2j * np.pi * f * delay), n) for delay in (max(tau, 0), max(-tau, 0))]
    return np.stack(mics)[:, 200:-200].astype(np.float32)


def stereo_file(path: Path, theta_deg: float, sr: int = SR, seconds: float = 1.5, seed: int = 0) -> Path:
    wave = far_field(theta_deg, seconds, seed=seed)
    if sr != SR:
        wave = np.stack([np.interp(np.arange(int(seconds * sr)) * SR / sr, np.arange(wave.shape[1]), ch) for ch in wave])
    sf.write(path, wave.T, sr, subtype="FLOAT")
    return path


@pytest.mark.parametrize("theta", [30.0, 70.0, 150.0])
def test_a_single_far_field_source_is_found_and_swapping_the_mics_mirrors_it(pretrained, theta):
    """Both slots name the one talker (the model assumes two); mic 0 <-> mic 1 maps every angle a to 180 - a."""
    wave = far_field(theta, seconds=2.0)
    result = pretrained(wave, SR)
    assert np.abs(result.angles_deg - theta).max() < 6.0, result.angles_deg
    swapped = pretrained(wave[::-1], SR)  # a view with a negative stride
    assert np.allclose(swapped.angles_deg, 180.0 - result.angles_deg[::-1], atol=1.0), (swapped.angles_deg, theta)


def test_the_result_object(pretrained):
    wave = far_field(60.0, seconds=2.3)
    result = pretrained(torch.from_numpy(wave), SR)  # torch or numpy alike
    assert isinstance(result, LocalizationResult) and result.target == "lateral"
    assert np.all(np.diff(result.angles_deg) >= 0) and result.posteriors.shape == (2, 36)
    assert np.allclose(result.posteriors.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(result.classes, np.floor(result.angles_deg / result.bin_deg).astype(int))
    # a two-talker model's window probability: the slot posterior's mass within one class of the decoded class;
    # the recording's: the share of the windows that heard the talker, weighted by it
    for w in result.windows:
        near = [w.posteriors[s, max(c - 1, 0):c + 2].sum() for s, c in enumerate(w.classes)]
        assert np.allclose(w.probabilities, near, atol=1e-6)
    votes = [np.where(np.abs(w.angles_deg - result.angles_deg) <= 10.0, w.probabilities, 0.0) for w in result.windows]
    assert np.allclose(result.probabilities, np.mean(votes, axis=0), atol=1e-6)
    window = int(pretrained.window_s * SR)
    starts = window_starts(wave.shape[1], window)
    assert [round(w.start_s * SR) for w in result.windows] == starts
    assert result.windows[-1].end_s == pytest.approx(result.duration_s) == pytest.approx(2.3, abs=1e-3)
    for w in result.windows:
        assert w.end_s - w.start_s == pytest.approx(pretrained.window_s) and np.all(np.diff(w.angles_deg) >= 0)
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["angles_deg"] == [round(float(a), 2) for a in result.angles_deg]
    assert len(as_json["windows"]) == len(starts) and as_json["sample_rate_model"] == SR


def test_the_call_the_file_and_the_cli_agree(tiny, tmp_path, capsys):
    path = stereo_file(tmp_path / "rec.wav", 45.0)
    localizer = Localizer.from_run(tiny)
    by_file = localizer.localize_file(path).to_dict()
    wave, sr = sf.read(path, dtype="float32")
    assert localizer(wave.T, sr).to_dict() == by_file
    assert localize_main([str(path), "--run", str(tiny)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed.pop("file") == str(path) and printed.pop("kind") == "file" and printed == by_file


def test_many_files_match_one_at_a_time_and_keep_their_order(tiny, tmp_path):
    """Nine files at two rates, one of them bad: results in input order, the bad one as its error, the same
    posteriors as one file at a time."""
    paths = [stereo_file(tmp_path / f"f{i}.wav", 20.0 + 15 * i, sr=(SR if i % 2 else 22050), seconds=1.2, seed=i)
             for i in range(9)]
    paths.insert(3, tmp_path / "missing.wav")
    localizer = Localizer.from_file(tiny / WEIGHTS)
    found = list(localizer.localize_files(paths, return_errors=True))
    assert [p for p, _ in found] == paths
    assert isinstance(found[3][1], LocalizeError) and "missing.wav: no such file" in str(found[3][1])
    assert all(isinstance(r, LocalizationResult) for _, r in found[:3] + found[4:])
    for path, result in (found[0], found[4], found[-1]):  # before and after the bad file, the last
        alone = localizer.localize_file(path)
        assert np.allclose(result.posteriors, alone.posteriors, atol=1e-5)
        assert result.sample_rate_in == alone.sample_rate_in
    with pytest.raises(LocalizeError, match="missing.wav"):
        list(localizer.localize_files(paths))


@pytest.mark.parametrize("make, words", [
    (lambda w: w.T.copy(), "pass its .T"),
    (lambda w: w[None, None], "expected a wave [2, samples]"),
    (lambda w: w[:1], "mono audio"),
    (lambda w: w[:, :SR // 2], "too short"),
    (lambda w: np.where(np.arange(w.shape[1]) == 7, np.nan, w), "NaN or infinite"),
    (lambda w: np.zeros_like(w), "silent"),
])
def test_bad_waves_are_refused_in_one_line(tiny, make, words):
    localizer = Localizer.from_run(tiny)
    with pytest.raises(LocalizeError) as err:
        localizer(make(far_field(90.0, seconds=2.0)), SR)
    message = str(err.value)
    assert words in message and "\n" not in message and message.startswith("wave: ")


def test_constructors_name_what_they_refuse(tmp_path):
    cases = [(lambda: Localizer.from_run(tmp_path / "no-run"), "run folder not found"),
             (lambda: Localizer.from_file(tmp_path / "none.safetensors"), "no such weights file"),
             (lambda: Localizer.from_pretrained("two-talker", device="gpu7"), "not a torch device name")]
    text = tmp_path / "text.safetensors"
    text.write_text("not weights\n")
    cases.append((lambda: Localizer.from_file(text), "not a safetensors file"))
    for build, words in cases:
        with pytest.raises(LocalizeError, match=re.escape(words)):
            build()


@pytest.mark.slow  # torch.export traces the model: ~10 s of CPU
def test_the_exported_program_matches_the_eager_network(tiny, tmp_path):
    """torch.export program of Posteriors == the Localizer's own network on a batch size it was not traced with."""
    written = write_exports(tiny / WEIGHTS, tmp_path)
    assert written["max_abs_diff"] < 1e-5
    localizer = Localizer.from_run(tiny)
    extra = {SPEC_FILE: ""}
    program = torch.export.load(tmp_path / PROGRAM, extra_files=extra)
    assert json.loads(extra[SPEC_FILE]) == json.loads(localizer.spec.to_json())
    windows = torch.from_numpy(np.stack([far_field(a, seconds=1.0)[:, :localizer.spec.clip_samples]
                                         for a in (20, 60, 100, 140, 170)]))
    spacing = torch.full((5,), localizer.spec.mic_spacing)
    with torch.no_grad():
        eager = localizer.network(windows, spacing)
        exported = program.module()(windows, spacing)
    posteriors, existence, track = exported
    assert posteriors.shape == (5, 2, 36) and existence.shape == (5, 2) and track.shape == (5, 0, 36)
    assert torch.equal(existence, torch.ones(5, 2))  # a two-talker model: every slot always holds a talker
    for e, x in zip(eager, exported):
        assert torch.allclose(x, e, atol=1e-5), (x - e).abs().max()
    assert isinstance(localizer.network, Posteriors)


@pytest.mark.slow
@pytest.mark.skipif(not onnx_available(), reason="onnx and onnxscript are not installed (not project dependencies)")
def test_the_onnx_graph_matches_the_eager_network(tiny, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    write_exports(tiny / WEIGHTS, tmp_path, onnx=True)
    localizer = Localizer.from_run(tiny)
    windows = far_field(80.0, seconds=1.0)[None, :, :localizer.spec.clip_samples]
    spacing = np.full(1, localizer.spec.mic_spacing, dtype=np.float32)
    session = ort.InferenceSession(str(tmp_path / ONNX))
    inputs = dict(zip((i.name for i in session.get_inputs()), (windows, spacing)))
    onnx_out = session.run(None, inputs)
    with torch.no_grad():
        eager = localizer.network(torch.from_numpy(windows), torch.from_numpy(spacing))
    for x, e in zip(onnx_out, eager):
        assert np.allclose(x, e.numpy(), atol=1e-4)


def python_block(markdown: Path, section: str) -> str:
    """The one ```python block of a markdown file's `section` (up to the next `## ` heading)."""
    body = markdown.read_text().split(section, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    assert len(blocks) == 1, f"{markdown}, {section}: expected one python block, found {len(blocks)}"
    return blocks[0]


def card_figures_in_readme(card: Path, row_start: str) -> dict:
    """A model card -> its front matter, after checking that every figure of its model-index is in the README
    Results row that starts with `row_start`."""
    meta = yaml.safe_load(card.read_text()[4:].split("\n---\n", 1)[0])
    values = [m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]]
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(row_start))
    for value in values:
        assert f"{value:g}" in row or f"{value:.2f}" in row or f"{value:.1f}" in row, (value, row)
    return meta


def run_example(markdown: Path, section: str, folder: Path, monkeypatch) -> None:
    """Run that block as written in `folder`, which links the repository's examples/ (the sample recording)."""
    (folder / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(folder)
    exec(compile(python_block(markdown, section), f"{markdown.name} ({section})", "exec"), {"__name__": "example"})


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    run_example(ROOT / "README.md", "## Use from Python", tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert "Localizer(wide: " in out and "missing.wav: no such file" in out
    assert "LocalizationResult(count=2, angles_deg=[" in out and "count=1, count_given=True" in out
    assert out.count(" s: 2 talker(s) at [") == 4  # 3.5 s in 1.5 s windows starting at 0, 0.75, 1.5 and 2.0 s
    assert out.count("WindowResult(") == 4  # the same windows, streamed from 20 ms chunks


@pytest.mark.slow
def test_console_scripts_from_a_pip_install(tmp_path):
    """`pip install --no-deps --target DIR .` (the venv's packages, DIR first on the path): every console script
    starts, runs the installed copy (not the work tree), and ssl-localize localizes; python -m training.train
    works beside the script path."""
    source = tmp_path / "source"  # a copy: setuptools builds in the source folder, so the work tree stays untouched
    for name in PACKAGES:
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.tar"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    for script in ("ssl-simulate", "ssl-train", "ssl-evaluate", "ssl-localize", "ssl-export"):
        run = subprocess.run([str(target / "bin" / script), "--help"], capture_output=True, text=True, cwd=work,
                             env=env, timeout=HANG_S)
        assert run.returncode == 0 and "usage:" in run.stdout, (script, run.stderr[-2000:])
    where = subprocess.run([sys.executable, "-c", "import ssl_model, training.train; print(ssl_model.__file__)"],
                           capture_output=True, text=True, cwd=work, env=env, timeout=HANG_S)
    assert where.stdout.strip().startswith(str(target)), where
    wav = stereo_file(work / "rec.wav", 40.0)
    run = subprocess.run([str(target / "bin" / "ssl-localize"), str(wav), "--model", "two-talker"], capture_output=True,
                         text=True, cwd=work, env=env, timeout=HANG_S)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(json.loads(run.stdout)["angles_deg"]) == 2
    for form in (["-m", "training.train"], [str(target / "training" / "train.py")]):
        run = subprocess.run([sys.executable, *form, "--help"], capture_output=True, text=True, cwd=work, env=env,
                             timeout=HANG_S)
        assert run.returncode == 0 and "--run-dir" in run.stdout, (form, run.stderr[-2000:])
