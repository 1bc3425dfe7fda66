"""The default, the shipped 4-20 cm model (ssl_model/pretrained/wide/): the band front end, its range, its four-stage
recipe and its card."""
import json

import numpy as np
import pytest
import soundfile as sf
import yaml

from ssl_model import Localizer
from ssl_model.loading import PRETRAINED, model_weights
from ssl_model.localizer import LocalizeError

from run_helpers import ROOT
from test_api import card_figures_in_readme, python_block

FOLDER = ROOT / "ssl_model" / "pretrained" / "wide"
SAMPLE = ROOT / "examples" / "sample"
TRUTH = json.loads((SAMPLE / "two_talkers.json").read_text())["lateral_deg"]


@pytest.fixture(scope="module")
def wide() -> Localizer:
    return Localizer.from_pretrained("wide")


def test_the_default_is_wide_and_the_others_are_one_name_away():
    assert PRETRAINED == model_weights("wide") and PRETRAINED.stat().st_size <= 20 * 2**20
    default, real, two = (Localizer.from_pretrained(name) for name in (None, "real", "two-talker"))
    assert default.source == model_weights("wide") and default.step_s == pytest.approx(0.2)
    assert real.counts and real.spacing_range == (0.06, 0.16)
    assert not two.counts and two.spacing_range == (0.1, 0.1)


def test_it_is_the_band_model_for_4_to_20_cm_made_by_its_fourth_stage(wide):
    assert wide.counts and wide.spacing_range == (0.04, 0.2) and wide.spec.model.tokens == "bands"
    shipped = yaml.safe_load((FOLDER / "config.yaml").read_text())
    names = ("wide.yaml", "wide_long.yaml", "wide_broadband.yaml", "wide_broadband2.yaml")
    stages = [yaml.safe_load((ROOT / "configs" / name).read_text()) for name in names]
    last = stages[-1]
    for section in ("model", "speech", "mix", "optim"):
        assert {k: shipped[section][k] for k in last[section]} == last[section], section
    assert shipped["mix"]["broadband_prob"] > 0 and not stages[1]["mix"].get("broadband_prob")
    assert len({stage["data"]["train_glob"] for stage in stages} | {shipped["data"]["train_glob"]}) == 1
    assert shipped["run"]["steps"] == last["run"]["steps"]
    assert shipped["run"]["init_from"] == last["run"]["init_from"]
    for before, stage in zip(stages, stages[1:]):  # each stage starts where the one before it ended
        assert stage["run"]["init_from"] == before["run"]["dir"]
    assert shipped["run"]["init_fresh"] == [] and stages[0]["run"]["init_fresh"]
    recipe = (ROOT / "examples" / "train_wide.sh").read_text()
    places = [recipe.index(f"stage configs/{name}") for name in names]
    assert places == sorted(places)


def test_the_sample_is_found_at_its_spacing_and_other_spacings_map_by_geometry(wide):
    wave, sr = sf.read(SAMPLE / "two_talkers.wav", dtype="float32")
    found = wide(wave.T, sr, mic_spacing=0.1).angles_deg
    assert len(found) == 2 and np.abs(np.sort(found) - np.sort(TRUTH)).max() < 5.0
    # told 18 cm, the same delays mean cos(theta') = cos(theta) * 0.1 / 0.18: the angles move towards broadside
    wider = np.sort(wide(wave.T, sr, mic_spacing=0.18).angles_deg)
    expected = np.sort(np.rad2deg(np.arccos(np.cos(np.deg2rad(TRUTH)) * 0.1 / 0.18)))
    assert len(wider) == 2 and np.abs(wider - expected).max() < 5.0
    with pytest.raises(LocalizeError, match="spacing"):
        wide(wave.T, sr, mic_spacing=0.03)


def test_the_card_snippet_runs(monkeypatch, capsys):
    card = FOLDER / "README.md"
    text = card.read_text()
    assert text.startswith("---\n") and "@@" not in text
    meta = card_figures_in_readme(card, "| wide model (default) |")  # every figure of its index is the README row's
    assert sum(len(r["metrics"]) for r in meta["model-index"][0]["results"]) == 5
    monkeypatch.chdir(ROOT)
    exec(compile(python_block(card, "## Use it"), "wide card", "exec"), {"__name__": "example"})
    count, angles = capsys.readouterr().out.strip().split(" ", 1)
    assert int(count) == 2
    assert np.abs(np.sort(np.array(angles.strip("[] ").split(), dtype=float)) - np.sort(TRUTH)).max() < 5.0
