"""The real-recordings model: spacing-steered SRP tokens, existence (count) and track heads, and their objective."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from configs import ConfigError
from ssl_model.config import preset
from ssl_model.features import STFT, ipd_cos_sin, steered_response, steering
from ssl_model.model import SSLModel
from ssl_model.targets import class_centers
from training.config import load_train_config
from training.data.mixtures import Mixtures
from training.objective import batch_loss, direction_loss, exist_targets, track_targets

SR, C = 16000, 340.0


def far_field_pair(angle: float, spacing: float, n: int = 16384, seed: int = 0) -> torch.Tensor:
    """-> [2, n] float64: noise at mic 0 and the same noise delayed by -d cos(theta) / c at mic 1."""
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    tau = -spacing * math.cos(math.radians(angle)) / C
    f = torch.fft.rfftfreq(n, 1 / SR, dtype=torch.float64)
    return torch.stack((x, torch.fft.irfft(torch.fft.rfft(x) * torch.exp(-2j * math.pi * f * tau), n=n)))


def test_per_input_steering_peaks_at_each_inputs_angle_for_its_own_spacing():
    cases = [(40.0, 0.06), (75.0, 0.10), (130.0, 0.16)]
    pairs = torch.stack([far_field_pair(a, d, seed=i) for i, (a, d) in enumerate(cases)])
    real, imag = STFT(512, 160, trainable=False).double()(pairs)
    ipd = ipd_cos_sin(real, imag)
    ones = torch.ones(len(cases), 1, *ipd.shape[2:], dtype=ipd.dtype)
    steer = steering(512, SR, 181, torch.tensor([d for _, d in cases]), C)  # [3, 2F, 181]
    response = steered_response(ipd, ones, steer)
    for i, (angle, _) in enumerate(cases):
        assert abs(response[i, 0].mean(0).argmax().item() - angle) <= 1.0
    # Steering with the wrong spacing puts the 130-degree source elsewhere: the spacing matters.
    wrong = steered_response(ipd[2:], ones[2:], steering(512, SR, 181, 0.06, C))
    assert abs(wrong[0, 0].mean(0).argmax().item() - 130.0) > 5.0


def heads_model() -> SSLModel:
    config = preset("srp", dim=32, depth=1, heads=2, dim_head=16, conv_kernel=7, num_slots=3, count_head=True,
                    frame_head=True, spacing_input=True, mic_spacing_range=(0.06, 0.16))
    return SSLModel(config).eval()


def test_heads_have_the_documented_shapes_and_the_spacing_changes_the_output():
    model = heads_model()
    wave = torch.randn(2, 2, 24000)
    out = model.outputs(wave, torch.tensor([0.08, 0.12]))
    steps = model.config.time_patches(24000) // model.config.frame_step_tokens
    assert out.logits.shape == (2, 3, 36) and out.exist.shape == (2, 3) and out.track.shape == (2, steps, 36)
    other = model.outputs(wave, torch.tensor([0.14, 0.06]))
    assert not torch.allclose(out.logits, other.logits)
    assert torch.equal(model(wave, 0.1), model.outputs(wave, torch.tensor([0.1, 0.1])).logits)


def mixtures(angles, count, activity, talker_angles) -> Mixtures:
    B = len(count)
    return Mixtures(wave=torch.zeros(B, 2, 10), angles=torch.tensor(angles), count=torch.tensor(count),
                    talker_angles=torch.tensor(talker_angles), talker_activity=torch.tensor(activity),
                    spacing=torch.full((B,), 0.1))


def test_empty_slots_get_no_direction_gradient_and_existence_is_ordinal():
    logits = torch.zeros(2, 3, 36, requires_grad=True)
    angles = torch.tensor([[30.0, float("nan"), float("nan")], [10.0, 90.0, 170.0]])
    direction_loss(logits, angles, 0.0, 0.0).backward()
    assert logits.grad[0, 1:].abs().max() == 0 and logits.grad[0, 0].abs().max() > 0
    assert logits.grad[1].abs().amax(-1).min() > 0
    assert exist_targets(torch.tensor([0, 2, 3]), 3).tolist() == [[0, 0, 0], [1, 1, 0], [1, 1, 1]]


def test_track_targets_mark_active_talkers_per_step_at_their_angle():
    activity = [[[True] * 20 + [False] * 20, [False] * 20 + [True] * 20]]  # talker 0 then talker 1
    mix = mixtures([[20.0, 120.0]], [2], activity, [[20.0, 120.0]])
    target = track_targets(mix, steps=2, frames_per_step=20, num_classes=36, sigma_deg=0.0)
    centers = class_centers(torch.arange(36))
    assert abs(centers[target[0, 0].argmax()] - 20.0) <= 2.5 and abs(centers[target[0, 1].argmax()] - 120.0) <= 2.5
    assert target[0, 0, 24] < 1e-3 and target[0, 1, 4] < 1e-3  # each talker only in its own step


def test_batch_loss_runs_for_zero_to_three_talkers_and_backpropagates():
    model = heads_model().train()
    wave = torch.randn(4, 2, 24000)
    frames = 24000 // 160
    activity = torch.zeros(4, 3, frames, dtype=torch.bool)
    for b in range(4):
        activity[b, :b] = True
    nan = float("nan")
    mix = Mixtures(wave, torch.tensor([[nan] * 3, [40.0, nan, nan], [40.0, 100.0, nan], [10.0, 60.0, 150.0]]),
                   torch.arange(4), torch.tensor([[40.0, 100.0, 150.0]] * 4), activity, torch.full((4,), 0.1))
    loss = batch_loss(model.outputs(wave, mix.spacing), mix, model.config, sigma_deg=4.0)
    loss.backward()
    assert torch.isfinite(loss) and model.exist_head.weight.grad.abs().sum() > 0
    assert model.track_head[1].weight.grad.abs().sum() > 0 and model.spacing_embed.weight.grad.abs().sum() > 0


def one_and_three_talkers():
    """-> (an untrained model with every head, its outputs, the batch): one talker and three, 1.5 s at 10 cm."""
    model = heads_model().eval()
    wave = torch.randn(2, 2, 24000)
    activity = torch.ones(2, 3, 24000 // 160, dtype=torch.bool)
    nan = float("nan")
    mix = Mixtures(wave, torch.tensor([[40.0, nan, nan], [30.0, 90.0, 150.0]]), torch.arange(2),
                   torch.tensor([[40.0, 100.0, 150.0]] * 2), activity, torch.full((2,), 0.1))
    with torch.no_grad():
        return model, model.outputs(wave, mix.spacing), mix


@torch.no_grad()
def test_exist_weight_scales_only_the_existence_term():
    model, out, mix = one_and_three_talkers()
    base, tripled, without = (batch_loss(out, mix, model.config, sigma_deg=4.0, exist_weight=w) for w in (1.0, 3.0, 0.0))
    bce = F.binary_cross_entropy_with_logits(out.exist.float(), exist_targets(torch.tensor([1, 3]), 3))
    assert torch.allclose(base - without, bce, atol=1e-5) and torch.allclose(tripled - without, 3 * bce, atol=1e-5)


def test_permutation_assignment_lets_held_slots_take_talkers_in_any_order():
    torch.manual_seed(0)
    nan = float("nan")
    angles = torch.tensor([[30.0, 90.0, 150.0], [40.0, 120.0, nan], [60.0, nan, nan]])
    classes = 36
    logits = torch.randn(3, 3, classes)
    order = torch.tensor([2, 0, 1])
    shuffled = logits.clone()
    shuffled[0] = logits[0, order]  # the three-talker mixture's slots in another order
    shuffled[1, :2] = logits[1, [1, 0]]  # the two held slots swapped; the empty slot untouched
    for sigma in (0.0, 4.0):
        fixed = direction_loss(logits, angles, sigma, 0.0)
        best = direction_loss(logits, angles, sigma, 0.0, permute=True)
        assert best <= fixed + 1e-6  # ascending order is one of the permutations
        assert torch.allclose(direction_loss(shuffled, angles, sigma, 0.0, permute=True), best, atol=1e-5)
    # a model whose slots name the talkers in reverse order: only the permutation loss calls it right
    target = torch.full((1, 3, classes), -20.0)
    for slot, cls in enumerate([25, 15, 5]):  # 127.5, 77.5, 27.5 degrees: the talkers descending
        target[0, slot, cls] = 20.0
    three = torch.tensor([[27.5, 77.5, 127.5]])
    assert direction_loss(target, three, 0.0, 0.0, permute=True) < 1e-3
    assert direction_loss(target, three, 0.0, 0.0) > 10.0
    # a one-talker mixture has one assignment: the permutation changes nothing
    one = torch.tensor([[60.0, nan, nan]])
    assert torch.allclose(direction_loss(logits[2:], one, 4.0, 0.0, permute=True), direction_loss(logits[2:], one, 4.0, 0.0))


def test_slot_assignment_is_checked_when_the_config_loads():
    root = Path(__file__).resolve().parents[1]
    assert load_train_config(root / "configs" / "tiny.yaml", ["optim.slot_assignment=permutation"]).optim.slot_assignment == "permutation"
    with pytest.raises(ConfigError, match="optim.slot_assignment"):
        load_train_config(root / "configs" / "tiny.yaml", ["optim.slot_assignment=sorted"])


@torch.no_grad()
def test_track_weight_scales_only_the_track_term():
    model, out, mix = one_and_three_talkers()
    quarter, whole, without = (batch_loss(out, mix, model.config, sigma_deg=4.0, track_weight=w) for w in (0.25, 1.0, 0.0))
    assert out.track is not None and float(quarter - without) > 0
    assert torch.allclose(whole - without, 4 * (quarter - without), atol=1e-4)
    assert torch.allclose(batch_loss(out, mix, model.config, sigma_deg=4.0), quarter)  # 1/4 unless told
