"""Pickling with joblib, and repeatable fits across processes."""

import io
import pickle
import pickletools
import subprocess
import sys

import joblib
import numpy as np
import pytest
import torch

from skattn import AttentionClassifier, AttentionEncoder

from .conftest import TINY, TOPIC_LABELS, TOPIC_TEXTS


def _round_trip(estimator, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(estimator, path)
    return joblib.load(path)


def test_joblib_round_trip_classifier(fitted_classifier, tmp_path):
    restored = _round_trip(fitted_classifier, tmp_path)
    np.testing.assert_array_equal(restored.predict_proba(TOPIC_TEXTS), fitted_classifier.predict_proba(TOPIC_TEXTS))
    np.testing.assert_array_equal(restored.predict(TOPIC_TEXTS), fitted_classifier.predict(TOPIC_TEXTS))
    np.testing.assert_array_equal(restored.classes_, fitted_classifier.classes_)
    assert restored.get_params() == fitted_classifier.get_params()


def test_joblib_round_trip_encoder(fitted_encoder, tmp_path):
    restored = _round_trip(fitted_encoder, tmp_path)
    np.testing.assert_array_equal(restored.transform(TOPIC_TEXTS), fitted_encoder.transform(TOPIC_TEXTS))


def test_pickling_leaves_the_estimator_usable(fitted_classifier):
    before = fitted_classifier.predict_proba(TOPIC_TEXTS)
    joblib.dump(fitted_classifier, io.BytesIO())
    assert isinstance(fitted_classifier.model_, torch.nn.Module)
    np.testing.assert_array_equal(fitted_classifier.predict_proba(TOPIC_TEXTS), before)


def test_pickle_holds_cpu_tensors_and_tokenizer_json(fitted_classifier):
    state = fitted_classifier.__getstate__()
    assert isinstance(state["tokenizer_"], str)
    assert all(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in state["model_"].values())
    payload = pickle.dumps(fitted_classifier)
    modules, strings = set(), []
    for opcode, arg, _ in pickletools.genops(payload):
        if isinstance(arg, str):
            strings.append(arg)
        if opcode.name == "STACK_GLOBAL":  # the module and name were the last two strings
            modules.add(strings[-2])
        elif opcode.name == "GLOBAL":
            modules.add(arg.split(" ")[0])
    # No live module, optimizer or tokenizer object is pickled.
    assert "torch._utils" in modules  # tensors are there...
    assert not any(m.startswith(("torch.nn", "torch.optim", "tokenizers")) for m in modules)


def test_model_fitted_on_cuda_loads_without_cuda(fitted_classifier, monkeypatch):
    # A model's pickle never references a device: simulate loading on a
    # machine without CUDA.
    payload = io.BytesIO()
    joblib.dump(fitted_classifier, payload)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    payload.seek(0)
    restored = joblib.load(payload)
    assert next(restored.model_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(restored.predict(TOPIC_TEXTS), fitted_classifier.predict(TOPIC_TEXTS))


def test_pretrained_classifier_round_trip(tmp_path):
    clf = AttentionClassifier(**TINY, encoder=AttentionEncoder(**TINY)).fit(TOPIC_TEXTS, TOPIC_LABELS)
    restored = _round_trip(clf, tmp_path)
    np.testing.assert_array_equal(restored.predict_proba(TOPIC_TEXTS), clf.predict_proba(TOPIC_TEXTS))


_FIT_IN_SUBPROCESS = """
import hashlib, sys
sys.path.insert(0, {root!r})
from skattn import AttentionClassifier, AttentionEncoder
from tests.conftest import TINY, TOPIC_TEXTS, TOPIC_LABELS
clf = AttentionClassifier(**dict(TINY, tokenizer={kind!r}), encoder={encoder}).fit(TOPIC_TEXTS, TOPIC_LABELS)
print(hashlib.sha256(clf.predict_proba(TOPIC_TEXTS).tobytes()).hexdigest())
"""


def _fit_twice(kind, encoder):
    import pathlib

    root = str(pathlib.Path(__file__).resolve().parents[1])
    code = _FIT_IN_SUBPROCESS.format(root=root, kind=kind, encoder=encoder)
    return [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]


def test_same_seed_gives_identical_predictions_in_two_processes():
    first, second = _fit_twice("wordpiece", "None")
    assert first == second and len(first.strip()) == 64


def test_same_seed_with_pretraining_and_bpe_in_two_processes():
    first, second = _fit_twice("bpe", "AttentionEncoder(**TINY)")
    assert first == second


def test_random_state_changes_the_model():
    a = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS).predict_proba(TOPIC_TEXTS)
    b = AttentionClassifier(**dict(TINY, random_state=1)).fit(TOPIC_TEXTS, TOPIC_LABELS).predict_proba(TOPIC_TEXTS)
    assert not np.array_equal(a, b)


def test_fit_leaves_global_torch_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("precision", ["fp32", "auto", "int8"])
def test_a_first_fit_in_a_fresh_process_leaves_global_torch_state_alone(precision):
    # The first fit of a process also probes what the CPU and PyTorch build
    # run fastest (cached afterwards): those probes must not draw from torch's
    # global generator either.
    code = f"""
import torch
from skattn import AttentionClassifier
torch.manual_seed(123)
expected = torch.rand(3)
torch.manual_seed(123)
AttentionClassifier(**{TINY!r}, precision={precision!r}, device="cpu").fit({TOPIC_TEXTS!r}, {TOPIC_LABELS!r})
assert torch.equal(torch.rand(3), expected), "fit moved torch's global random state"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_estimator_pickled_before_the_activation_parameter_loads_as_gelu():
    clf = AttentionClassifier(**TINY, activation="gelu").fit(TOPIC_TEXTS, TOPIC_LABELS)
    state = clf.__getstate__()
    # What an older skattn wrote: no activation parameter, no config field.
    del state["activation"]
    old_config = type(clf.config_).__new__(type(clf.config_))
    old_config.__dict__.update({k: v for k, v in clf.config_.to_dict().items() if k != "activation"})
    state["config_"] = old_config
    restored = AttentionClassifier.__new__(AttentionClassifier)
    restored.__setstate__(pickle.loads(pickle.dumps(state)))
    assert restored.get_params()["activation"] == "gelu"
    assert restored.config_.activation == "gelu"
    np.testing.assert_array_equal(restored.predict_proba(TOPIC_TEXTS), clf.predict_proba(TOPIC_TEXTS))


def test_a_fitted_model_keeps_no_gradients(fitted_classifier):
    # The last training step's gradients would double the memory the fitted weights take.
    assert all(parameter.grad is None for parameter in fitted_classifier.model_.parameters())
