"""The mirrored objective (optim.mirror_average): the loss of the two passes' averaged probabilities."""
from pathlib import Path

import pytest
import torch

from configs import ConfigError
from ssl_model import SSLModel
from ssl_model.model import SSLOutput
from training import train
from training.config import load_train_config
from training.objective import average_mirrored, batch_loss, mean_sigmoid_logit, mirrored_slots
from tests.test_model_heads import one_and_three_talkers

ROOT = Path(__file__).resolve().parents[1]


def mirror_of(out: SSLOutput, count: torch.Tensor) -> SSLOutput:
    """What an exactly channel-symmetric network gives for the swapped windows: every class flipped, the held slots
    in the opposite order."""
    order = mirrored_slots(count, out.logits.shape[1])
    logits = out.logits.gather(1, order[..., None].expand_as(out.logits)).flip(-1)
    return SSLOutput(logits, out.exist, out.track.flip(-1))


def test_mirrored_slots_reverse_the_held_slots_only():
    assert mirrored_slots(torch.tensor([0, 1, 2, 3]), 3).tolist() == [[0, 1, 2], [0, 1, 2], [1, 0, 2], [2, 1, 0]]


def test_mean_sigmoid_logit_is_the_logit_of_the_mean_probability():
    a, b = torch.tensor([-30.0, -2.0, 0.0, 3.0, 25.0]), torch.tensor([-28.0, 4.0, 0.0, -1.0, 30.0])
    mean = (torch.sigmoid(a.double()) + torch.sigmoid(b.double())) / 2
    assert torch.allclose(mean_sigmoid_logit(a, b).double(), torch.logit(mean), atol=1e-4)
    assert torch.isfinite(mean_sigmoid_logit(torch.tensor([80.0]), torch.tensor([90.0]))).all()


@torch.no_grad()
def test_a_symmetric_network_scores_as_its_plain_pass():
    model, out, mix = one_and_three_talkers()
    count = torch.tensor([1, 3])
    swapped = mirror_of(out, count)
    averaged = average_mirrored(out, swapped, count)
    assert torch.allclose(averaged.logits.softmax(-1), out.logits.float().softmax(-1), atol=1e-5)
    assert torch.allclose(averaged.exist, out.exist.float(), atol=1e-4)
    plain = batch_loss(out, mix, model.config, sigma_deg=4.0)
    mirrored = batch_loss(out, mix, model.config, sigma_deg=4.0, swapped=swapped)
    assert torch.allclose(plain, mirrored, atol=1e-4)


@torch.no_grad()
def test_the_average_is_scored_not_either_pass():
    model, out, mix = one_and_three_talkers()
    count = torch.tensor([1, 3])
    # a swapped pass that names no talker and puts every direction at the far end
    logits = torch.full_like(out.logits, -20.0)
    logits[..., 0] = 20.0
    deaf = SSLOutput(logits, torch.full_like(out.exist, -20.0), torch.full_like(out.track, -20.0))
    averaged = average_mirrored(out, deaf, count)
    # existence: half of the plain pass's probability
    assert torch.allclose(torch.sigmoid(averaged.exist), torch.sigmoid(out.exist.float()) / 2, atol=1e-5)
    # directions: half the plain posterior, the other half on the last class (class 0 flipped)
    p = averaged.logits.softmax(-1)
    assert torch.allclose(p[..., :-1], out.logits.float().softmax(-1)[..., :-1] / 2, atol=1e-5)
    assert (p[..., -1] >= 0.5 - 1e-6).all()
    assert batch_loss(out, mix, model.config, sigma_deg=4.0, swapped=deaf) > batch_loss(out, mix, model.config, sigma_deg=4.0)


def test_mirror_average_needs_ascending_slots_and_a_count_head():
    tiny = ROOT / "configs" / "tiny.yaml"
    with pytest.raises(ConfigError, match="optim.mirror_average"):
        load_train_config(ROOT / "configs" / "wide.yaml", ["optim.mirror_average=true", "optim.slot_assignment=permutation"])
    with pytest.raises(ConfigError, match="optim.mirror_average"):
        load_train_config(tiny, ["optim.mirror_average=true", "model.count_head=false"])
    assert load_train_config(ROOT / "configs" / "wide.yaml", ["optim.mirror_average=true"]).optim.mirror_average


@torch.no_grad()
def test_a_training_step_scores_both_passes_in_one_forward():
    cfg = load_train_config(ROOT / "configs" / "wide.yaml", ["optim.mirror_average=true"])
    torch.manual_seed(0)
    model = SSLModel(cfg.model).eval()
    _, _, mix = one_and_three_talkers()
    loss, bad = train.batch_loss(model, mix, cfg)
    plain, swapped = model.outputs(mix.wave, mix.spacing), model.outputs(mix.wave.flip(1), mix.spacing)
    want = batch_loss(plain, mix, cfg.model, cfg.optim.label_sigma_deg, cfg.optim.label_smoothing,
                      cfg.optim.exist_weight, False, cfg.optim.track_weight, swapped)
    assert not bad and torch.allclose(loss, want, atol=1e-4)
    assert not torch.allclose(loss, train.batch_loss(model, mix, load_train_config(ROOT / "configs" / "wide.yaml"))[0])
