"""skattn's CPU fast paths agree with the plain PyTorch they replace.

Skipped as a whole where they are switched off (``SKATTN_FAST_PATHS=0``): the
rest of the suite then proves that only speed depends on them.
"""

import dataclasses
import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from skattn._heads import SequenceClassifier
from skattn._model import TextEncoder

from .test_model import CONFIG, padded_ids

try:
    from skattn import _fast
except ImportError:
    pytest.skip("fast paths switched off (SKATTN_FAST_PATHS=0)", allow_module_level=True)
FusedBlock, NumpyDropout, OneDNNLinear = _fast.FusedBlock, _fast.NumpyDropout, _fast.OneDNNLinear
inference_replica, onednn_linear_works = _fast.inference_replica, _fast.onednn_linear_works


@pytest.mark.skipif(not onednn_linear_works(), reason="PyTorch build without a working oneDNN linear op (torch.ops.mkldnn); skattn falls back to nn.Linear")
@pytest.mark.parametrize("activation, reference", [(None, lambda y: y), ("relu", F.relu), ("gelu", F.gelu)])
def test_onednn_linear_matches_linear_and_activation(activation, reference):
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(32, 48).to(torch.bfloat16)
    x = torch.randn(3, 5, 32, generator=generator).to(torch.bfloat16)
    with torch.inference_mode():
        torch.testing.assert_close(OneDNNLinear(linear, activation)(x), reference(linear(x)), atol=2e-2, rtol=2e-2)
        residual = torch.randn(3, 5, 48, generator=generator).to(torch.bfloat16)
        if activation is None:
            torch.testing.assert_close(OneDNNLinear(linear)(x, residual), linear(x) + residual, atol=3e-2, rtol=2e-2)
        else:
            with pytest.raises(ValueError, match="without activation"):
                OneDNNLinear(linear, activation)(x, residual)


def test_onednn_linear_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match="Unknown activation 'tanh'"):
        OneDNNLinear(torch.nn.Linear(4, 4), "tanh")


@pytest.mark.skipif(not onednn_linear_works(), reason="PyTorch build without a working oneDNN linear op (torch.ops.mkldnn); skattn falls back to nn.Linear")
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_fused_replica_matches_the_plain_replica(activation):
    torch.manual_seed(0)
    model = SequenceClassifier(TextEncoder(dataclasses.replace(CONFIG, activation=activation)), 3).eval()
    ids = padded_ids(torch.Generator().manual_seed(1))
    plain = inference_replica(model, torch.bfloat16, fuse=False)
    fused = inference_replica(model, torch.bfloat16, fuse=True)
    assert isinstance(fused.encoder.blocks[0], FusedBlock)
    assert fused.encoder.blocks[0].up.post_op == activation
    assert isinstance(plain.encoder.blocks[0].ff.up, torch.nn.Linear)
    with torch.inference_mode():
        torch.testing.assert_close(fused(ids), plain(ids), atol=2e-2, rtol=2e-2)
        torch.testing.assert_close(fused(ids), model(ids), atol=5e-2, rtol=5e-2)
    # The replica is a copy: the fitted model keeps its own float32 weights.
    assert model.encoder.blocks[0].ff.up.weight.dtype == torch.float32


FLOAT32_FUSION = pytest.mark.skipif(
    not onednn_linear_works(torch.float32),
    reason="PyTorch build without a working float32 oneDNN linear op (torch.ops.mkldnn); skattn keeps the plain model",
)


@FLOAT32_FUSION
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_float32_fused_replica_matches_the_model(activation):
    torch.manual_seed(0)
    model = SequenceClassifier(TextEncoder(dataclasses.replace(CONFIG, activation=activation)), 3).eval()
    ids = padded_ids(torch.Generator().manual_seed(1))
    fused = inference_replica(model, torch.float32)  # fuse=None: fused on the CPU
    assert isinstance(fused.encoder.blocks[0], FusedBlock)
    assert fused.encoder.blocks[0].up.post_op == activation
    with torch.inference_mode():
        torch.testing.assert_close(fused(ids), model(ids), atol=1e-5, rtol=1e-5)
    # A snapshot: the model keeps its own modules and weights.
    assert isinstance(model.encoder.blocks[0].ff.up, torch.nn.Linear)
    assert fused.encoder.token_embedding.weight is not model.encoder.token_embedding.weight


def test_fusion_is_chosen_only_where_it_runs():
    assert not _fast.fusion_pays(torch.device("cuda"), torch.float32)
    assert not _fast.fusion_pays(torch.device("cpu"), torch.float16)
    assert _fast.fusion_pays(torch.device("cpu"), torch.float32) == onednn_linear_works(torch.float32)
    native = _fast.cpu_has_native_bf16() and onednn_linear_works(torch.bfloat16)
    assert _fast.fusion_pays(torch.device("cpu"), torch.bfloat16) == native


