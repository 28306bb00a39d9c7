"""The plain PyTorch model: attention, activations, configs."""

import dataclasses
import pickle

import pytest
import torch
from torch.nn import functional as F

from skattn._heads import SequenceClassifier
from skattn._model import EncoderConfig, SelfAttention, TextEncoder, explicit_attention

CONFIG = EncoderConfig(
    vocab_size=50, max_length=24, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0, pooling="mean"
)


def padded_ids(generator):
    ids = torch.randint(5, CONFIG.vocab_size, (3, 20), generator=generator)
    ids[0, 12:] = CONFIG.pad_id
    ids[2, 5:] = CONFIG.pad_id
    return ids


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def testexplicit_attention_matches_scaled_dot_product_attention(dtype, tolerance):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 7, 8, generator=generator, dtype=torch.float64) for _ in range(3))
    attend = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    attend[1, ..., 4:] = False  # the second sequence has three padding keys
    inputs = [t.to(dtype).requires_grad_() for t in (q, k, v)]
    reference = [t.detach().double().requires_grad_() for t in inputs]

    fast = explicit_attention(*inputs, attend)
    exact = F.scaled_dot_product_attention(*reference, attn_mask=attend)
    torch.testing.assert_close(fast.double(), exact, atol=tolerance, rtol=tolerance)

    fast.double().square().sum().backward()
    exact.square().sum().backward()
    for mine, theirs in zip(inputs, reference):
        torch.testing.assert_close(mine.grad.double(), theirs.grad, atol=5 * tolerance, rtol=5 * tolerance)
    assert torch.all(inputs[1].grad[1, :, 4:] == 0)  # masked keys get no gradient


def testexplicit_attention_gives_uniform_weights_to_a_fully_masked_row():
    q = k = torch.zeros(1, 1, 3, 2)
    v = torch.arange(6.0).view(1, 1, 3, 2)
    y = explicit_attention(q, k, v, torch.zeros(1, 1, 1, 3, dtype=torch.bool))
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[0, 0, 0], v[0, 0].mean(dim=0))


def test_bf16_training_attention_follows_the_fp32_model():
    torch.manual_seed(0)
    model = SequenceClassifier(TextEncoder(CONFIG), 3).train()
    ids = padded_ids(torch.Generator().manual_seed(1))
    fp32 = model(ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model(ids)  # the unfused attention path
    torch.testing.assert_close(bf16.float(), fp32, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("activation, module", [("relu", torch.nn.ReLU), ("gelu", torch.nn.GELU)])
def test_feed_forward_uses_the_configured_activation(activation, module):
    encoder = TextEncoder(dataclasses.replace(CONFIG, activation=activation))
    assert all(isinstance(block.ff.activation, module) for block in encoder.blocks)


def test_a_config_saved_without_activation_loads_as_gelu():
    # Models saved before the activation option were GELU models; their
    # pickled config has no "activation" entry.
    state = {key: value for key, value in CONFIG.to_dict().items() if key != "activation"}
    config = EncoderConfig.__new__(EncoderConfig)
    config.__dict__.update(state)
    restored = pickle.loads(pickle.dumps(config))
    assert restored.activation == "gelu"
    assert isinstance(TextEncoder(restored).blocks[0].ff.activation, torch.nn.GELU)


def _training_device():
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def test_training_attention_gradients_stay_finite_when_every_score_is_very_negative():
    # The case that made default fits on short texts stop with a NaN gradient
    # norm on an H200: a padded width of 64, a mask, and query rows whose
    # scores are all below -88.7 (PyTorch issue 196678, cuDNN's attention
    # backward). Runs on CUDA where available: there the fused kernel fails it.
    device = _training_device()
    config = dataclasses.replace(CONFIG, d_model=64, n_heads=1, max_length=64)
    attention = SelfAttention(config).to(device).train()
    with torch.no_grad():
        attention.qkv.weight.zero_()
        attention.qkv.bias.zero_()
        attention.qkv.weight[0, 0] = 1.0  # q = x[0] e0
        attention.qkv.weight[64, 0] = -120 * 8.0  # k = -960 x[0] e0: every score is -120
        attention.qkv.weight[128:, :] = torch.eye(64)  # v = x
    x = torch.zeros(4, 64, 64, device=device)
    x[..., 0] = 1.0
    x[..., 1:] = torch.randn(4, 64, 63, generator=torch.Generator().manual_seed(0)).to(device) * 0.1
    x.requires_grad_()
    attend = torch.ones(4, 1, 1, 64, dtype=torch.bool, device=device)
    attend[1, ..., 10:] = False
    attend[3, ..., 33:] = False
    with torch.autocast(device.type, dtype=torch.bfloat16):
        y = attention(x, attend)
    y.float().square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in attention.parameters())
