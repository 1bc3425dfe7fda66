"""Faults injected for real into training: damaged shards, too many of them, a non-finite batch."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors.numpy import load_file


from hang_guard import HANG_S
from run_helpers import ROOT, TINY, TRAIN, records, small_shards, subprocess_env as env
SMALL = ["data.num_workers=1", "data.rir_reservoir=8", "data.rir_refresh=4", "speech.reservoir=16",
         "speech.refresh=4", "run.batch_size=4", "eval.num_samples=8", "eval.batch_size=8", "run.progress=false",
         "eval.every=0", "run.log_every=5"]


@pytest.fixture(scope="module")
def clean_shards(tmp_path_factory):
    return small_shards(tmp_path_factory, "clean", 16, 8, 2, 0.2)


def damaged_copy(clean: Path, dest: Path) -> tuple[str, str]:
    shutil.copytree(clean, dest)
    truncated, flipped = dest / "train" / "train-000001.tar", dest / "train" / "train-000004.tar"
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 3] ^= 0xFF
    flipped.write_bytes(bytes(data))
    return truncated.name, flipped.name


def run_train(shards, run, *extra):
    return subprocess.run([sys.executable, TRAIN, "--config", TINY, "--shards", str(shards), "--run-dir", str(run),
                           *SMALL, *extra], env=env(), capture_output=True, text=True, timeout=HANG_S)


@pytest.mark.slow
def test_damaged_shards_are_skipped_named_and_counted(clean_shards, tmp_path):
    names = damaged_copy(clean_shards, tmp_path / "shards")
    proc = run_train(tmp_path / "shards", tmp_path / "run", "--steps", "15", "data.max_fail_share=0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in names:
        assert f"skipped damaged train shard" in proc.stderr and name in proc.stderr
    recs = records(tmp_path / "run")
    errors = {Path(r["item"]).name for r in recs if r["event"] == "data_error"}
    assert errors == set(names)
    last_train = [r for r in recs if r["event"] == "train"][-1]
    assert last_train["step"] == 15 and last_train["train_bad_shards"] == 2


@pytest.mark.slow
def test_too_many_damaged_shards_stop_with_a_clear_error(clean_shards, tmp_path):
    damaged_copy(clean_shards, tmp_path / "shards")
    proc = run_train(tmp_path / "shards", tmp_path / "run", "--steps", "15", "data.max_fail_share=0.05",
                     "data.min_shards_for_share=2")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "data.max_fail_share=0.05" in last and "train shards failed" in last


@pytest.mark.slow
def test_non_finite_batches_are_skipped_and_weights_stay_finite(clean_shards, tmp_path):
    rng = np.random.default_rng(0)
    train, evaluation = tmp_path / "speech_train", tmp_path / "speech_eval"
    for folder in (train, evaluation):
        folder.mkdir()
        for i in range(4):
            sf.write(folder / f"good{i}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000, subtype="FLOAT")
    # A valid float WAV whose samples overflow the convolution to Inf/NaN on the device.
    sf.write(train / "overflow.wav", np.full(16000, 3e38, np.float32), 16000, subtype="FLOAT")
    run = tmp_path / "run"
    proc = run_train(clean_shards, run, "--steps", "12", "speech.source=folder", f"speech.train_path={train}",
                     f"speech.eval_path={evaluation}", "speech.reservoir=5", "speech.refresh=2",
                     "run.max_skip_share=1.0", "eval.every=12")
    assert proc.returncode == 0, proc.stderr[-3000:]
    end = records(run)[-1]
    assert end["event"] == "end" and end["step"] == 12 and end["skipped_steps"] > 0
    weights = load_file(str(run / "model.safetensors"))
    assert all(np.isfinite(w).all() for w in weights.values())
    evals = [r for r in records(run) if r["event"] == "eval"]
    assert np.isfinite(evals[-1]["binned_mae_deg"])

    proc = run_train(clean_shards, tmp_path / "run_stop", "--steps", "30", "speech.source=folder",
                     f"speech.train_path={train}", f"speech.eval_path={evaluation}", "speech.reservoir=5",
                     "speech.refresh=2", "run.max_skip_share=0.05")
    assert proc.returncode == 2 and "run.max_skip_share=0.05" in proc.stderr.strip().splitlines()[-1]