@FLOAT32_FUSION
def test_a_float32_classifier_predicts_through_the_fused_replica_as_through_its_model():
    from skattn import AttentionClassifier

    from .conftest import TINY, TOPIC_LABELS, TOPIC_TEXTS

    clf = AttentionClassifier(**{**TINY, "precision": "fp32", "device": "cpu"}).fit(TOPIC_TEXTS, TOPIC_LABELS)
    device, dtype, replica = clf._inference_replica
    assert (device.type, dtype) == ("cpu", None)
    assert isinstance(replica.encoder.blocks[0], FusedBlock)
    fused = clf.predict_proba(TOPIC_TEXTS)
    del clf._inference_replica
    with mock.patch.object(_fast, "fusion_pays", return_value=False):
        plain = clf.predict_proba(TOPIC_TEXTS)  # the float32 model itself
    np.testing.assert_allclose(fused, plain, atol=1e-6)


INT8 = pytest.mark.skipif(
    not _fast.int8_linear_works(),
    reason="PyTorch build without a working dynamically quantized linear layer; skattn predicts in float32",
)


@INT8
def test_int8_replica_matches_the_model():
    torch.manual_seed(0)
    model = SequenceClassifier(TextEncoder(CONFIG), 3).eval()
    ids = padded_ids(torch.Generator().manual_seed(1))
    replica = _fast.int8_replica(model)
    block = replica.encoder.blocks[0]
    layers = (block.attention.qkv, block.attention.out, block.ff.up, block.ff.down)
    assert all(isinstance(layer, torch.ao.nn.quantized.dynamic.Linear) for layer in layers)
    with torch.inference_mode():
        expected = model(ids)
        assert (replica(ids) - expected).abs().max() <= 0.05 * expected.abs().max()
    # A snapshot: the model keeps its float32 layers; the heads stay float32 in the replica too.
    assert isinstance(model.encoder.blocks[0].ff.up, torch.nn.Linear)
    assert isinstance(replica.head, torch.nn.Linear) and replica.head.weight is not model.head.weight


def test_int8_is_chosen_only_where_it_runs():
    from skattn import _devices

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    works = _fast.int8_linear_works()
    assert _devices.resolve_inference_precision("int8", cpu) == (torch.qint8 if works else None)
    assert _devices.resolve_inference_precision("int8", cuda) is None
    assert _devices.resolve_inference_precision("fp32", cpu) is None
    assert _devices.resolve_precision("int8", cpu) is None  # training runs in float32
    assert not _fast.int8_pays(cuda)
    x86 = torch.backends.quantized.engine in ("x86", "fbgemm")
    for avx512, vnni, pays in [(False, False, True), (True, False, False), (True, True, True)]:
        with mock.patch.object(torch.cpu, "_is_avx512_supported", return_value=avx512, create=True), \
                mock.patch.object(torch.cpu, "_is_vnni_supported", return_value=vnni, create=True):
            assert _fast.int8_pays(cpu) == (pays and x86 and works)
            with mock.patch.object(_devices, "cpu_has_native_bf16", return_value=False):
                assert _devices.resolve_inference_precision("auto", cpu) == (torch.qint8 if pays and x86 and works else None)
    with mock.patch.object(_devices, "cpu_has_native_bf16", return_value=True):
        assert _devices.resolve_inference_precision("auto", cpu) == torch.bfloat16
    with mock.patch.object(_fast, "_int8_linear_works", return_value=False):
        assert _devices.resolve_inference_precision("int8", cpu) is None
        assert not _fast.int8_pays(cpu)


@pytest.fixture(scope="module")
def r8_subset():
    from skattn.datasets import load_r8

    X_train, y_train, X_test, y_test = load_r8()
    return X_train[:1000], y_train[:1000], X_test[:500], y_test[:500]


