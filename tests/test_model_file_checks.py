"""A weights file is checked before it is used (issue 27): its stored spec (model config, clip length,
normalization, target, decoding thresholds) with the bounds of a training config, its tensors' shapes against
that spec before the model is built, and its tensors for NaN/Inf. Each problem is one line naming the key or
tensor; the CLIs exit 2."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from configs import ConfigError
from run_helpers import TINY, assert_usage_names_the_command
from ssl_model import SSLModel
from ssl_model import export, localize
from ssl_model.loading import SPEC_KEY, CheckpointError, load_localizer, model_weights, save_localizer
from ssl_model.talkers import Decoding
from training.checkpoint import export_weights, localizer_spec
from training.config import load_train_config


def tiny_weights(folder: Path, name: str = "model.safetensors") -> Path:
    """An untrained configs/tiny.yaml model with 1 s clips, written as training writes it."""
    cfg = load_train_config(TINY, ["speech.clip_seconds=1.0"])
    torch.manual_seed(0)
    return export_weights(SSLModel(cfg.model), cfg, folder / name)


def tampered_copy(path: Path, out: Path, spec=None, tensors=None) -> Path:
    """A copy of a weights file with its spec's JSON text (`spec`: dict -> new dict, or -> text) and/or its
    tensors (`tensors`: dict -> None, changed in place) rewritten, as an edited or damaged file would be."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    if spec is not None:
        changed = spec(json.loads(metadata[SPEC_KEY]))
        metadata[SPEC_KEY] = changed if isinstance(changed, str) else json.dumps(changed)
    if tensors is not None:
        tensors(state)
    save_file(state, str(out), metadata=metadata)
    return out


def set_key(dotted: str, value):
    """-> a spec edit that sets `dotted` (e.g. 'model.num_classes') to value."""
    def edit(spec: dict) -> dict:
        *parents, last = dotted.split(".")
        node = spec
        for part in parents:
            node = node[part]
        node[last] = value
        return spec
    return edit


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("weights"))


def assert_one_line(err: Exception, *parts: str) -> None:
    text = str(err)
    assert "\n" not in text and all(part in text for part in parts), text


@pytest.mark.parametrize("key, value, named", [
    ("target", "banana", "target"),
    ("normalize", "loud", "normalize"),
    ("model.sound_speed", math.inf, "sound_speed"),
    ("model.sound_speed", math.nan, "sound_speed"),
    ("model.mic_spacing", 1e9, "mic_spacing"),
    ("model.num_classes", 1e9, "num_classes"),
    ("model.srp_angles", 1e8, "srp_angles"),
    ("model.sr", 0, "sr"),
    ("model.dropout", math.nan, "dropout"),
    ("clip_samples", 1e12, "clip_samples"),
    ("clip_samples", 0, "clip_samples"),
    ("clip_samples", -5, "clip_samples"),
    ("clip_samples", 16000.5, "clip_samples"),
    ("clip_samples", "16000", "clip_samples"),
    ("clip_samples", None, "clip_samples"),
    ("model", None, "model: expected a section"),
    ("decoding", None, "decoding"),
    ("decoding.existence", math.nan, "existence"),
    ("decoding.existence", -1, "existence"),
    ("decoding.existence", 1e9, "existence"),
    ("decoding.existence", "high", "existence"),
    ("decoding.merge_deg", -1.0, "merge_deg"),
    ("decoding.merge_deg", 1e9, "merge_deg"),
    ("decoding.min_share", math.inf, "min_share"),
    ("decoding.min_share", 2.0, "min_share"),
    ("decoding.one_per_window", "yes", "one_per_window"),
])
def test_impossible_metadata_is_one_line_naming_the_key(weights, tmp_path, key, value, named):
    bad = tampered_copy(weights, tmp_path / "bad.safetensors", spec=set_key(key, value))
    with pytest.raises(CheckpointError) as err:
        load_localizer(bad)
    assert_one_line(err.value, str(bad), named)


@pytest.mark.parametrize("text", ["null", "[]", "\"model\"", "{\"model\": {}"])
def test_metadata_that_is_not_a_json_object_is_one_line(weights, tmp_path, text):
    bad = tampered_copy(weights, tmp_path / "bad.safetensors", spec=lambda spec: text)
    with pytest.raises(CheckpointError) as err:
        load_localizer(bad)
    assert_one_line(err.value, str(bad), SPEC_KEY)


