"""The per-bin real-recordings model (ssl_model/pretrained/real/, the default before `wide`): its card, the shipped sample at every rate a
user records at (8 kHz telephone band included), and the band limit that makes low-rate recordings work."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from shards.audio import resample
from ssl_model import Localizer
from ssl_model.loading import model_weights
from ssl_model.localizer import band_limit

from run_helpers import ROOT
from test_api import card_figures_in_readme, python_block

SAMPLE = ROOT / "examples" / "sample"
TRUTH = json.loads((SAMPLE / "two_talkers.json").read_text())["lateral_deg"]
WEIGHTS = model_weights("real")
CARD = WEIGHTS.with_name("README.md")


@pytest.fixture(scope="module")
def sample() -> tuple[torch.Tensor, int]:
    wave, sr = sf.read(SAMPLE / "two_talkers.wav", dtype="float32")
    return torch.from_numpy(np.ascontiguousarray(wave.T)), sr


def test_real_is_the_counting_6_to_16_cm_model_made_by_its_recipe():
    assert WEIGHTS.stat().st_size <= 20 * 2**20
    real = Localizer.from_pretrained("real")
    assert real.counts and real.spacing_range == (0.06, 0.16) and real.step_s == pytest.approx(0.2)
    shipped = yaml.safe_load(WEIGHTS.with_name("config.yaml").read_text())
    assert shipped["run"]["init_from"] == "ssl_model/pretrained/two-talker"  # the recipe starts from committed weights
    assert shipped["mix"]["bandlimit_prob"] > 0 and shipped["model"]["num_slots"] == 3
    recipe = yaml.safe_load((ROOT / "configs" / "real.yaml").read_text())  # made by the documented recipe
    for section in ("model", "speech", "mix", "optim"):
        assert {k: shipped[section][k] for k in recipe[section]} == recipe[section], section
    assert shipped["run"]["steps"] == recipe["run"]["steps"] and shipped["data"]["train_glob"] == recipe["data"]["train_glob"]


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 48000])
@pytest.mark.parametrize("name", ["real", "two-talker"])
def test_the_sample_localizes_at_every_recording_rate(sample, rate, name):
    wave, sr = sample
    result = Localizer.from_pretrained(name)(resample(wave, sr, rate).numpy(), rate)
    assert len(result.angles_deg) == 2, result.angles_deg
    assert np.abs(np.sort(result.angles_deg) - np.sort(TRUTH)).max() < 5.0, (rate, result.angles_deg)


def test_only_recordings_below_the_models_rate_are_band_limited():
    assert band_limit(16000, 16000) is None and band_limit(48000, 16000) is None
    assert band_limit(8000, 16000).tolist() == [pytest.approx(3960.0)]


def test_the_model_card_says_what_was_measured_and_its_snippet_runs(monkeypatch, capsys):
    text = CARD.read_text()
    assert text.startswith("---\n") and "@@" not in text
    front, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(front)
    assert meta["license"] == "gpl-2.0" and "GPL" in body and "Apache-2.0" in body
    assert {"sound-source-localization", "speaker-counting"} <= set(meta["tags"])
    for heading in ("## Intended uses", "## Out-of-scope uses", "## Accuracy", "## Known limits", "## Licence",
                    "## Use it"):
        assert heading in body, heading
    assert card_figures_in_readme(CARD, "| real model |") == meta  # every figure of its index is the README row's
    monkeypatch.chdir(ROOT)
    exec(compile(python_block(CARD, "## Use it"), "real card", "exec"), {"__name__": "example"})
    count, angles = capsys.readouterr().out.strip().split(" ", 1)
    assert int(count) == 2
    found = np.array(angles.strip("[] ").split(), dtype=float)
    assert np.abs(np.sort(found) - np.sort(TRUTH)).max() < 5.0