@INT8
def test_int8_predictions_agree_with_float32_on_r8(r8_subset):
    import pickle

    from skattn import AttentionClassifier

    X_train, y_train, X_test, y_test = r8_subset
    small = dict(vocab_size=2000, d_model=64, n_heads=2, n_layers=2, d_ff=128, max_epochs=3, random_state=0, device="cpu")
    clf = AttentionClassifier(**small, precision="int8").fit(X_train, y_train)
    assert clf.fit_precision_ == "fp32"  # trained in float32
    assert clf._inference_replica[1] == torch.qint8
    int8 = clf.predict_proba(X_test)
    fp32 = pickle.loads(pickle.dumps(clf)).set_params(precision="fp32").predict_proba(X_test)
    assert not np.array_equal(int8, fp32)  # the int8 replica ran
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X_test), int8)
    np.testing.assert_allclose(int8, fp32, atol=0.05)
    assert np.mean(int8.argmax(axis=1) == fp32.argmax(axis=1)) >= 0.98
    accuracy = np.mean(clf.classes_[int8.argmax(axis=1)] == y_test)
    assert accuracy >= np.mean(clf.classes_[fp32.argmax(axis=1)] == y_test) - 0.01 and accuracy > 0.7
    # Inputs are scaled per batch: a document's probabilities move a little with its batch.
    alone = np.vstack([clf.predict_proba([document]) for document in X_test[:40]])
    np.testing.assert_allclose(alone, int8[:40], atol=1e-2)


@INT8
@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_int8_embeddings_move_little_with_the_other_documents_of_a_batch(r8_subset, pooling):
    from skattn import AttentionEncoder

    X_train, _, X_test, _ = r8_subset
    small = dict(vocab_size=2000, d_model=64, n_heads=2, n_layers=2, d_ff=128, max_epochs=1, random_state=0, device="cpu")
    encoder = AttentionEncoder(**small, pooling=pooling, precision="int8").fit(X_train[:500])
    documents = list(X_test[:60]) + ["", " ", "a", "x" * 4000]
    together = encoder.transform(documents)
    alone = np.vstack([encoder.transform([document]) for document in documents])
    largest = np.abs(alone).max(axis=1)
    assert np.all(np.abs(together - alone).max(axis=1) <= 0.05 * largest)
    assert not np.array_equal(together, alone)  # the int8 replica ran, scaled per batch


def test_cpu_dropout_masks():
    x = torch.ones(200, 500, requires_grad=True)
    dropout = NumpyDropout(0.1).train()
    with torch.random.fork_rng():
        torch.manual_seed(3)
        y = dropout(x)
        torch.manual_seed(3)
        again = dropout(x)
    torch.testing.assert_close(y, again)  # torch's seed decides the mask
    assert abs(float((y == 0).float().mean()) - 0.1) < 0.005
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.9))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # gradient flows through kept elements only
    assert torch.equal(dropout.eval()(x), x)
    assert y.dtype == torch.float32
    assert NumpyDropout(0.1).train()(torch.ones(4, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_training_swaps_in_the_fast_parts_and_keeps_the_function():
    torch.manual_seed(0)
    model = SequenceClassifier(TextEncoder(CONFIG), 3).eval()
    ids = padded_ids(torch.Generator().manual_seed(1))
    with torch.inference_mode():
        before = model(ids)
    _fast.speed_up_training(model)
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert all(block.attention.kernel is _fast.cpu_training_attention for block in model.encoder.blocks)
    with torch.inference_mode():
        torch.testing.assert_close(model(ids), before)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model.train()(ids)  # the explicit attention, NumPy dropout masks
    assert torch.isfinite(bf16).all()


def test_skattn_runs_without_its_fast_paths():
    # Switched off, skattn behaves as if _fast.py were deleted: it still fits,
    # predicts, transforms and pickles, on the plain model.
    code = """
import pickle, numpy as np, skattn._base as base
from skattn import AttentionClassifier, AttentionEncoder
texts = ["a good film", "great acting", "a bad film", "awful acting"] * 4
labels = ["pos", "pos", "neg", "neg"] * 4
small = dict(d_model=16, n_heads=2, d_ff=32, max_epochs=2, random_state=0, precision="bf16", device="cpu")
clf = AttentionClassifier(**small).fit(texts, labels)
assert base._fast is None
assert type(clf.model_.encoder.blocks[0].attention.dropout).__name__ == "Dropout"
proba = pickle.loads(pickle.dumps(clf)).predict_proba(texts)
assert np.allclose(proba, clf.predict_proba(texts)) and np.allclose(proba.sum(axis=1), 1)
assert np.isfinite(AttentionEncoder(**small).fit(texts).transform(texts)).all()
# precision="int8" needs the fast paths: without them it trains and predicts in float32.
as_int8 = AttentionClassifier(**{**small, "precision": "int8"}).fit(texts, labels).predict_proba(texts)
assert np.array_equal(as_int8, AttentionClassifier(**{**small, "precision": "fp32"}).fit(texts, labels).predict_proba(texts))
try:
    import skattn._fast
except ImportError:
    print("ok")
"""
    env = dict(os.environ, SKATTN_FAST_PATHS="0")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