def test_a_spec_that_disagrees_with_the_tensors_is_refused_before_the_model_is_built(weights, tmp_path):
    # Within every bound, but 64x the file's width and 32x its depth: the model would need tens of GB. The file's
    # tensor shapes are compared with the spec's model on the meta device, so nothing of that size is allocated.
    bad = tampered_copy(weights, tmp_path / "bad.safetensors",
                        spec=lambda spec: {**spec, "model": {**spec["model"], "dim": 4096, "depth": 64}})
    with pytest.raises(CheckpointError) as err:
        load_localizer(bad)
    assert_one_line(err.value, str(bad), "cls_tokens", "[2, 64]", "[2, 4096]")


@pytest.mark.parametrize("name, value", [("head.weight", math.nan), ("pos_embedding", math.inf),
                                         ("inter_conv.1.running_var", -math.inf)])
def test_weights_that_are_not_finite_are_refused(weights, tmp_path, name, value):
    def poison(state):
        state[name].view(-1)[0] = value

    bad = tampered_copy(weights, tmp_path / "bad.safetensors", tensors=poison)
    with pytest.raises(CheckpointError) as err:
        load_localizer(bad)
    assert_one_line(err.value, str(bad), name, "not finite")


def test_non_finite_weights_are_never_written(tmp_path):
    cfg = load_train_config(TINY)
    model = SSLModel(cfg.model)
    with torch.no_grad():
        model.head.bias[3] = math.nan
    with pytest.raises(ValueError, match="head.bias"):
        save_localizer(model, localizer_spec(cfg), tmp_path / "model.safetensors")
    assert not list(tmp_path.iterdir())


def test_the_shipped_model_passes_every_check():
    model, spec = load_localizer(model_weights("two-talker"))
    assert spec.model.num_slots == 2 and all(torch.isfinite(t).all() for t in model.state_dict().values())


@pytest.mark.parametrize("fields, named", [
    ({"existence": -1.0}, "existence"), ({"existence": 1.0}, "existence"), ({"existence": math.nan}, "existence"),
    ({"merge_deg": 0.0}, "merge_deg"), ({"merge_deg": 500.0}, "merge_deg"), ({"min_share": -0.5}, "min_share"),
    ({"min_share": math.nan}, "min_share"), ({"existence": "0.5"}, "existence"), ({"one_per_window": 1}, "one_per_window"),
])
def test_decoding_thresholds_are_checked_when_made(fields, named):
    with pytest.raises(ConfigError) as err:
        Decoding(**fields)
    assert_one_line(err.value, named)


def test_decoding_thresholds_at_their_bounds_are_accepted():
    edges = Decoding(existence=1e-6, merge_deg=180.0, min_share=0.0, one_per_window=False)
    assert (edges.existence, edges.merge_deg, edges.min_share) == (1e-6, 180.0, 0.0)


def stereo_file(folder: Path) -> Path:
    path = folder / "x.wav"
    sf.write(path, np.random.default_rng(0).normal(0, 0.1, (32000, 2)).astype(np.float32), 16000)
    return path


@pytest.mark.parametrize("case", ["banana", "nan"])
def test_localize_and_export_exit_2_in_one_line(weights, tmp_path, capsys, case):
    if case == "banana":
        bad = tampered_copy(weights, tmp_path / "bad.safetensors", spec=set_key("target", "banana"))
    else:
        bad = tampered_copy(weights, tmp_path / "bad.safetensors",
                            tensors=lambda state: state["head.weight"].view(-1).__setitem__(0, math.nan))
    assert localize.main([str(stereo_file(tmp_path)), "--model", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1 and str(bad) in err, err
    assert export.main(["--model", str(bad), "--out", str(tmp_path / "exported")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1 and str(bad) in err, err
    assert not (tmp_path / "exported").exists()


def test_export_usage_names_the_command_that_was_run(monkeypatch, capsys):
    assert_usage_names_the_command("ssl_model.export", "ssl-export", export.parse_args, monkeypatch, capsys)
