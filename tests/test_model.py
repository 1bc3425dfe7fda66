"""SSLModel: the seed's module tree and size, shapes, length limits, attention maths, autocast, overfitting."""
import math

import pytest
import torch
import torch.nn.functional as F

from configs import ConfigError, build_config
from ssl_model import PRESETS, ModelConfig, SSLModel
from ssl_model.conformer import relative_position_bias
from ssl_model.features import STFT, ipd_cos_sin, steered_response, steering
from ssl_model.metrics import two_slot_cross_entropy

# Printed by the seed recipe (docs/protocol.md, "The seed recipe in brief"), verbatim.
SEED_TREE = """\
SSLModel(
  (stft): STFT(
    (conv_real): Conv1d(1, 257, kernel_size=(512,), stride=(160,), bias=False)
    (conv_imag): Conv1d(1, 257, kernel_size=(512,), stride=(160,), bias=False)
  )
  (inter_conv): Sequential(
    (0): Conv2d(2, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    (1): BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (2): GELU(approximate='none')
    (3): Conv2d(4, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    (4): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (5): GELU(approximate='none')
  )
  (patch_embed): Sequential(
    (0): Conv2d(8, 32, kernel_size=(4, 4), stride=(4, 4))
    (1): BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (2): GELU(approximate='none')
    (3): Conv2d(32, 128, kernel_size=(4, 4), stride=(4, 4))
    (4): BatchNorm2d(128, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (5): GELU(approximate='none')
    (6): Conv2d(128, 512, kernel_size=(4, 4), stride=(4, 4))
    (7): BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    (8): GELU(approximate='none')
  )
  (backbone): Conformer(
    (layers): ModuleList(
      (0-7): 8 x ConformerBlock(
        (ff1): Scale(
          (fn): PreNorm(
            (fn): FeedForward(
              (net): Sequential(
                (0): Linear(in_features=512, out_features=2048, bias=True)
                (1): Swish()
                (2): Dropout(p=0.0, inplace=False)
                (3): Linear(in_features=2048, out_features=512, bias=True)
                (4): Dropout(p=0.0, inplace=False)
              )
            )
            (norm): LayerNorm((512,), eps=1e-05, elementwise_affine=True)
          )
        )
        (attn): PreNorm(
          (fn): Attention(
            (to_q): Linear(in_features=512, out_features=512, bias=False)
            (to_kv): Linear(in_features=512, out_features=1024, bias=False)
            (to_out): Linear(in_features=512, out_features=512, bias=True)
            (rel_pos_emb): Embedding(1025, 64)
            (dropout): Dropout(p=0.0, inplace=False)
          )
          (norm): LayerNorm((512,), eps=1e-05, elementwise_affine=True)
        )
        (conv): ConformerConvModule(
          (net): Sequential(
            (0): LayerNorm((512,), eps=1e-05, elementwise_affine=True)
            (1): Rearrange('b n c -> b c n')
            (2): Conv1d(512, 2048, kernel_size=(1,), stride=(1,))
            (3): GLU()
            (4): DepthWiseConv1d(
              (conv): Conv1d(1024, 1024, kernel_size=(31,), stride=(1,), groups=1024)
            )
            (5): BatchNorm1d(1024, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
            (6): Swish()
            (7): Conv1d(1024, 512, kernel_size=(1,), stride=(1,))
            (8): Rearrange('b c n -> b n c')
            (9): Dropout(p=0.0, inplace=False)
          )
        )
        (ff2): Scale(
          (fn): PreNorm(
            (fn): FeedForward(
              (net): Sequential(
                (0): Linear(in_features=512, out_features=2048, bias=True)
                (1): Swish()
                (2): Dropout(p=0.0, inplace=False)
                (3): Linear(in_features=2048, out_features=512, bias=True)
                (4): Dropout(p=0.0, inplace=False)
              )
            )
            (norm): LayerNorm((512,), eps=1e-05, elementwise_affine=True)
          )
        )
        (post_norm): LayerNorm((512,), eps=1e-05, elementwise_affine=True)
      )
    )
  )
  (norm): LayerNorm((512,), eps=1e-05, elementwise_affine=True)
  (head): Linear(in_features=512, out_features=36, bias=True)
)"""

