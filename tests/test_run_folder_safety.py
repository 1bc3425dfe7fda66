"""A file someone hands you never runs a command, and nothing a user made is overwritten, mixed or deleted
(issue 33, parts 1 and 2): `pipe:` locations run only when typed on the command line, no command is derived from
another, a run folder holding a run is refused without --resume or --overwrite, one trainer at a time writes a
folder, --resume checks the config the run was started with, temporary names are only this program's, and full or
read-only disks are one line with nothing half-written."""
import errno
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

import training.train as train_module
from configs import config_to_dict
from hang_guard import HANG_S
from run_helpers import ROOT, TINY, small_shards, subprocess_env
from simulate.speech import pack_speech
from ssl_model import SSLModel
from training.checkpoint import CONFIG, WEIGHTS, export_weights
from training.config import dump_config, load_train_config
from training.data.streams import read_checked
from training.eval import evaluate
from training.resume import drop_records_after
from training.run_folder import claim_run_folder
from training.train import main

FEW = ["data.num_workers=0", "data.rir_reservoir=12", "data.rir_refresh=2", "speech.reservoir=8", "speech.refresh=2",
       "run.batch_size=2", "data.verify_sha256=false", "eval.num_samples=4", "run.progress=false"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return small_shards(tmp_path_factory, "run_folder", 8, 4, 2)


def fake_run(run, step=2, overrides=(), stored=None):
    """A run folder with config.yaml and one complete (empty) saved state whose trainer state stores the config
    the run was started with (`stored`, else config.yaml's): enough for every check before any model."""
    cfg = load_train_config(TINY, [f"run.dir={run}", *overrides])
    state = run / "states" / f"step-{step:08d}"
    state.mkdir(parents=True)
    started = config_to_dict(stored if stored is not None else cfg)
    (state / "trainer_state.json").write_text(json.dumps({"step": step, "skipped_steps": 0, "world_size": 1,
                                                          "config": started}))
    dump_config(cfg, run / CONFIG)
    return cfg


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def files(folder):
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------- 1. commands


def test_a_pipe_command_in_a_run_folders_config_never_runs_on_resume(shards, tmp_path, capsys):
    marker = tmp_path / "PWN"
    run = tmp_path / "run"
    fake_run(run, overrides=[f"data.shards={shards}", *FEW,
                             f"data.train_glob=pipe:touch {marker}; cat {shards}/train/train-000000.tar"])
    assert main(["--run-dir", str(run), "--resume"]) == 2
    line = one_error_line(capsys)
    assert "data.train_glob=" in line and "shell command (pipe:)" in line and str(run / CONFIG) in line
    assert "--allow-commands" in line and not marker.exists()


def test_a_pipe_command_in_a_run_folders_config_never_runs_in_evaluate(shards, tmp_path, capsys):
    marker = tmp_path / "PWN"
    run = tmp_path / "run"
    cfg = fake_run(run, overrides=[f"data.shards={shards}",
                                   f"data.eval_glob=pipe:touch {marker}; cat {shards}/eval/eval-000000.tar"])
    export_weights(SSLModel(cfg.model), cfg, run / WEIGHTS)
    assert evaluate.main(["--run", str(run), "--no-progress", "--device", "cpu"]) == 2
    line = one_error_line(capsys)
    assert "data.eval_glob=" in line and "shell command (pipe:)" in line and not marker.exists()


def test_a_typed_pipe_command_is_never_rewritten_into_new_commands(shards, tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    url = f"pipe:cat {shards}/train/train-000000.tar | tee {out}/out.tar"
    data, checked = read_checked(url, verify=True)
    assert data == (shards / "train" / "train-000000.tar").read_bytes() and not checked
    assert sorted(p.name for p in out.iterdir()) == ["out.tar"]  # no out.json, no manifest.json


def test_a_typed_pipe_command_passes_and_a_config_files_needs_the_flag(shards, tmp_path, capsys):
    config = tmp_path / "with_pipe.yaml"
    dump_config(load_train_config(TINY, [f"data.train_glob=pipe:cat {shards}/train/train-000000.tar"]), config)
    assert main(["--config", str(config), "--run-dir", str(tmp_path / "run"), *FEW]) == 2
    assert f"comes from {config}" in one_error_line(capsys)
    typed = train_module.parse_args(["--config", TINY, f"data.train_glob=pipe:cat {shards}/train/train-000000.tar"])
    assert train_module.resolve_config(typed).data.train_glob.startswith("pipe:")
    flagged = train_module.parse_args(["--config", str(config), "--allow-commands"])
    assert train_module.resolve_config(flagged).data.train_glob.startswith("pipe:")


# ------------------------------------------------------------------------------------- 2. run folders


def new_run_args(shards, run):
    return ["--config", TINY, "--shards", str(shards), "--run-dir", str(run), "--steps", "1", *FEW]


def test_a_new_run_refuses_a_folder_that_holds_a_run(shards, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / CONFIG).write_text("old: run\n")
    (run / WEIGHTS).write_bytes(b"the old model")
    before = files(run)
    monkeypatch.setattr(train_module, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    assert main(new_run_args(shards, run)) == 2
    line = one_error_line(capsys)
    assert f"run.dir {run}: already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert files(run) == before


def test_overwrite_removes_only_the_old_runs_files(tmp_path):
    run = tmp_path / "run"
    (run / "states" / "step-00000002").mkdir(parents=True)
    (run / CONFIG).write_text("old: run\n")
    (run / "notes.txt").write_text("the user's own")
    handle = claim_run_folder(run, resume=False, overwrite=True)
    handle.close()
    assert sorted(p.name for p in run.iterdir()) == [".lock", "notes.txt"]


def test_a_second_trainer_on_one_run_folder_is_refused(shards, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    holder = claim_run_folder(run, resume=False, overwrite=False)  # a trainer already writing it
    try:
        monkeypatch.setattr(train_module, "build_model", lambda *a, **k: pytest.fail("a model was built"))
        assert main(new_run_args(shards, run)) == 2
        line = one_error_line(capsys)
        assert "another trainer is writing this run folder" in line and f"pid {os.getpid()}" in line
    finally:
        holder.close()
    assert sorted(p.name for p in run.iterdir()) == [".lock"]


def test_a_read_only_run_folder_is_one_line_before_any_model(shards, tmp_path, capsys, monkeypatch):
    def read_only(fd):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "fsync", read_only)  # every write is refused as a read-only mount refuses it
    monkeypatch.setattr(train_module, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    assert main(new_run_args(shards, tmp_path / "run")) == 2
    assert "cannot write there (Read-only file system)" in one_error_line(capsys)


def test_resume_refuses_an_edited_config_yaml_naming_the_key(tmp_path, capsys):
    run = tmp_path / "run"
    started = load_train_config(TINY, [f"run.dir={run}"])
    fake_run(run, overrides=["optim.lr=0.5"], stored=started)  # config.yaml edited after the run started
    before = files(run)
    assert main(["--run-dir", str(run), "--resume"]) == 2
    line = one_error_line(capsys)
    assert "optim.lr: 0.002 -> 0.5" in line and files(run) == before


def test_resume_of_a_finished_run_says_there_is_nothing_to_do(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    fake_run(run, step=3, overrides=["run.steps=3"])
    before = files(run)
    monkeypatch.setattr(train_module, "check_sources", lambda *a, **k: pytest.fail("the data was read"))
    assert main(["--run-dir", str(run), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "already trained 3 of run.steps=3 steps, nothing to do" in out and "trained 3 steps:" not in out
    assert files(run) == before


@pytest.mark.parametrize("value", ["Infinity", '"later"', "-1", "2.5"])
def test_a_non_finite_or_invalid_step_in_trainer_state_is_one_line(value, tmp_path, capsys):
    run = tmp_path / "run"
    fake_run(run)
    state = run / "states" / "step-00000002" / "trainer_state.json"
    state.write_text(state.read_text().replace('"step": 2', f'"step": {value}'))
    assert main(["--run-dir", str(run), "--resume"]) == 2
    line = one_error_line(capsys)
    assert str(state) in line and "step" in line


def test_a_metrics_line_with_an_invalid_step_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "start", "step": 0}\n{"event": "train", "step": "later"}\n'
                    '{"event": "train", "step": Infinity}\n{"event": "train", "step": 5}\n')
    with pytest.warns(RuntimeWarning, match="line 2, 3"):
        assert drop_records_after(path, 4) == 3
    assert path.read_text() == '{"event": "start", "step": 0}\n'


def test_the_speech_packer_never_deletes_a_users_tmp_named_files(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    soundfile.write(audio / "a.wav", np.random.default_rng(0).uniform(-0.5, 0.5, 16000), 16000)
    out = tmp_path / "out"
    out.mkdir()
    mine = [out / "photos.tar.tmp-2024-01-05", out / "notes.tmp-old-1"]
    for path in mine:
        path.write_text("the user's")
        os.utime(path, (time.time() - 7200, time.time() - 7200))  # older than the stale-temp hour
    pack_speech(audio, out)
    assert all(path.read_text() == "the user's" for path in mine)


SAVE_UNDER_A_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
import torch
from accelerate import Accelerator
from training.checkpoint import CheckpointError, save_training_state
run = Path(sys.argv[1])
accelerator = Accelerator(cpu=True)
model, optimizer = accelerator.prepare(torch.nn.Linear(256, 256), torch.optim.AdamW(torch.nn.Linear(1, 1).parameters()))
save_training_state(accelerator, run, 1, {"skipped_steps": 0}, keep=3)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, resource.RLIM_INFINITY))  # files stop growing at 64 kB
try:
    save_training_state(accelerator, run, 2, {"skipped_steps": 0}, keep=3)
except CheckpointError as err:
    print(err)
"""


def test_a_full_disk_while_saving_a_state_is_one_line_and_leaves_nothing_half_written(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", SAVE_UNDER_A_FULL_DISK, str(run)], env=subprocess_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "cannot save the state of step 2" in lines[0] and "nothing half-written" in lines[0]
    assert sorted(p.name for p in (run / "states").iterdir()) == ["step-00000001"]  # the last complete state


def test_help_texts_say_what_the_tools_do():
    description = train_module.__doc__.split("\n\n")[0]  # what ssl-train --help says first
    assert "0-3" in description and "two-source" not in description
    help_text = subprocess.run([sys.executable, "-m", "training.eval.evaluate", "--help"], env=subprocess_env(),
                               cwd=ROOT, capture_output=True, text=True, timeout=HANG_S).stdout
    device_help = " ".join(help_text.split("\n  --device DEVICE", 1)[1].split("\n  --", 1)[0].split())
    assert "cpu, cuda or cuda:N" in device_help
