"""Weights and saved states from elsewhere are loaded without executing code (issue 6): a booby-trapped
pickle put where the weights or the optimizer state should be is refused, and its payload never runs."""
import subprocess
import sys

import pytest
import torch

from hang_guard import HANG_S
from run_helpers import ROOT, TINY, TRAIN, subprocess_env
from simulate import generate_dataset
from ssl_model import SSLModel
from training.checkpoint import CONFIG, WEIGHTS, CheckpointError, export_weights, load_run
from training.config import dump_config, load_train_config


class Payload:
    """Unpickling this calls open(marker, 'w'): if the marker file appears, code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def booby_trap(path, marker):
    torch.save({"state": Payload(marker)}, path)  # a pickle, as an old-style .bin checkpoint would be


@pytest.fixture()
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = load_train_config(TINY, [f"run.dir={run}"])
    export_weights(SSLModel(cfg.model), cfg, run / WEIGHTS)
    dump_config(cfg, run / CONFIG)
    return run


def test_pickled_weights_are_refused_without_running_them(run_dir, tmp_path):
    load_run(run_dir)  # the genuine safetensors file loads
    marker = tmp_path / "payload-ran"
    booby_trap(run_dir / WEIGHTS, marker)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_run(run_dir)
    assert not marker.exists()


def test_localize_refuses_pickled_weights_in_one_line(run_dir, tmp_path):
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "x.wav"
    sf.write(wav, np.random.default_rng(0).normal(0, 0.1, (32000, 2)).astype(np.float32), 16000)
    marker = tmp_path / "payload-ran"
    booby_trap(run_dir / WEIGHTS, marker)
    proc = subprocess.run([sys.executable, "-m", "ssl_model.localize", str(wav), "--run", str(run_dir)],
                          env=subprocess_env(), capture_output=True, text=True, cwd=ROOT, timeout=HANG_S)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("trapped", ["optimizer.bin", "model.safetensors", "random_states_0.pkl"])
def test_resume_refuses_a_pickled_state_file_without_running_it(trapped, tmp_path):
    shards, run = tmp_path / "shards", tmp_path / "run"
    generate_dataset(shards, splits={"train": 8, "eval": 4}, overrides=("shard_size=2", "rt60_range=[0.1,0.2]"))
    small = ["data.num_workers=1", "data.rir_reservoir=8", "data.rir_refresh=2", "speech.reservoir=16",
             "speech.refresh=4", "run.batch_size=4", "eval.num_samples=4", "eval.batch_size=4", "eval.every=0",
             "run.progress=false", "run.save_every=2"]
    base = [sys.executable, TRAIN, "--config", TINY, "--shards", str(shards), "--run-dir", str(run), *small]
    first = subprocess.run([*base, "--steps", "2"], env=subprocess_env(), capture_output=True, text=True, timeout=HANG_S)
    assert first.returncode == 0, first.stderr[-2000:]
    state = sorted((run / "states").glob("step-*"))[-1]
    marker = tmp_path / "payload-ran"
    booby_trap(state / trapped, marker)
    resumed = subprocess.run([*base, "--steps", "4", "--resume"], env=subprocess_env(), capture_output=True,
                             text=True, timeout=HANG_S)
    assert "Traceback" not in resumed.stderr
    assert not marker.exists()
    if trapped == "random_states_0.pkl":
        # The weights and the optimizer are whole: the run goes on, and says what it lost.
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        warning = " ".join(resumed.stderr.split())
        assert f"{state}: random states of rank 0 refused" in warning and "will not reproduce" in warning
        return
    assert resumed.returncode == 2
    last_line = resumed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and str(state) in last_line, resumed.stderr[-2000:]


def test_weights_of_another_architecture_are_not_exported_under_this_config(tmp_path):
    cfg = load_train_config(TINY)
    with pytest.raises(ValueError, match="architecture differs"):
        export_weights(SSLModel.from_preset("micro"), cfg, tmp_path / WEIGHTS)  # the seed layout, not tiny.yaml's
    assert not list(tmp_path.iterdir())
