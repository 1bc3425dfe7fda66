"""End-to-end training runs on the CPU: two real ranks, SIGKILL + --resume, and tiny.yaml learning."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from simulate import generate_dataset

from hang_guard import HANG_S
from run_helpers import ROOT, TINY, TRAIN, records, small_shards, subprocess_env as env
SMALL = ["data.num_workers=1", "data.rir_reservoir=16", "data.rir_refresh=2", "speech.reservoir=32",
         "speech.refresh=8", "run.batch_size=8", "eval.num_samples=16", "eval.batch_size=8", "run.progress=false"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return small_shards(tmp_path_factory, "shards", 32, 16, 4, 0.3)


@pytest.mark.slow
def test_two_rank_cpu_run_finishes_with_both_ranks_at_the_same_step(shards, tmp_path):
    run = tmp_path / "run2"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           TRAIN, "--config", TINY, "--shards", str(shards), "--run-dir", str(run), "--steps", "6",
           "eval.every=3", "run.save_every=3", "run.log_every=3", *SMALL]
    proc = subprocess.run(cmd, env={**env(), "ACCELERATE_USE_CPU": "true"}, capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records(run)
    assert recs[0]["event"] == "start" and recs[0]["world_size"] == 2
    markers = [json.loads((run / "ranks" / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [m["rank"] for m in markers] == [0, 1]
    assert markers[0]["pid"] != markers[1]["pid"]
    assert markers[0]["step"] == markers[1]["step"] == 6
    evals = [r for r in recs if r["event"] == "eval"]
    assert [e["step"] for e in evals] == [3, 6] and all(e["count"] == 16 for e in evals)  # sums reduced once
    assert (run / "states" / "step-00000006" / "random_states_1.pkl").is_file()


def trajectory(run: Path) -> list[tuple]:
    """The run's train and eval records without their timings: what a resume must reproduce."""
    return [(r["event"], r["step"], {k: v for k, v in r.items() if k not in ("samples_per_s", "event", "step")})
            for r in records(run) if r["event"] in ("train", "eval")]


@pytest.mark.slow
def test_sigkill_then_resume_reproduces_the_uninterrupted_run(shards, tmp_path):
    run, clean = tmp_path / "run", tmp_path / "clean"
    common = ["--config", TINY, "--shards", str(shards), "--steps", "40", "run.save_every=10", "run.log_every=5",
              "eval.every=20", *SMALL]
    base = [sys.executable, TRAIN, "--run-dir", str(run), *common]
    # The trainer's test hook: SIGKILL inside the save of step 30 (its state folder still a .tmp), so the
    # newest complete state is step 20.
    killed = subprocess.run(base, env={**env(), "SSL_TEST_KILL_AT": "save:30"}, capture_output=True, text=True,
                            timeout=HANG_S, start_new_session=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (run / "states" / "step-00000030.tmp").is_dir()
    saved = sorted(p.name for p in (run / "states").glob("step-*") if (p / "trainer_state.json").exists())
    assert saved[-1] == "step-00000020"
    assert max(r["step"] for r in records(run)) == 30  # logged past the state it will resume from
    resumed_at = 20
    # The saved optimizer state loads without unpickling arbitrary objects.
    opt = torch.load(run / "states" / saved[-1] / "optimizer.bin", weights_only=True)
    assert int(next(iter(opt["state"].values()))["step"]) == resumed_at

    proc = subprocess.run(base + ["--resume"], env=env(), capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == (f"trained 40 steps: weights {run / 'model.safetensors'}, "
                                                   f"run {run} (config.yaml, metrics.jsonl, tb/, states/)")
    starts = [r for r in records(run) if r["event"] == "start"]
    assert starts[-1]["step"] == resumed_at and starts[-1]["resumed_from"].endswith(saved[-1])
    assert starts[-1]["optimizer_state_steps"] == resumed_at  # AdamW moments came back with the state
    marker = json.loads((run / "ranks" / "rank-0.json").read_text())
    assert marker["step"] == 40 and marker["steps_run"] == 40 - resumed_at
    assert records(run)[-1] == {"event": "end", "step": 40, "skipped_steps": 0}

    # The same run without the crash: the resumed run's every logged number and its weights match it.
    proc = subprocess.run([sys.executable, TRAIN, "--run-dir", str(clean), *common], env=env(), capture_output=True,
                          text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = trajectory(run), trajectory(clean)
    assert [(e, s) for e, s, _ in got] == [(e, s) for e, s, _ in want]  # no duplicate records past step 20
    for (_, step, a), (_, _, b) in zip(got, want):
        assert a.keys() == b.keys()
        for key in a:
            want_value = pytest.approx(b[key], rel=1e-5, abs=1e-6) if isinstance(b[key], float) else b[key]
            assert a[key] == want_value, (step, key)
    weights, reference = load_file(str(run / "model.safetensors")), load_file(str(clean / "model.safetensors"))
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_tiny_config_learns_the_lateral_angle_on_cpu(tmp_path):
    shards, run = tmp_path / "shards", tmp_path / "tiny"
    generate_dataset(shards, splits={"train": 256, "eval": 64}, overrides=("shard_size=16",))
    t0 = time.time()
    # The work is bounded (300 steps); the timeout only guards against a hang, whatever the machine's load.
    proc = subprocess.run([sys.executable, TRAIN, "--config", TINY, "--shards", str(shards), "--run-dir", str(run),
                           "--steps", "300", "eval.every=300", "eval.num_samples=64", "run.progress=false"],
                          env=env(), capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = [r for r in records(run) if r["event"] == "eval"][-1]
    print(f"tiny: {final['step']} steps in {time.time() - t0:.0f} s, lateral binned MAE "
          f"{final['binned_mae_deg']:.1f} deg vs chance {final['chance_binned_mae_deg']:.1f} deg")
    assert final["target"] == "lateral"
    # measured on the 2-core CI-like machine with 1.31 s clips: 14.9 vs 35.7 deg (0.42x chance)
    assert final["binned_mae_deg"] < 0.55 * final["chance_binned_mae_deg"]
    from training.checkpoint import load_run
    model, cfg = load_run(run)
    assert not model.training and cfg.target == "lateral"
    assert model(torch.zeros(1, 2, cfg.clip_samples)).shape == (1, 2, 36)
