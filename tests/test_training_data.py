"""Shard streaming, reservoirs, targets from shard metadata, the fixed eval set, config and shard errors."""
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from configs import ConfigError
from hang_guard import HANG_S
from run_helpers import small_shards
from simulate import generate_dataset
from training.data.batches import TrainData
from training.config import load_train_config
from training.data.eval_set import fixed_eval_set, read_split_in_order
from training.data.reservoirs import SceneReservoir, SpeechReservoir
from training.data.sources import DataError, check_enough_shards, resolve_shards

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return small_shards(tmp_path_factory, "shards", 24, 12, 4, 0.3)


def tiny(shards, *overrides):
    return load_train_config(TINY, [f"data.shards={shards}", *overrides])


def test_targets_from_metadata_match_geometry(shards):
    cfg = tiny(shards)
    scenes = read_split_in_order(resolve_shards(cfg, "train"), cfg.data.max_rir_len, True)
    assert len(scenes) == 24
    for scene in scenes:
        meta = json.loads(scene["meta"])
        center = np.array(meta["array_pos"])
        axis = np.array(meta["mic_pos"][1]) - np.array(meta["mic_pos"][0])
        for s, src in enumerate(meta["src_pos"]):
            d = np.array(src) - center
            lateral = math.degrees(math.acos(np.dot(d, axis) / np.linalg.norm(d) / np.linalg.norm(axis)))
            azimuth = abs(math.degrees(math.atan2(d[1], d[0])))
            assert scene["angles"][1, s].item() == pytest.approx(lateral, abs=1e-3)
            assert scene["angles"][0, s].item() == pytest.approx(azimuth, abs=1e-3)
        assert scene["rir"].dtype == torch.float32 and scene["rir"].shape[:2] == (2, 2)


def test_stream_fills_reservoirs_and_mixes_a_batch(shards):
    cfg = tiny(shards, "data.num_workers=0", "data.rir_reservoir=8", "speech.reservoir=8", "speech.refresh=4",
               "run.batch_size=5")
    data = TrainData(cfg, rank=0, world_size=1, device=torch.device("cpu"))
    data.fill()
    assert data.scenes.count == 8 and data.speech.count == 8
    data.refresh(0)
    batch = data.batch(3)
    wave, angles = batch.wave, batch.angles
    assert wave.shape == (5, 2, cfg.clip_samples) and torch.isfinite(wave).all()
    assert torch.allclose(wave.abs().amax(dim=(1, 2)), torch.full((5,), 0.9))
    assert (angles[:, 0] <= angles[:, 1]).all() and angles.min() >= 0 and angles.max() <= 180
    again = data.batch(3).wave
    assert torch.equal(wave, again)  # batch randomness is a function of (seed, step, rank)
    assert data.counters()["train_bad_shards"] == 0
    data.close()


def test_reservoirs_replace_after_full():
    res = SceneReservoir(4, 2, 2, 10, torch.device("cpu"))
    rng = random.Random(0)
    scenes = [{"rir": torch.full((2, 2, 6), float(i)), "angles": torch.full((2, 2), float(i))} for i in range(6)]
    res.put(scenes, rng)
    assert res.count == 4 and res.rir[:, 0, 0, 7].eq(0).all()  # padded
    rir, angles, _ = res.sample(32, torch.Generator().manual_seed(0))
    assert rir.shape == (32, 2, 2, 10) and angles.shape == (32, 2, 2)
    sp = SpeechReservoir(3, 16, torch.device("cpu"))
    sp.put(torch.arange(3.0)[:, None].expand(3, 16), rng)
    picked = sp.sample(10, 2, torch.Generator().manual_seed(0))
    assert picked.shape == (10, 2, 16) and (picked[:, 0, 0] != picked[:, 1, 0]).all()


def test_fixed_eval_set_is_identical_across_world_sizes(shards):
    cfg = tiny(shards, "eval.num_samples=20", "eval.batch_size=6")
    whole = fixed_eval_set(cfg).batches
    again = fixed_eval_set(cfg).batches
    parts = [fixed_eval_set(cfg, rank=r, world_size=3).batches for r in range(3)]
    assert [b[0].shape[0] for b in whole] == [6, 6, 6, 2]
    merged = {}
    for r, batches in enumerate(parts):
        for i, batch in enumerate(batches):
            merged[r + 3 * i] = batch
    assert sorted(merged) == list(range(4))
    for i, (wave, angles, metas) in enumerate(whole):
        assert torch.equal(wave, again[i][0])
        assert torch.equal(wave, merged[i][0]) and torch.equal(angles, merged[i][1])
        assert [m["key"] for m in metas] == [m["key"] for m in merged[i][2]]
        assert all(m["key"].startswith("eval-") for m in metas)


def test_missing_or_empty_shards_give_one_line_errors(tmp_path, shards):
    with pytest.raises(DataError, match="no train shards match") as err:
        resolve_shards(tiny(tmp_path / "nowhere"), "train")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="3 train shard"):
        check_enough_shards(["a", "b", "c"], 2, 2, "train")
    cfg = tiny(shards, f"data.train_glob={tmp_path}/none-*.tar")
    with pytest.raises(DataError, match="data.train_glob"):
        resolve_shards(cfg, "train")
    assert len(resolve_shards(tiny(shards, f"data.train_glob={shards}/train/train-{{000000..000002}}.tar"), "train")) == 3


@pytest.mark.slow
def test_cli_errors_are_one_line_before_any_model(tmp_path, shards):
    script = str(ROOT / "training" / "train.py")
    cases = [
        ([f"--shards={tmp_path}/empty", "--config", str(TINY)], "no train shards match"),
        ([f"--shards={shards}", "--config", str(TINY), "optim.lrr=1"], "unknown key 'optim.lrr'"),
        ([f"--shards={shards}", "--config", str(TINY), "target=elevation"], "accepted values"),
        ([f"--shards={shards}", "--config", str(TINY), "run.batch_size=many"], "run.batch_size"),
        ([f"--shards={shards}", "--config", str(TINY), "data.rir_refresh=1000"], "data.rir_refresh"),
        ([f"--shards={shards}", "--config", str(TINY), "data.num_workers=8"], "readers"),
    ]
    for argv, expected in cases:
        proc = subprocess.run([sys.executable, script, "--run-dir", str(tmp_path / "run"), *argv],
                              capture_output=True, text=True, timeout=HANG_S)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_config_validation_names_keys():
    with pytest.raises(ConfigError, match="speech.clip_seconds"):
        load_train_config(TINY, ["speech.clip_seconds=0.01"])
    with pytest.raises(ConfigError, match="mix.gain_db"):
        load_train_config(TINY, ["mix.gain_db=[3,-3]"])
    cfg = load_train_config(None)
    assert cfg.target == "azimuth" and cfg.speech.clip_seconds == 3.0 and cfg.data.shards == "shards"


def test_an_incomplete_split_trains_but_says_so(tmp_path):
    out = tmp_path / "partial"
    generate_dataset(out, splits={"train": 6, "eval": 2}, overrides=("shard_size=2", "rt60_range=[0.1,0.2]"),
                     shards=[0])
    with pytest.warns(UserWarning, match=r"incomplete split, 1 of 3 shards written \(2 of 6 scenes\)"):
        assert len(resolve_shards(tiny(out), "train")) == 1
