"""The shipped two-talker model (ssl_model/pretrained/two-talker/): what its model card promises, checked on rooms it
never saw."""
import numpy as np
import torch
import yaml

from simulate.config import SimulateConfig
from simulate.render import render_batch
from ssl_model import PRESETS, Localizer
from ssl_model.baselines import gcc_phat
from ssl_model.loading import model_weights
from training.data.mixing import convolve_sources
from training.data.speech import synthetic_speech

from run_helpers import ROOT
from test_api import run_example

MAX_BYTES = 20 * 2**20
SCENES = 24
TWO_TALKER = model_weights("two-talker")


def test_small_enough_to_ship_and_made_by_the_documented_recipe():
    assert TWO_TALKER.is_file() and TWO_TALKER.stat().st_size <= MAX_BYTES
    shipped = yaml.safe_load(TWO_TALKER.with_name("config.yaml").read_text())
    recipe = yaml.safe_load((ROOT / "configs" / "pretrained.yaml").read_text())
    for section in ("model", "speech", "mix", "optim"):
        assert {k: shipped[section][k] for k in recipe[section]} == recipe[section], section
    assert shipped["run"]["steps"] == recipe["run"]["steps"] and shipped["target"] == "lateral"
    spec = Localizer.from_pretrained("two-talker").spec
    assert spec.sr == 16000 and spec.target == "lateral" and spec.mic_spacing == 0.1
    assert spec.model == PRESETS["srp"]  # the preset the model card and README name


def test_two_talkers_in_unseen_rooms_beat_gcc_phat():
    # Rooms of the seed protocol drawn from a generator no training split uses, and synthetic speech-like
    # sources (the model trained on recorded Czech speech): both are new to it.
    cfg = SimulateConfig()
    batch = render_batch(cfg, SCENES, torch.Generator().manual_seed(20261127), "cpu")
    g = torch.Generator().manual_seed(5)
    speech = synthetic_speech(SCENES * 2, 3 * cfg.sr, cfg.sr, g).reshape(SCENES, 2, -1)
    waves = convolve_sources(speech, batch["rir"], speech.shape[-1]).sum(dim=2)  # [B, 2, T]
    waves = waves / waves.abs().amax(dim=(1, 2), keepdim=True) * 0.9
    truth = torch.sort(batch["lateral_deg"], dim=-1).values
    localizer = Localizer.from_pretrained("two-talker")
    predicted = torch.tensor(np.stack([localizer(w, cfg.sr).angles_deg for w in waves]))
    model_mae = (predicted - truth).abs().mean()
    gcc_mae = (gcc_phat(waves, cfg.sr, sound_speed=cfg.sound_speed) - truth).abs().mean()
    assert model_mae < 0.5 * gcc_mae, (model_mae, gcc_mae)
    assert model_mae < 4.0, model_mae


def model_card() -> tuple[dict, str]:
    """ssl_model/pretrained/two-talker/README.md -> (its YAML front matter, its body)."""
    text = TWO_TALKER.with_name("README.md").read_text()
    assert text.startswith("---\n"), "the model card opens with YAML front matter (Hugging Face convention)"
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_the_model_card_metadata_matches_the_readme_results():
    meta, body = model_card()
    assert meta["license"] == "gpl-2.0" and "GPL" in body and "Apache-2.0" in body
    assert {"sound-source-localization", "direction-of-arrival"} <= set(meta["tags"])
    assert {"mae", "accuracy"} <= set(meta["metrics"]) and meta["datasets"]
    for heading in ("## Intended uses", "## Out-of-scope uses", "## Licence", "## Citation", "## Use it"):
        assert heading in body, heading
    # model-index: (a) then (b), each [slot 1, slot 2, ACC@5]; README's Results row of the shipped model has them
    # in the same order, in bold.
    card = [m["value"] for result in meta["model-index"][0]["results"] for m in result["metrics"]]
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| shipped model |"))
    readme = [float(cell.strip(" *%")) for cell in row.split("|")[2:-1]]
    assert card == readme, (card, readme)


def test_the_model_card_snippet_runs(tmp_path, monkeypatch, capsys):
    run_example(TWO_TALKER.with_name("README.md"), "## Use it", tmp_path, monkeypatch)
    angles = capsys.readouterr().out.split("]")[0].strip(" [").split()  # the sample: talkers at 50 and 125 degrees
    assert len(angles) == 2 and all(abs(float(a) - truth) < 5 for a, truth in zip(angles, (50, 125))), angles
