"""run.init_from: a new run's first weights from another architecture's trained weights, where they fit; a tensor
of another shape only when run.init_partial names it, and never NaN/Inf weights."""
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from configs import ConfigError
from ssl_model.config import preset
from ssl_model.model import SSLModel
from training.config import load_train_config
from training.warm_start import summary, warm_start

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(dim=32, depth=1, heads=2, dim_head=16, conv_kernel=7)
SLOTS = ("cls_tokens", "pos_embedding")  # what a two-slot model gives a three-slot one in part


def saved(model: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


def test_a_two_slot_model_seeds_a_three_slot_counting_model(tmp_path):
    torch.manual_seed(0)
    source = SSLModel(preset("srp", **SMALL, num_slots=2))
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "model.safetensors")
    torch.manual_seed(1)
    target = SSLModel(preset("srp", **SMALL, num_slots=3, count_head=True, frame_head=True, spacing_input=True,
                             mic_spacing_range=(0.06, 0.16)))
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = warm_start(target, tmp_path, partial=SLOTS)  # a folder holding model.safetensors
    state, old = target.state_dict(), source.state_dict()
    assert report["partial"] == list(SLOTS) and not report["unused"]
    assert {"exist_head.weight", "track_head.1.weight", "spacing_embed.weight"} <= set(report["fresh"])
    assert torch.equal(state["cls_tokens"][:2], old["cls_tokens"]) and torch.equal(state["cls_tokens"][2], fresh["cls_tokens"][2])
    # the position table is [slots, time tokens]: every time token keeps its trained row, one place later
    assert torch.equal(state["pos_embedding"][:2], old["pos_embedding"][:2])
    assert torch.equal(state["pos_embedding"][3:10], old["pos_embedding"][2:9])
    assert torch.equal(state["exist_head.weight"], fresh["exist_head.weight"])
    for name in report["copied"]:
        assert torch.equal(state[name], old[name]), name
    assert set(report["copied"]) | set(report["partial"]) | set(report["fresh"]) == set(state)


def test_weights_that_fit_nothing_or_are_not_safetensors_are_refused(tmp_path):
    model = SSLModel(preset("srp", **SMALL))
    save_file({"unrelated": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(ConfigError, match="no tensor of .* fits this model"):
        warm_start(model, tmp_path / "other.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        warm_start(model, tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="neither a safetensors file nor a folder"):
        warm_start(model, tmp_path / "missing")


def two_and_three_slot_models(tmp_path: Path) -> tuple[Path, SSLModel]:
    torch.manual_seed(0)
    source = saved(SSLModel(preset("srp", **SMALL, num_slots=2)), tmp_path / "two.safetensors")
    return source, SSLModel(preset("srp", **SMALL, num_slots=3, count_head=True))


def test_a_shape_mismatch_is_refused_unless_init_partial_names_it(tmp_path):
    source, target = two_and_three_slot_models(tmp_path)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ConfigError) as err:
        warm_start(target, source)
    message = str(err.value)
    assert "\n" not in message and "cls_tokens" in message and "[2, 32]" in message and "[3, 32]" in message
    assert "run.init_partial" in message
    with pytest.raises(ConfigError, match="pos_embedding"):
        warm_start(target, source, partial=("cls_tokens",))  # the position table differs too
    for name, tensor in target.state_dict().items():  # a refused warm start leaves the model as it was
        assert torch.equal(tensor, before[name]), name
    assert warm_start(target, source, partial=SLOTS)["partial"] == list(SLOTS)


def test_a_model_of_another_width_is_refused_even_in_part(tmp_path):
    torch.manual_seed(0)
    wide = saved(SSLModel(preset("srp", **{**SMALL, "dim": 64})), tmp_path / "wide.safetensors")
    narrow = SSLModel(preset("srp", **SMALL))
    with pytest.raises(ConfigError, match=r"cls_tokens is \[2, 64\] in .*, \[2, 32\] in this model"):
        warm_start(narrow, wide)
    # Named for partial loading, a tensor that differs beyond its first dimension still cannot be copied in part.
    with pytest.raises(ConfigError, match="beyond its first dimension"):
        warm_start(narrow, wide, partial=("cls_tokens", "pos_embedding", "norm", "head", "backbone", "patch_embed"))


def test_init_partial_entries_are_names_or_dotted_prefixes_of_this_models_tensors(tmp_path):
    source, target = two_and_three_slot_models(tmp_path)
    with pytest.raises(ConfigError, match="run.init_partial: 'cls_token' names no tensor of this model"):
        warm_start(target, source, partial=("cls_token", "pos_embedding"))
    assert warm_start(target, source, partial=("cls_tokens", "pos_embedding", "backbone."))["partial"] == list(SLOTS)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_weights_that_are_not_finite_are_refused(tmp_path, value):
    torch.manual_seed(0)
    source = SSLModel(preset("srp", **SMALL))
    with torch.no_grad():
        source.backbone.layers[0].attn.fn.rel_pos_emb.weight[0, 0] = value  # a row short inputs never reach
    path = saved(source, tmp_path / "bad.safetensors")
    target = SSLModel(preset("srp", **SMALL))
    with pytest.raises(ConfigError, match=r"run.init_from: .*bad.safetensors: .*rel_pos_emb.weight .* not finite"):
        warm_start(target, path)
    assert all(torch.isfinite(t).all() for t in target.state_dict().values())


def test_the_real_recipe_warm_starts_from_the_shipped_two_talker_model():
    cfg = load_train_config(ROOT / "configs" / "real.yaml")
    assert cfg.run.init_partial == SLOTS
    model = SSLModel(cfg.model)
    report = warm_start(model, ROOT / cfg.run.init_from, cfg.run.init_partial)
    assert report["partial"] == list(SLOTS) and not report["unused"]
    assert len(report["copied"]) == 162 and len(report["fresh"]) == 8
    assert {"exist_head.weight", "track_head.1.weight", "spacing_embed.weight"} <= set(report["fresh"])
    line = summary(report)
    assert "162 tensors copied, 2 in part (cls_tokens, pos_embedding), 8 fresh (" in line and "\n" not in line
