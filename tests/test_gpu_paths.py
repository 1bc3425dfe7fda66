"""CUDA paths beside the CPU's (issue 19): device mixing and the batch builder give the CPU's mixtures for the same
draws, a bf16 training step, and a bf16 run on CUDA that resumes at the step it saved.

Skipped without CUDA (tests/conftest.py). Simulate on CUDA == CPU is tests/test_simulate_gpu.py; the model's
autocast and torch.compile on CUDA are in tests/test_model.py. benchmarks/gpu_check.sh runs them all.
"""
import math
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from hang_guard import HANG_S
from run_helpers import TINY, TRAIN, records, small_shards, subprocess_env
from ssl_model import SSLModel
from training.data.batches import TrainData
from training.config import MixConfig, load_train_config
from training.data.mixtures import MixRecipe, Mixtures, make_mixtures
from training.train import batch_loss

pytestmark = pytest.mark.gpu

DEVICE = torch.device("cuda")
SR, HOP, C = 16000, 160, 340.0
# Every stage of the mixing on: talkers that come and go, gains, diffuse noise of each kind, per-mic gain and
# latency mismatch, sensor noise, peak normalization.
FULL_MIX = MixConfig(gain_db=(-6.0, 6.0), mic_gain_db=2.0, mic_latency=1.5, noise_prob=0.5, diffuse_prob=0.7,
                     talker_probs=(0.1, 0.3, 0.6), partial_prob=0.5, normalize="peak")
FULL_MIX_KEYS = ["mix.gain_db=[-6,6]", "mix.mic_gain_db=2", "mix.mic_latency=1.5", "mix.noise_prob=0.5",
                 "mix.diffuse_prob=0.7", "mix.talker_probs=[0.1,0.3,0.6]", "mix.partial_prob=0.5"]
SMALL = ["data.num_workers=1", "data.rir_reservoir=16", "data.rir_refresh=2", "speech.reservoir=32",
         "speech.refresh=8", "run.batch_size=8", "eval.num_samples=16", "eval.batch_size=8", "run.progress=false"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return small_shards(tmp_path_factory, "gpu_shards", 32, 16, 4, 0.3)


def tiny(shards, *extra: str):
    return load_train_config(TINY, [f"data.shards={shards}", "data.num_workers=0", "data.rir_reservoir=16",
                                    "speech.reservoir=32", "speech.refresh=8", "run.batch_size=8", *extra])


def scene_batch(B: int = 32, S: int = 2, T: int = SR, L: int = 4000, seed: int = 0):
    """Random dry speech of random levels, decaying random RIRs, angles and spacings, on the CPU."""
    g = torch.Generator().manual_seed(seed)
    speech = torch.randn(B, S, T, generator=g) * torch.rand(B, S, 1, generator=g)
    rir = torch.randn(B, 2, S, L, generator=g) * torch.exp(-torch.arange(L) / 800.0)
    angles = torch.rand(B, S, generator=g) * 180
    spacing = 0.06 + 0.1 * torch.rand(B, generator=g)
    return speech, rir, angles, spacing


def assert_same_mixtures(got: Mixtures, want: Mixtures) -> None:
    """The same mixtures up to float rounding (cuFFT against pocketfft, reduction order). A talker's activity is a
    threshold on frame power, so a frame sitting on it may flip; the labels are allowed that and nothing more."""
    got = got.to("cpu")
    assert got.wave.shape == want.wave.shape
    torch.testing.assert_close(got.wave, want.wave, rtol=0, atol=1e-4 * want.wave.abs().max().item())
    assert torch.equal(got.talker_angles, want.talker_angles) and torch.equal(got.spacing, want.spacing)
    assert (got.talker_activity != want.talker_activity).float().mean() < 1e-3
    same = got.count == want.count
    assert same.sum() >= len(same) - 1, (got.count, want.count)
    torch.testing.assert_close(got.angles[same], want.angles[same], equal_nan=True)


def test_device_mixing_on_cuda_equals_the_cpu():
    speech, rir, angles, spacing = scene_batch()
    want = make_mixtures(speech, rir, angles, spacing, MixRecipe(FULL_MIX, SR, HOP, C),
                         torch.Generator().manual_seed(7))
    # The draws come from a CPU generator and move to the device: the same numbers wherever the mixing runs.
    got = make_mixtures(speech.to(DEVICE), rir.to(DEVICE), angles.to(DEVICE), spacing.to(DEVICE),
                        MixRecipe(FULL_MIX, SR, HOP, C), torch.Generator().manual_seed(7))
    assert got.wave.device.type == DEVICE.type
    assert_same_mixtures(got, want)
    assert (want.count < 2).any() and (want.count == 2).any()  # the talker draws varied


def test_the_batch_builder_on_cuda_equals_the_cpu_for_the_same_reservoirs_and_draws(shards):
    cfg = tiny(shards, *FULL_MIX_KEYS)
    cpu = TrainData(cfg, 0, 1, torch.device("cpu"))
    cpu.fill()
    cpu.refresh(0)
    gpu = TrainData(cfg, 0, 1, DEVICE)
    gpu.load_state(*cpu.state(), where="the CPU builder's state")  # the same reservoirs, on the device
    assert gpu.scenes.rir.device.type == DEVICE.type and torch.equal(gpu.scenes.rir.cpu(), cpu.scenes.rir)
    gpu.generator = torch.Generator()  # the batch's draws from a CPU generator, as on the CPU builder
    for step in (1, 5):
        assert_same_mixtures(gpu.batch(step), cpu.batch(step))
    cpu.close()
    gpu.close()


def ready_data(cfg) -> TrainData:
    """A batch builder on the device, reservoirs filled and refreshed for step 0."""
    data = TrainData(cfg, 0, 1, DEVICE)
    data.fill()
    data.refresh(0)
    return data


def test_the_batch_builder_mixes_on_cuda_from_its_own_generator(shards):
    cfg = tiny(shards)
    data = ready_data(cfg)
    batch = data.batch(3)
    assert batch.wave.device.type == DEVICE.type and batch.wave.shape == (8, 2, cfg.clip_samples)
    assert torch.isfinite(batch.wave).all()
    assert torch.allclose(batch.wave.abs().amax(dim=(1, 2)).cpu(), torch.full((8,), 0.9))
    assert torch.equal(batch.wave, data.batch(3).wave)  # a batch is a function of (seed, step, rank) here too
    data.close()


def test_a_bf16_training_step_on_cuda_is_finite_and_moves_the_weights(shards):
    cfg = tiny(shards)
    data = ready_data(cfg)
    torch.manual_seed(0)
    model = SSLModel(cfg.model).to(DEVICE).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, fused=DEVICE.type == "cuda")
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        loss, bad = batch_loss(model, data.batch(0), cfg)  # the trainer's forward and objective
    assert torch.isfinite(loss) and not bad
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert math.isfinite(float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)))
    optimizer.step()
    moved = [name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])]
    assert len(moved) == len(grads), "every parameter with a gradient is updated"
    data.close()


