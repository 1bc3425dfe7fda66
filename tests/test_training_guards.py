"""Training refuses what cannot work before any work (issue 20): config values that are not finite or too big,
a data path that cannot fit in memory, streams whose samples mostly fail, and shards of another setup. And it never
ends a run as if it had trained (issue 27): a run whose every step was skipped, or whose weights stopped being
finite, fails in one line and writes no model."""
import io
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from configs import ConfigError
from hang_guard import HANG_S
from run_helpers import TINY, TRAIN, assert_usage_names_the_command, small_shards, subprocess_env
from shards.files import iter_samples, tar_bytes
from simulate import generate_dataset
from ssl_model import SSLModel
from training import train
from training.data.batches import TrainData
from training.resume import check_resume_changes
from training.budget import check_memory, data_path_bytes
from training.checkpoint import export_weights
from training.config import load_train_config
from training.data.eval_set import fixed_eval_set
from training.data.markers import BAD_SAMPLE, BAD_SHARD, KEY, SAMPLES, SHARD_OK, failure, is_marker
from training.data.sources import DataError
from training.data.streams import Stream, expand_samples, mark_failures, raise_failures

FEW = ["data.num_workers=0", "data.rir_reservoir=12", "data.rir_refresh=2", "speech.reservoir=8", "speech.refresh=2",
       "run.batch_size=2", "data.min_shards_for_share=2", "data.verify_sha256=false"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return small_shards(tmp_path_factory, "guards", 16, 4, 2, 0.2)


@pytest.mark.parametrize("override, key", [
    ("run.batch_size=100000000", "run.batch_size"),
    ("data.max_rir_len=1000000000", "data.max_rir_len"),
    ("optim.lr=.inf", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"),
    ("optim.betas=[0.9, .nan]", "optim.betas"),
    ("optim.grad_clip=.inf", "optim.grad_clip"),
    ("data.max_fail_share=.nan", "data.max_fail_share"),
    ("run.max_skip_share=.nan", "run.max_skip_share"),
    ("eval.num_samples=100000000", "eval.num_samples"),
])
def test_values_that_cannot_work_are_refused_in_one_line(override, key):
    with pytest.raises(ConfigError) as err:
        load_train_config(TINY, [override])
    assert str(err.value).startswith(f"command line: {key}: ") and "\n" not in str(err.value)


def test_the_memory_estimate_grows_with_the_batch_and_refuses_what_cannot_fit():
    cfg = load_train_config(TINY)
    small, big = data_path_bytes(cfg), data_path_bytes(load_train_config(TINY, ["run.batch_size=32"]))
    assert big["batch mixing"] == 2 * small["batch mixing"]  # tiny.yaml has 16 mixtures a step
    assert big["reservoirs"] == small["reservoirs"]
    gib = 2 ** 30
    check_memory(cfg, host=16 * gib, device=None)  # the CPU demo fits in 16 GiB
    with pytest.raises(ConfigError, match=r"^run.batch_size=16, .* more than host RAM's 0.0 GiB"):
        check_memory(cfg, host=small["reservoirs"], device=None)
    with pytest.raises(ConfigError, match="more than the GPU's"):
        check_memory(cfg, host=16 * gib, device=small["reservoirs"])
    with pytest.raises(ConfigError, match="^eval.num_samples=64: "):
        check_memory(cfg, host=small["eval set"] - 1, device=16 * gib)


class Items:
    """A stand-in loader: iterating it yields the given stream items once."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


def test_a_stream_whose_samples_fail_stops_even_when_every_shard_opens():
    # Every shard opens and is read to its end, but all its samples but one are damaged.
    items = []
    for k in range(6):
        url = f"train-{k:06d}.tar"
        items += [failure(BAD_SAMPLE, f"{url}:s{j}", "ValueError: rir is not finite") for j in range(3)]
        items.append({SHARD_OK: url, SAMPLES: 0})
    items.insert(1, {KEY: "good", "rir": torch.zeros(2, 2, 4)})
    stream = Stream(Items(items), "train", max_fail_share=0.2, min_shards=2)
    with pytest.warns(RuntimeWarning):
        assert stream.next()[KEY] == "good"
        with pytest.raises(DataError, match=r"train samples failed .* > data.max_fail_share=0.2"):
            while True:
                stream.next()
    assert stream.counters()["train_bad_shards"] == 0  # the shard budget alone would have let it run


def test_a_stream_with_a_few_bad_samples_goes_on():
    items = []
    for k in range(6):
        url = f"train-{k:06d}.tar"
        items += [failure(BAD_SAMPLE, f"{url}:9", "bad")] + [{KEY: f"{url}:{j}"} for j in range(9)]
        items.append({SHARD_OK: url, SAMPLES: 9})
    stream = Stream(Items(items), "train", max_fail_share=0.2, min_shards=2)
    with pytest.warns(RuntimeWarning):
        assert len([stream.next() for _ in range(54)]) == 54
    assert stream.counters()["train_bad_samples"] == 6


def nan_copy(shard: Path, keep: int) -> None:
    """Rewrite a shard in place with a NaN in every RIR but the first `keep` ones (no sidecar update)."""
    members = []
    for index, (key, parts) in enumerate(iter_samples(shard.read_bytes(), str(shard))):
        for ext, data in parts.items():
            if ext == "rir.npy" and index >= keep:
                rir = np.load(io.BytesIO(data), allow_pickle=False).copy()
                rir[0, 0, 0] = np.nan
                buffer = io.BytesIO()
                np.save(buffer, rir, allow_pickle=False)
                data = buffer.getvalue()
            members.append((f"{key}.{ext}", data))
    shard.write_bytes(tar_bytes(members))


def test_every_sample_but_one_nan_stops_training_with_a_clear_error(shards, tmp_path):
    root = tmp_path / "nan"
    shutil.copytree(shards, root)
    for index, shard in enumerate(sorted((root / "train").glob("train-*.tar"))):
        nan_copy(shard, keep=1 if index == 0 else 0)
    data = TrainData(load_train_config(TINY, [f"data.shards={root}", *FEW]), 0, 1, torch.device("cpu"))
    with pytest.warns(RuntimeWarning, match="skipped damaged train sample"), \
            pytest.raises(DataError, match="train samples failed"):
        data.fill()
    data.close()


def test_a_later_shard_of_another_sample_rate_is_skipped_in_training_and_refused_in_eval(shards, tmp_path):
    root, other = tmp_path / "mixed", tmp_path / "other"
    shutil.copytree(shards, root)
    generate_dataset(other, splits={"train": 2, "eval": 2}, overrides=("shard_size=2", "rt60_range=[0.1,0.2]", "sr=8000"))
    odd = root / "train" / "train-000099.tar"  # sorts last: the first shard, checked before any model, is fine
    shutil.copy(other / "train" / "train-000000.tar", odd)
    odd_eval = root / "eval" / "eval-000099.tar"  # every eval scene is checked, not just the first
    shutil.copy(other / "eval" / "eval-000000.tar", odd_eval)
    with pytest.raises(DataError, match=f"eval shard .*{odd_eval.name}: eval-000000000: shards at 8000 Hz"):
        fixed_eval_set(load_train_config(TINY, [f"data.shards={root}", *FEW]))
    cfg = load_train_config(TINY, [f"data.shards={root}", *FEW, "data.max_fail_share=0.5"])
    data = TrainData(cfg, 0, 1, torch.device("cpu"))
    with pytest.warns(RuntimeWarning) as caught:
        data.fill()
        for step in range(20):
            data.refresh(step)
    named = [str(w.message) for w in caught if odd.name in str(w.message)]
    assert named and "8000 Hz" in named[0] and "skipped damaged train shard" in named[0]
    assert data.counters()["train_bad_shards"] == 1
    data.close()


def test_one_error_policy_marks_failures_in_streams_and_raises_them_in_the_eval_set():
    def decode(key, parts, url):
        if key == "b":
            raise ValueError("not finite")
        return {KEY: key, "url": url}

    good = [{"url": "u.tar", "data": tar_bytes([("a.x", b"1"), ("b.x", b"2")])}]
    broken = [{"url": "v.tar", "data": b"not a tar" * 200}]
    bad: set[str] = set()
    items = list(expand_samples(decode, mark_failures(bad))(good + broken))
    assert [item.get(KEY) for item in items if not is_marker(item)] == ["a"]
    assert failure(BAD_SAMPLE, "u.tar:b", "ValueError: not finite") in items and {SHARD_OK: "u.tar", SAMPLES: 1} in items
    assert any(item.get(BAD_SHARD) == "v.tar" for item in items) and bad == {"v.tar"}
    with pytest.raises(DataError, match="eval sample u.tar:b: ValueError: not finite"):
        list(expand_samples(decode, raise_failures("eval"))(good))
    with pytest.raises(DataError, match="eval shard v.tar: unreadable tar"):
        list(expand_samples(decode, raise_failures("eval"))(broken))


def train_run(shards: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    """training/train.py on tiny.yaml with a small data path, as a subprocess."""
    small = [*FEW, "eval.num_samples=4", "eval.batch_size=4", "run.progress=false"]
    return subprocess.run([sys.executable, TRAIN, "--config", TINY, "--shards", str(shards), "--run-dir", str(run),
                           *small, *extra], env=subprocess_env(), capture_output=True, text=True, timeout=HANG_S)


def overflowing_weights(path: Path) -> Path:
    """tiny.yaml weights that are finite (they load) but overflow float32 in the forward pass: every loss is NaN."""
    cfg = load_train_config(TINY)
    model = SSLModel(cfg.model)
    with torch.no_grad():
        model.patch_embed[1].weight.fill_(1e38)
    return export_weights(model, cfg, path)


@pytest.mark.slow
def test_a_run_whose_every_step_is_skipped_fails_and_writes_no_model(shards, tmp_path):
    run = tmp_path / "run"
    start = overflowing_weights(tmp_path / "overflow.safetensors")
    proc = train_run(shards, run, "-q", "--steps", "3", f"run.init_from={start}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    # -q: the error is all stderr holds (no notes, warnings or progress bar), on one line
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr[-3000:]
    assert "every one of the 3 steps had NaN/Inf" in proc.stderr and proc.stdout == ""
    assert not (run / "model.safetensors").exists() and not (run / "states").exists()


@pytest.mark.slow
def test_weights_that_turn_non_finite_stop_the_run_and_keep_the_last_good_ones(shards, tmp_path):
    run = tmp_path / "run"
    first = train_run(shards, run, "--steps", "2", "run.save_every=2")
    assert first.returncode == 0, first.stderr[-3000:]
    good = (run / "model.safetensors").read_bytes()
    state = run / "states" / "step-00000002"
    tensors = load_file(str(state / "model.safetensors"))
    tensors["head.bias"][0] = math.nan  # the state's weights go bad (as a diverging optimizer step would make them)
    save_file(tensors, str(state / "model.safetensors"), metadata={"format": "pt"})
    resumed = train_run(shards, run, "--steps", "4", "--resume")
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    last = resumed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: step 4: the weights are not finite (head.bias: 1 NaN"), resumed.stderr[-3000:]
    assert (run / "model.safetensors").read_bytes() == good  # nothing already written is lost
    assert sorted(p.name for p in (run / "states").iterdir()) == ["step-00000002"]


def test_the_guards_name_what_went_wrong():
    cfg = load_train_config(TINY, ["run.steps=3"])
    train.check_skip_budget(train.Progress(step=2, skipped=2), cfg)  # not over yet
    train.check_skip_budget(train.Progress(step=3, skipped=2), cfg)  # one step trained: the share rule decides
    with pytest.raises(train.TrainingError, match="every one of the 3 steps"):
        train.check_skip_budget(train.Progress(step=3, skipped=3), cfg)
    model = SSLModel(cfg.model)
    train.check_weights(model, 3)
    with torch.no_grad():
        model.inter_conv[1].running_var[2] = math.inf  # a buffer counts too: eval-mode outputs read it
    with pytest.raises(train.TrainingError, match=r"^step 3: .*inter_conv.1.running_var: 0 NaN and 1 Inf of 8"):
        train.check_weights(model, 3)


def test_init_partial_may_change_on_resume_as_init_from_may():
    saved = load_train_config(TINY)
    asked = load_train_config(TINY, ["run.init_partial=[cls_tokens]", "run.init_from=runs/x"])
    changes = check_resume_changes(saved, asked, Path("config.yaml"))
    assert changes == {"run.init_from": ("", "runs/x"), "run.init_partial": ([], ["cls_tokens"])}
    with pytest.raises(ConfigError, match="model.dim"):
        check_resume_changes(saved, load_train_config(TINY, ["run.init_partial=[cls_tokens]", "model.dim=32"]),
                             Path("config.yaml"))


def test_train_takes_q_and_v_and_its_usage_names_the_command_run(monkeypatch, capsys):
    assert train.parse_args(["-q", "--steps", "3"]).quiet and train.parse_args(["-vv"]).verbose == 2
    with pytest.raises(SystemExit):
        train.parse_args(["-q", "-v"])
    capsys.readouterr()
    assert_usage_names_the_command("training.train", "ssl-train", train.parse_args, monkeypatch, capsys)
