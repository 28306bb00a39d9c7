"""predict skips the encoder where the n-gram path settles a document: same predictions, fewer model calls."""

import math

import numpy as np
import pytest
import torch

import skattn._base
from skattn import AttentionClassifier
from skattn._model import pool
from skattn._settle import FLOAT32_ROUNDING, HALF_ROUNDING, settle
from skattn._shortcut import encoder_logit_bounds, rounding_allowance
from skattn.datasets import load_r8

from .conftest import TINY, TOPIC_LABELS, TOPIC_TEXTS

SMALL = dict(vocab_size=2000, max_length=96, d_model=64, n_heads=2, n_layers=1, d_ff=128, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def r8_small():
    X_train, y_train, X_test, y_test = load_r8()
    return X_train[:1500], np.asarray(y_train[:1500]), X_test[:600]


@pytest.fixture
def model_rows(monkeypatch):
    """The number of documents each call of the model saw, recorded."""
    rows = []
    infer = skattn._base.infer

    def counting_infer(forward, data, *args, **kwargs):
        rows.append(len(data))
        return infer(forward, data, *args, **kwargs)

    monkeypatch.setattr(skattn._base, "infer", counting_infer)
    return rows


def _full_model_labels(clf, X, tolerance=1e-2):
    """Labels from every document's full logits, and where the top two are within ``tolerance``.

    Documents that run the model may run in other batches under ``predict``
    than under ``decision_function``, which moves their logits a little
    (int8 layers scale each batch's inputs by its own maximum): their labels
    can differ only where the top two logits are that close.
    """
    scores = clf.decision_function(X)
    if scores.ndim == 1:
        scores = np.column_stack([np.zeros_like(scores), scores])
    top_two = np.sort(scores, axis=1)[:, -2:]
    return clf.classes_[scores.argmax(axis=1)], top_two[:, 1] - top_two[:, 0] < tolerance


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_encoder_logits_stay_within_the_bounds_for_any_hidden_states(pooling):
    torch.manual_seed(0)
    clf = AttentionClassifier(**TINY, pooling=pooling, device="cpu").fit(TOPIC_TEXTS, TOPIC_LABELS)
    model = clf.model_
    with torch.no_grad():  # weights far from their initial values, as after long training
        model.head.weight.normal_(0, 1.0)
        model.head.bias.normal_(0, 1.0)
        model.encoder.norm.weight.normal_(1, 0.5)
        model.encoder.norm.bias.normal_(0, 0.5)
    center, spread, _ = encoder_logit_bounds(model)
    hidden = torch.randn(500, 7, model.encoder.config.d_model) * torch.logspace(-3, 3, 500).view(-1, 1, 1)
    hidden[:100] += 50 * torch.randn(100, 1, model.encoder.config.d_model)  # tokens that all point one way
    keep = torch.arange(7) < torch.randint(1, 8, (500, 1))
    with torch.no_grad():
        logits = model.head(pool(model.encoder.norm(hidden), keep, pooling)).double().numpy()
    differences = logits[:, :, None] - logits[:, None, :]  # [n, i, j]: logit i minus logit j
    n_outputs = logits.shape[1]
    differences[:, np.arange(n_outputs), np.arange(n_outputs)] = logits  # the diagonal bounds the logit itself
    assert np.all(differences <= center + spread + 1e-9)
    assert np.all(differences >= center - spread - 1e-9)


def test_the_bound_is_reached_by_some_hidden_state():
    clf = AttentionClassifier(**TINY, device="cpu").fit(TOPIC_TEXTS, TOPIC_LABELS)
    model = clf.model_
    center, spread, _ = encoder_logit_bounds(model)
    gamma = model.encoder.norm.weight.detach()
    direction = (model.head.weight[0] - model.head.weight[1]).detach() * gamma
    direction = direction - direction.mean()
    hidden = (1e3 * direction / direction.norm()).view(1, 1, -1)  # one token, mean pooled
    with torch.no_grad():
        logits = model.head(pool(model.encoder.norm(hidden), torch.ones(1, 1, dtype=torch.bool), "mean"))[0]
    reached = float(logits[0] - logits[1])
    assert reached == pytest.approx(center[0, 1] + spread[0, 1], rel=1e-4)


def test_settle_needs_a_lead_beyond_the_encoders_reach():
    center = np.zeros((3, 3))
    spread = np.full((3, 3), 2.0)
    magnitude = np.zeros((3, 3))
    logits = np.array(
        [
            [5.0, 0.0, 0.0],  # lead 5 > reach 1 * 2: settled
            [2.0, 0.0, 1.9],  # lead 0.1 against class 2: not
            [0.0, 3.0, 3.0],  # a tie: not
            [0.0, 9.0, 1.0],  # lead 8: settled, class 1
        ]
    )
    settled, decisions = settle(logits, (center, spread, magnitude), 1.0, multilabel=False)
    assert settled.tolist() == [True, False, False, True]
    assert decisions[settled].argmax(axis=1).tolist() == [0, 1]
    settled, _ = settle(logits, (center, spread, magnitude), 0.0, multilabel=False)
    assert settled.tolist() == [True, True, False, True]  # without the encoder only the tie is open


def test_settle_leaves_a_lead_within_the_rounding_allowance_open():
    center, spread = np.zeros((2, 2)), np.full((2, 2), 2.0)
    allowance = FLOAT32_ROUNDING
    # A lead just past the encoder's reach of 2, by less than the allowance on the logits' sizes.
    logits = np.array([[2.0 + allowance, 0.0]])
    settled, _ = settle(logits, (center, spread, np.zeros((2, 2))), 1.0, multilabel=False, allowance=allowance)
    assert not settled.any()
    settled, _ = settle(logits, (center, spread, np.zeros((2, 2))), 1.0, multilabel=False, allowance=0.0)
    assert settled.all()
    # The head's magnitudes count too, each logit's own (the diagonal) included.
    logits = np.array([[2.5, 0.0]])
    settled, _ = settle(logits, (center, spread, np.zeros((2, 2))), 1.0, multilabel=False, allowance=allowance)
    assert settled.all()
    magnitude = np.array([[40.0, 0.0], [0.0, 40.0]])  # slack 2**-7 * (40 + 40 + 2.5) > the lead's 0.5 past the reach
    settled, _ = settle(logits, (center, spread, magnitude), 1.0, multilabel=False, allowance=allowance)
    assert not settled.any()


def test_rounding_allowance_follows_the_precision_of_the_head():
    assert rounding_allowance(None) == FLOAT32_ROUNDING
    assert rounding_allowance(torch.bfloat16) == HALF_ROUNDING
    assert rounding_allowance(torch.float16) == HALF_ROUNDING
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        assert rounding_allowance(None) == HALF_ROUNDING
    finally:
        torch.set_float32_matmul_precision(previous)


def test_settle_answers_nothing_from_non_finite_weights():
    logits = np.array([[50.0, 0.0], [0.0, 50.0]])
    bounds = (np.full((2, 2), np.nan), np.zeros((2, 2)), np.zeros((2, 2)))
    settled, _ = settle(logits, bounds, 0.25, multilabel=False)
    assert not settled.any()
    settled, _ = settle(logits, (np.zeros((2, 2)),) * 3, float("nan"), multilabel=False)
    assert not settled.any()


def test_settle_multilabel_decides_each_label_by_its_sign():
    center = np.diag([1.0, -1.0])
    spread = np.diag([2.0, 2.0])
    bounds = (center, spread, np.zeros((2, 2)))
    # The encoder's logit lies in [-1, 3] for label 0, in [-3, 1] for label 1.
    logits = np.array([[2.0, -2.0], [0.5, -2.0], [-4.0, 4.0]])
    settled, decisions = settle(logits, bounds, 1.0, multilabel=True)
    assert settled.tolist() == [True, False, True]
    assert decisions[0].tolist() == [1.0, -1.0]
    assert decisions[2].tolist() == [-1.0, 1.0]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_predict_skips_the_encoder_for_settled_documents_and_agrees_with_the_full_model(r8_small, model_rows, precision):
    X_train, y_train, X_test = r8_small
    clf = AttentionClassifier(**SMALL, max_epochs=3, precision=precision).fit(X_train, y_train)
    model_rows.clear()
    predicted = clf.predict(X_test)
    skipped = 1 - sum(model_rows) / len(X_test)
    assert 0.3 < skipped < 1, skipped  # both kinds of document are in the test
    full, too_close = _full_model_labels(clf, X_test, tolerance=1e-2 if precision == "fp32" else 0.25)
    assert np.array_equal(predicted[~too_close], full[~too_close])
    assert too_close.mean() < 0.05


def test_predict_agrees_with_the_full_model_under_autocast(r8_small, model_rows, monkeypatch):
    # Without skattn._fast (SKATTN_FAST_PATHS=0) there is no replica: the whole model,
    # head included, runs under bfloat16 autocast, where the larger rounding allowance applies.
    X_train, y_train, X_test = r8_small
    clf = AttentionClassifier(**SMALL, max_epochs=3, precision="bf16").fit(X_train, y_train)
    monkeypatch.setattr(skattn._base, "_fast", None)
    clf.__dict__.pop("_inference_replica", None)
    model_rows.clear()
    predicted = clf.predict(X_test)
    assert 0 < sum(model_rows) < len(X_test)
    full, too_close = _full_model_labels(clf, X_test, tolerance=0.25)
    assert np.array_equal(predicted[~too_close], full[~too_close])
    assert too_close.mean() < 0.05


@pytest.mark.parametrize("pooling", ["cls", "max"])
def test_predict_agrees_with_the_full_model_for_other_poolings_and_windows(r8_small, model_rows, pooling):
    X_train, y_train, X_test = r8_small
    params = dict(SMALL, max_length=48, long_text="chunk", pooling=pooling, max_epochs=3)
    clf = AttentionClassifier(**params).fit(X_train, y_train)
    model_rows.clear()
    predicted = clf.predict(X_test)
    assert sum(model_rows) < len(X_test)  # some documents settled
    full, too_close = _full_model_labels(clf, X_test, tolerance=0.25)
    assert np.array_equal(predicted[~too_close], full[~too_close])


def test_multilabel_predict_agrees_with_the_signs_of_the_full_logits(r8_small, model_rows):
    X_train, y_train, X_test = r8_small
    indicators = np.column_stack([y_train == "earn", y_train == "acq", np.isin(y_train, ["crude", "ship"])]).astype(int)
    clf = AttentionClassifier(**SMALL, max_epochs=3).fit(X_train, indicators)
    model_rows.clear()
    predicted = clf.predict(X_test)
    assert sum(model_rows) < len(X_test)
    scores = clf.decision_function(X_test)
    clear = np.all(np.abs(scores) > 1e-2, axis=1)
    assert np.array_equal(predicted[clear], (scores[clear] > 0).astype(int))
    assert predicted.sum(axis=0).min() > 0  # every label predicted somewhere


def test_without_the_encoders_weight_predict_never_runs_the_model(model_rows):
    clf = AttentionClassifier(**TINY, encoder_logit_scale=0.0).fit(TOPIC_TEXTS, TOPIC_LABELS)
    model_rows.clear()
    predicted = clf.predict(TOPIC_TEXTS)
    assert sum(model_rows) == 0
    assert np.array_equal(predicted, clf.classes_[clf.predict_proba(TOPIC_TEXTS).argmax(axis=1)])


def test_a_classifier_without_the_ngram_path_runs_the_model_on_every_document(model_rows):
    clf = AttentionClassifier(**TINY, ngram_range=None).fit(TOPIC_TEXTS, TOPIC_LABELS)
    model_rows.clear()
    predicted = clf.predict(TOPIC_TEXTS)
    assert sum(model_rows) == len(TOPIC_TEXTS)
    assert np.array_equal(predicted, clf.classes_[clf.decision_function(TOPIC_TEXTS).argmax(axis=1)])


def test_the_bound_grows_with_the_square_root_of_the_width():
    # A pooled vector's reach is sqrt(d_model) times a unit vector's: a guard on the formula's scale.
    clf = AttentionClassifier(**TINY, device="cpu").fit(TOPIC_TEXTS, TOPIC_LABELS)
    model = clf.model_
    with torch.no_grad():
        model.encoder.norm.bias.zero_()
        model.head.bias.zero_()
    center, spread, _ = encoder_logit_bounds(model)
    direction = (model.head.weight[0] - model.head.weight[2]).detach() * model.encoder.norm.weight.detach()
    expected = math.sqrt(model.encoder.config.d_model) * float((direction - direction.mean()).norm())
    assert spread[0, 2] == pytest.approx(expected)
    assert np.allclose(center, 0)
