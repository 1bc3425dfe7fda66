"""run.init_from: a new run's first weights from another architecture's trained weights, where they fit."""
import pytest
import torch
from safetensors.torch import save_file

from configs import ConfigError
from ssl_model.config import preset
from ssl_model.model import SSLModel
from training.warm_start import warm_start

SMALL = dict(dim=32, depth=1, heads=2, dim_head=16, conv_kernel=7)


def test_a_two_slot_model_seeds_a_three_slot_counting_model(tmp_path):
    torch.manual_seed(0)
    source = SSLModel(preset("srp", **SMALL, num_slots=2))
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, tmp_path / "model.safetensors")
    torch.manual_seed(1)
    target = SSLModel(preset("srp", **SMALL, num_slots=3, count_head=True, frame_head=True, spacing_input=True,
                             mic_spacing_range=(0.06, 0.16)))
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = warm_start(target, tmp_path)  # a folder holding model.safetensors
    state, old = target.state_dict(), source.state_dict()
    assert report["partial"] == ["cls_tokens"] and not report["unused"]
    assert {"exist_head.weight", "track_head.1.weight", "spacing_embed.weight"} <= set(report["fresh"])
    assert torch.equal(state["cls_tokens"][:2], old["cls_tokens"]) and torch.equal(state["cls_tokens"][2], fresh["cls_tokens"][2])
    # the position table is [slots, time tokens]: every time token keeps its trained row, one place later
    assert torch.equal(state["pos_embedding"][:2], old["pos_embedding"][:2])
    assert torch.equal(state["pos_embedding"][3:10], old["pos_embedding"][2:9])
    assert torch.equal(state["exist_head.weight"], fresh["exist_head.weight"])
    for name in set(report["copied"]) - {"pos_embedding"}:  # the realigned table is copied whole, checked above
        assert torch.equal(state[name], old[name]), name


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