SEED_PARAMETERS = 57_103_248


def seed_parameter_count(max_tokens: int = 2 + 128 * 4) -> int:
    """The seed size counted by hand from the layer shapes."""
    stft = 2 * 257 * 512
    conv_bn = lambda i, o, k: i * o * k * k + o + 2 * o  # conv weight + bias, BatchNorm weight + bias
    front = conv_bn(2, 4, 3) + conv_bn(4, 8, 3) + conv_bn(8, 32, 4) + conv_bn(32, 128, 4) + conv_bn(128, 512, 4)
    ff = 512 * 2048 + 2048 + 2048 * 512 + 512 + 2 * 512
    attn = 512 * 512 + 512 * 1024 + 512 * 512 + 512 + 1025 * 64 + 2 * 512
    conv = 2 * 512 + 512 * 2048 + 2048 + 1024 * 31 + 1024 + 2 * 1024 + 1024 * 512 + 512
    block = 2 * ff + attn + conv + 2 * 512
    tokens = 2 * 512 + max_tokens * 512  # CLS tokens, learned positions
    return stft + front + 8 * block + tokens + 2 * 512 + 512 * 36 + 36


@pytest.fixture(scope="module")
def seed_model():
    return SSLModel()


def test_seed_tree_matches_the_recipe(seed_model):
    assert repr(seed_model) == SEED_TREE


def test_seed_parameter_count(seed_model):
    assert seed_parameter_count() == SEED_PARAMETERS
    assert sum(p.numel() for p in seed_model.parameters()) == SEED_PARAMETERS


def test_seed_forward_shape(seed_model):
    seed_model.eval()
    with torch.no_grad():
        logits = seed_model(torch.randn(2, 2, 48000))
    assert logits.shape == (2, 2, 36)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("samples", [16000, 48000, 16000 * 5 + 123])
def test_micro_any_length_from_one_second(samples):
    model = SSLModel.from_preset("micro").eval()
    with torch.no_grad():
        assert model(torch.randn(3, 2, samples)).shape == (3, 2, 36)


def test_length_limits_fail_clearly():
    model = SSLModel.from_preset("micro", max_time_patches=2).eval()
    config = model.config
    assert config.min_samples() <= 16000
    with pytest.raises(ValueError, match="too short"):
        model(torch.randn(1, 2, config.min_samples() - 1))
    model(torch.randn(1, 2, config.min_samples()))
    with pytest.raises(ValueError, match="beyond the learned position table"):
        model(torch.randn(1, 2, 16000 * 3))
    with pytest.raises(ValueError, match=r"\[batch, 2, samples\]"):
        model(torch.randn(2, 16000))


def test_presets_and_config_validation():
    assert set(PRESETS) >= {"seed", "micro"}
    assert SSLModel.from_preset("seed").config == ModelConfig()
    config = build_config(ModelConfig, {"dim": 64, "patch_channels": [16, 32, 64], "depth": 1})
    assert config.patch_channels == (16, 32, 64)
    with pytest.raises(ConfigError, match="dim"):
        build_config(ModelConfig, {"dim": 256})
    with pytest.raises(ConfigError, match="dropout"):
        build_config(ModelConfig, {"dropout": 1.5})
    with pytest.raises(ConfigError, match="unknown model preset"):
        SSLModel.from_preset("huge")