def run_training(shards, run, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, TRAIN, "--config", TINY, "--shards", str(shards), "--run-dir", str(run), "--steps", "6",
           "run.save_every=3", "run.log_every=1", "eval.every=3", "run.mixed_precision=bf16", *SMALL, *extra]
    env = subprocess_env() if kill_at is None else {**subprocess_env(), "SSL_TEST_KILL_AT": kill_at}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_S,
                          start_new_session=kill_at is not None)


def test_a_bf16_run_on_cuda_resumes_at_the_step_it_saved(shards, tmp_path):
    run, clean = tmp_path / "run", tmp_path / "clean"
    killed = run_training(shards, run, kill_at="step:5")  # SIGKILL after step 5; the newest state is step 3
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    start = records(run)[0]
    assert start["device"].startswith(DEVICE.type) and start["mixed_precision"] == "bf16"
    proc = run_training(shards, run, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = [r for r in records(run) if r["event"] == "start"][-1]
    assert resumed["step"] == 3 and resumed["resumed_from"].endswith("step-00000003")
    assert resumed["optimizer_state_steps"] == 3 and resumed["device"].startswith(DEVICE.type)
    losses = {r["step"]: r["loss"] for r in records(run) if r["event"] == "train"}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6] and all(math.isfinite(v) for v in losses.values())
    assert records(run)[-1] == {"event": "end", "step": 6, "skipped_steps": 0}

    # The uninterrupted run: the same data and weights at step 3, so the resumed steps match it up to the
    # run-to-run spread of CUDA kernels (not bit-reproducible) in bf16.
    proc = run_training(shards, clean)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = {r["step"]: r["loss"] for r in records(clean) if r["event"] == "train"}
    for step in (4, 5, 6):
        assert losses[step] == pytest.approx(want[step], rel=2e-2), step
    weights, reference = load_file(str(run / "model.safetensors")), load_file(str(clean / "model.safetensors"))
    for name, value in reference.items():
        torch.testing.assert_close(weights[name].float(), value.float(), rtol=2e-2, atol=2e-3)
