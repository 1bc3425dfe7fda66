"""Launching training: both `accelerate launch` forms through the shipped config, the precision rule,
one process per GPU, trackers, and --resume without a saved state."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from configs import ConfigError
from training.config import load_train_config
from training.launch import all_gpus_command, resolve_mixed_precision, trackers

from hang_guard import HANG_S
from run_helpers import ROOT, TINY, TRAIN, records, small_shards, subprocess_env

STEPS2 = ["--steps", "2", "data.num_workers=1", "data.rir_reservoir=8", "data.rir_refresh=2", "speech.reservoir=16",
          "speech.refresh=4", "run.batch_size=4", "eval.num_samples=4", "eval.batch_size=4", "run.progress=false"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return small_shards(tmp_path_factory, "shards", 8, 4, 2, 0.2)


@pytest.mark.parametrize("env, cuda, want", [
    ({"ACCELERATE_MIXED_PRECISION": "no"}, True, ("no", "accelerate launch")),
    ({"ACCELERATE_MIXED_PRECISION": "bf16"}, False, ("bf16", "accelerate launch")),
    ({}, True, ("bf16", "run.mixed_precision=auto")),
    ({}, False, ("no", "run.mixed_precision=auto")),
    ({"ACCELERATE_USE_CPU": "true"}, True, ("no", "run.mixed_precision=auto")),
])
def test_a_precision_asked_of_accelerate_wins(env, cuda, want):
    assert resolve_mixed_precision(load_train_config(TINY), env, cuda) == want
    explicit = load_train_config(TINY, ["run.mixed_precision=fp16"])
    got = resolve_mixed_precision(explicit, env, cuda)
    assert got == (want if "ACCELERATE_MIXED_PRECISION" in env else ("fp16", "run.mixed_precision"))


def test_one_process_per_gpu_only_where_accelerate_started_one_on_several_gpus():
    alone = {"ACCELERATE_MIXED_PRECISION": "bf16", "ACCELERATE_USE_CPU": "False"}
    cmd = all_gpus_command(["--config", "c.yaml", "x=1"], alone, 4)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert cmd[5].endswith("training/train.py") and cmd[6:] == ["--config", "c.yaml", "x=1"]
    assert all_gpus_command([], alone, 1) is None  # one GPU: stay
    assert all_gpus_command([], {}, 8) is None  # plain python: one process, as asked
    assert all_gpus_command([], {**alone, "LOCAL_RANK": "0"}, 8) is None  # already one of several
    assert all_gpus_command([], {**alone, "ACCELERATE_USE_CPU": "true"}, 8) is None


def test_trackers_are_checked_by_name_and_installation():
    assert trackers(load_train_config(TINY)) == ["tensorboard"]
    assert trackers(load_train_config(TINY, ["run.log_with=none"])) == []
    with pytest.raises(ConfigError, match="run.log_with: unknown tracker 'tensorbored'"):
        trackers(load_train_config(TINY, ["run.log_with=tensorbored"]))


def test_resume_without_a_saved_state_refuses_and_creates_nothing(tmp_path, shards):
    for run in (tmp_path / "never", tmp_path / "empty"):
        if run.name == "empty":
            run.mkdir()
            (run / "config.yaml").write_text(Path(TINY).read_text())  # a run folder, but no saved state
        before = sorted(tmp_path.rglob("*"))
        proc = subprocess.run([sys.executable, TRAIN, "--run-dir", str(run), "--shards", str(shards), "--resume"],
                              env=subprocess_env(), capture_output=True, text=True, timeout=HANG_S)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --resume: "), proc.stderr
        assert "nothing to resume" in lines[0]
        assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.parametrize("form", ["plain", "config_file", "module"])
def test_every_launch_form_runs_on_the_cpu_and_says_where_the_run_is(form, shards, tmp_path):
    run = tmp_path / "run"
    launch = {"plain": [sys.executable, "-m", "accelerate.commands.launch", TRAIN],
              "config_file": [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                              str(ROOT / "accelerate_config.yaml"), TRAIN],
              "module": [sys.executable, "-m", "training.train"]}[form]
    # An empty HF_HOME: no default accelerate config of this machine's user leaks in.
    env = {**subprocess_env(), "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([*launch, "--config", TINY, "--shards", str(shards), "--run-dir", str(run), *STEPS2],
                          env=env, capture_output=True, text=True, timeout=HANG_S, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == (f"trained 2 steps: weights {run / 'model.safetensors'}, run {run} "
                                                   f"(config.yaml, metrics.jsonl, tb/, states/)")
    start, end = records(run)[0], records(run)[-1]
    assert start["world_size"] == 1
    # The shipped file asks for bf16 and gets it; the plain form gets accelerate's default, fp32; without
    # accelerate launch, run.mixed_precision=auto decides (fp32 on the CPU).
    assert (start["mixed_precision"], start["mixed_precision_from"]) == {
        "plain": ("no", "accelerate launch"), "config_file": ("bf16", "accelerate launch"),
        "module": ("no", "run.mixed_precision=auto")}[form]
    assert end == {"event": "end", "step": 2, "skipped_steps": 0}
    assert list((run / "tb").rglob("events.out.tfevents.*"))