def test_stft_kernels_match_torch_stft():
    wave = torch.randn(2, 2, 4000, dtype=torch.float64)
    stft = STFT(512, 160).double()
    real, imag = stft(wave)
    reference = torch.stft(wave.flatten(0, 1), 512, 160, window=torch.hann_window(512, dtype=torch.float64),
                           center=False, return_complex=True).view(2, 2, 257, -1)
    # The kernels are stored in float32.
    torch.testing.assert_close(real, reference.real, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(imag, reference.imag, atol=1e-5, rtol=1e-5)
    assert stft.conv_real.weight.requires_grad
    frozen = STFT(512, 160, trainable=False).double()  # the FFT path: the same numbers
    frozen_real, frozen_imag = frozen(wave)
    torch.testing.assert_close(frozen_real, reference.real, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(frozen_imag, reference.imag, atol=1e-5, rtol=1e-5)
    assert not frozen.conv_real.weight.requires_grad


def test_ipd_of_a_pure_delay():
    # mic 1 = mic 0 delayed by 2 samples: phi_1 - phi_0 = -2 pi k 2 / n_fft.
    x = torch.randn(1, 6000, dtype=torch.float64)
    wave = torch.stack((x[:, 2:], x[:, :-2]), dim=1)
    real, imag = STFT(512, 160).double()(wave)
    ipd = ipd_cos_sin(real, imag)
    k = torch.arange(1, 257, dtype=torch.float64)
    expected = -2 * math.pi * k * 2 / 512
    # Hann-windowed frames of a shifted signal: near-exact for a 2-sample delay in 512-sample frames.
    assert (ipd[0, 0].mean(-1) - torch.cos(expected)).abs().median() < 0.02
    assert (ipd[0, 1].mean(-1) - torch.sin(expected)).abs().median() < 0.02


@pytest.mark.parametrize("angle", [20.0, 55.0, 90.0, 128.0, 165.0])
def test_steered_response_peaks_at_the_sources_lateral_angle(angle):
    # Far field, mic 1 at +x: a source at lateral angle theta reaches mic 1 d cos(theta) / c before mic 0.
    sr, d, c = 16000, 0.1, 340.0
    n = 16384
    x = torch.randn(1, n, dtype=torch.float64)
    tau = -d * math.cos(math.radians(angle)) / c  # mic 1's delay relative to mic 0
    f = torch.fft.rfftfreq(n, 1 / sr, dtype=torch.float64)
    late = torch.fft.irfft(torch.fft.rfft(x) * torch.exp(-2j * math.pi * f * tau), n=n)
    real, imag = STFT(512, 160, trainable=False).double()(torch.stack((x, late), dim=1))
    ipd = ipd_cos_sin(real, imag)
    ones = torch.ones(1, 1, *ipd.shape[2:], dtype=ipd.dtype)
    response = steered_response(ipd, ones, steering(512, sr, 181, d, c))  # [1, 1, T, 181]
    assert response.shape == (1, 1, ipd.shape[-1], 181)
    assert abs(response[0, 0].mean(0).argmax().item() - angle) <= 1.0  # 1-degree grid
    assert response.max() <= 1.0 + 1e-5


def test_relative_position_bias_matches_shaw_form():
    torch.manual_seed(0)
    b, h, n, d, max_rel = 2, 3, 9, 8, 4
    q = torch.randn(b, h, n, d)
    table = torch.randn(2 * max_rel + 1, d)
    i = torch.arange(n)
    distance = (i[:, None] - i[None, :]).clamp(-max_rel, max_rel) + max_rel
    expected = torch.einsum("bhid,ijd->bhij", q, table[distance]) * 0.5
    torch.testing.assert_close(relative_position_bias(q, table, max_rel, 0.5), expected)


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    model = SSLModel.from_preset("micro").eval()
    attn = model.backbone.layers[0].attn.fn
    x = torch.randn(2, 7, model.config.dim)
    q = attn.to_q(x).view(2, 7, attn.heads, -1).transpose(1, 2)
    k, v = attn.to_kv(x).chunk(2, dim=-1)
    k = k.reshape(2, 7, attn.heads, -1).transpose(1, 2)
    v = v.reshape(2, 7, attn.heads, -1).transpose(1, 2)
    i = torch.arange(7)
    distance = (i[:, None] - i[None, :]).clamp(-attn.max_rel_pos, attn.max_rel_pos) + attn.max_rel_pos
    rel = attn.rel_pos_emb(distance)
    dots = (q @ k.transpose(-1, -2) + torch.einsum("bhid,ijd->bhij", q, rel)) * attn.scale
    out = (dots.softmax(-1) @ v).transpose(1, 2).reshape(2, 7, -1)
    torch.testing.assert_close(attn(x), attn.to_out(out), atol=1e-5, rtol=1e-5)


def test_autocast_bf16_on_cpu():
    torch.manual_seed(0)
    model = SSLModel.from_preset("micro").eval()
    wave = torch.randn(2, 2, 16000)
    with torch.no_grad():
        reference = model(wave)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(wave).float()
    # The front end runs in float32 under autocast, so bf16 only rounds the conformer: a few percent of the
    # logits' norm (3-6% on AMX/AVX512-BF16 Xeons, whose bf16 matmuls round differently from AMD's).
    assert (low - reference).norm() < 0.1 * reference.norm()
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(wave)
        loss = two_slot_cross_entropy(logits, torch.tensor([[3, 7], [10, 30]]))
    loss.backward()
    assert logits.dtype == torch.bfloat16 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_micro_overfits_one_batch():
    torch.manual_seed(0)
    # Frozen STFT: its weight gradient is most of a micro preset step's time on CPU (trainability is tested above).
    model = SSLModel.from_preset("micro", trainable_stft=False)
    wave = torch.randn(6, 2, 16000)
    classes = torch.sort(torch.randint(0, 36, (6, 2)), dim=-1).values
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    for _ in range(80):
        loss = two_slot_cross_entropy(model(wave), classes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.05:
            break
    assert loss.item() < 0.1, loss.item()
    model.eval()
    with torch.no_grad():
        assert (model(wave).argmax(-1) == classes).float().mean() > 0.9


@pytest.mark.slow
def test_torch_compile_cpu_matches_eager():
    torch.manual_seed(0)
    model = SSLModel.from_preset("micro").eval()
    wave = torch.randn(2, 2, 48000)
    with torch.no_grad():
        eager = model(wave)
        compiled = torch.compile(model)(wave)
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_autocast_forward_backward(dtype):
    model = SSLModel().cuda()
    wave = torch.randn(4, 2, 48000, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        loss = two_slot_cross_entropy(model(wave), torch.randint(0, 36, (4, 2), device="cuda").sort(-1).values)
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.gpu
def test_cuda_compile_bf16_matches_eager():
    model = SSLModel().cuda().eval()
    wave = torch.randn(4, 2, 48000, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        eager = model(wave).float()
        compiled = torch.compile(model)(wave).float()
    assert (compiled - eager).abs().max() < 0.05 * eager.abs().max() + 0.05


FRAMES = dict(tokens="frames", features="ipd_logpower", inter_channels=(), frames_per_token=4, dim=32, depth=1,
              heads=2, dim_head=16, conv_kernel=7, max_rel_pos=32, max_time_patches=128)


@pytest.mark.parametrize("samples", [512 + 3 * 160, 16000, 16000 * 3 + 77])
def test_frame_tokens_take_any_length_and_see_every_bin(samples):
    model = SSLModel.from_preset("micro", **FRAMES).eval()
    config = model.config
    assert config.min_samples() == 512 + 3 * 160 and config.freq_patches == 1
    with torch.no_grad():
        assert model(torch.randn(2, 2, samples)).shape == (2, 2, 36)
    # One token per 4 frames, built from every frequency bin and both features: a change confined to one bin of
    # one frame moves that frame's token and nothing before it in time.
    frames = (samples - 512) // 160 + 1
    assert config.time_patches(samples) == frames // 4
    embed = model.patch_embed[1]
    assert embed.in_features == 4 * 3 * 256


def test_log_power_feature_locates_energy_not_level():
    model = SSLModel.from_preset("micro", **FRAMES).eval()
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 1000 * t).expand(1, 2, -1).clone()
    maps = model.features(tone)
    assert maps.shape[1] == 3
    loud = model.features(tone * 100)
    torch.testing.assert_close(maps[:, 2], loud[:, 2], atol=1e-3, rtol=1e-3)  # standardized: level drops out
    peak_bin = maps[0, 2].mean(dim=-1).argmax().item() + 1  # +1: DC is dropped
    assert abs(peak_bin * 16000 / 512 - 1000) < 16000 / 512  # the energy sits in the 1 kHz bin
