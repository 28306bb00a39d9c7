"""Training control: early stopping, curves, warm starts, partial_fit, weights,
multilabel, long documents, progress, interrupts, non-finite losses, checkpoints."""

import io
import os
import re
import signal
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse
import sklearn
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError

from skattn import AttentionClassifier, AttentionEncoder
from skattn.datasets import load_r8
from skattn._loop import checkpoint_file

from .conftest import TINY, TOPIC_LABELS, TOPIC_TEXTS

QUIET = dict(TINY, n_iter_no_change=100)


def _fit(**params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return AttentionClassifier(**{**QUIET, **params}).fit(TOPIC_TEXTS, TOPIC_LABELS)


# -- early stopping and fitted attributes ---------------------------------------------


def test_training_attributes():
    clf = _fit(max_epochs=3)
    assert clf.n_iter_ == 3 == len(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_score_ is None
    assert clf.best_loss_ == min(clf.loss_curve_)
    tokens_per_epoch = sum(len(clf.tokenizer_.encode(text).ids) for text in TOPIC_TEXTS)
    assert clf.n_tokens_seen_ == 3 * tokens_per_epoch
    assert len(clf.vocabulary_) == clf.config_.vocab_size == clf.tokenizer_.get_vocab_size()
    assert clf.vocabulary_["[PAD]"] == 0


def test_early_stopping_stops_and_restores_the_best_epoch():
    clf = _fit(max_epochs=40, early_stopping=True, validation_fraction=1 / 3, n_iter_no_change=3, learning_rate=1e-2)
    assert clf.n_iter_ < 40
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_score_ == max(clf.validation_scores_)
    # The best epoch came n_iter_no_change epochs (or fewer, on ties) before the end.
    assert clf.validation_scores_.index(clf.best_score_) >= clf.n_iter_ - 1 - 3


def _tiny_module():
    """A tiny classifier of the topic corpus, seeded."""
    from skattn._heads import SequenceClassifier
    from skattn._model import EncoderConfig, TextEncoder

    config = EncoderConfig(vocab_size=_tiny_tokenizer().get_vocab_size(), max_length=16, d_model=8, n_heads=2, n_layers=1, d_ff=16, dropout=0.1, pooling="mean")
    torch.manual_seed(0)
    return SequenceClassifier(TextEncoder(config), 3)


def _tiny_tokenizer():
    from skattn._text import train_tokenizer

    return train_tokenizer(TOPIC_TEXTS, kind="wordpiece", vocab_size=100, lowercase=True)


def _tiny_train(module, loss_fn, **options):
    """The training loop over the topic corpus with plain values; ``options`` replace the defaults."""
    from skattn._loop import Stopping, TrainingData, adamw, linear_schedule, train
    from skattn._text import encode

    data = TrainingData(encode(_tiny_tokenizer(), TOPIC_TEXTS, max_length=16), targets=np.asarray(TOPIC_LABELS))
    optimizer = options.get("optimizer") or adamw(module.parameter_groups(1e-2, 0.0), 1e-2, torch.device("cpu"))
    settings = dict(
        optimizer=optimizer,
        scheduler=linear_schedule(optimizer, 4 * 3, 0.0),
        batch_size=8,
        max_epochs=4,
        stopping=Stopping(n_iter_no_change=2, tol=0.0),
        rng=np.random.default_rng(0),
        device=torch.device("cpu"),
        autocast_dtype=None,
        description="tiny",
    )
    return train(module, data, loss_fn, **{**settings, **options})


def _tiny_run(**options):
    """The training loop on a tiny classifier of the topic corpus, with plain values."""
    from skattn._heads import classification_loss

    module = _tiny_module()
    return module, _tiny_train(module, classification_loss(), **options)


def test_best_weights_are_restored():
    # Scripted validation scores: epoch 2 is best, so its weights must be the
    # final ones even though training went on for two more epochs.
    scores = iter([0.5, 0.9, 0.7, 0.6])
    snapshots = []

    def scripted(module, validation):
        snapshots.append({k: v.clone() for k, v in module.state_dict().items()})
        return next(scores)

    module, history = _tiny_run(validation=object(), score_fn=scripted, stopping=_stopping(n_iter_no_change=3, tol=0.0))
    assert len(history.loss_curve) == 4 and history.best_score == 0.9 and not history.stopped_early
    final = module.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[3][k]) for k in final)


def test_a_loss_that_stops_improving_stops_the_run():
    module, history = _tiny_run(stopping=_stopping(n_iter_no_change=1, tol=100.0))
    assert history.stopped_early and len(history.loss_curve) == 2


class _NaNAtStep:
    """A loss function that is NaN at one step, raises ``KeyboardInterrupt`` at another, and notes
    the weights each call sees (those left by the step before)."""

    def __init__(self, nan_step, interrupt_step=None):
        from skattn._heads import classification_loss

        self.loss = classification_loss()
        self.nan_step, self.interrupt_step = nan_step, interrupt_step
        self.seen = []

    def __call__(self, module, batch, rng):
        self.seen.append({name: tensor.clone() for name, tensor in module.state_dict().items()})
        if len(self.seen) == self.interrupt_step:
            raise KeyboardInterrupt
        loss = self.loss(module, batch, rng)
        return loss * float("nan") if len(self.seen) == self.nan_step else loss


def _same_weights(first, second):
    return all(torch.equal(first[name], second[name]) for name in first)


def _optimizer(module, fused):
    from skattn._loop import linear_schedule

    optimizer = torch.optim.AdamW(module.parameter_groups(1e-2, 0.0), lr=1e-2, fused=fused, foreach=None if fused else False)
    return dict(optimizer=optimizer, scheduler=linear_schedule(optimizer, 20, 0.0))


@pytest.mark.parametrize("fused", [True, False], ids=["fused, read at the epoch's end", "not fused, read each step"])
def test_a_non_finite_step_changes_no_weights_however_late_it_is_read(fused):
    # 18 documents in batches of 4: 5 steps per epoch. The loss of the 2nd step is
    # NaN, the others finite. A fused AdamW is told on the device to skip its
    # updates from the 2nd step on and the values are read at the end of the
    # epoch; any other optimizer is read before each update. Either way the run
    # stops naming the 2nd step, and no update after the 1st reached the weights.
    module = _tiny_module()
    settings = _optimizer(module, fused)
    loss_fn = _NaNAtStep(nan_step=2)
    with pytest.raises(FloatingPointError, match=r"the training loss became nan at epoch 1, batch 2; .*no weights"):
        _tiny_train(module, loss_fn, batch_size=4, **settings)
    assert len(loss_fn.seen) == (5 if fused else 2)
    for later in loss_fn.seen[2:]:  # the weights after steps 2, 3 and 4
        assert _same_weights(later, loss_fn.seen[1])
    state = settings["optimizer"].state[next(iter(module.parameters()))]
    assert float(state["step"]) == 1.0  # the skipped updates did not count as steps


def test_deferred_finite_checks_are_read_every_interval(monkeypatch):
    import skattn._loop

    monkeypatch.setattr(skattn._loop, "FINITE_CHECK_INTERVAL", 2)
    module = _tiny_module()
    loss_fn = _NaNAtStep(nan_step=2)
    with pytest.raises(FloatingPointError, match="epoch 1, batch 2"):
        _tiny_train(module, loss_fn, batch_size=4, **_optimizer(module, fused=True))
    assert len(loss_fn.seen) == 2  # read after the 2nd step, before its update


def test_a_non_finite_gradient_with_a_finite_loss_stops_the_run():
    from skattn._heads import classification_loss

    loss_of_batch = classification_loss()

    def loss_fn(module, batch, rng):
        # sqrt at 0: a finite value whose gradient is not.
        return loss_of_batch(module, batch, rng) + torch.sqrt(0.0 * next(module.parameters()).sum())

    with pytest.raises(FloatingPointError, match="the gradient norm became nan at epoch 1, batch 1"):
        _tiny_train(_tiny_module(), loss_fn)


def test_ctrl_c_after_an_unread_non_finite_step_reports_it():
    module = _tiny_module()
    before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    loss_fn = _NaNAtStep(nan_step=2, interrupt_step=4)
    with pytest.raises(FloatingPointError, match="epoch 1, batch 2"):
        _tiny_train(module, loss_fn, batch_size=4, **_optimizer(module, fused=True))
    assert _same_weights(module.state_dict(), before)  # back to the epoch's start


def test_the_loop_runs_under_a_float64_default_dtype():
    from skattn._heads import classification_loss

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        module = _tiny_module()
        history = _tiny_train(module, classification_loss(), max_epochs=2)
    finally:
        torch.set_default_dtype(previous)
    assert len(history.loss_curve) == 2 and all(np.isfinite(history.loss_curve))


def test_training_steps_read_no_values_back_from_the_device():
    # On a GPU, reading a tensor's value (.item(), float(), bool()) makes the
    # host wait for the device. The dispatcher sees each such read as
    # aten._local_scalar_dense, on the CPU too: a run may read a few values per
    # epoch (the finite checks, the epoch's loss and largest gradient norm),
    # none per step.
    from torch.utils._python_dispatch import TorchDispatchMode

    from skattn._heads import classification_loss

    class CountReads(TorchDispatchMode):
        reads = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                CountReads.reads += 1
            return func(*args, **(kwargs or {}))

    module = _tiny_module()
    runs = {}
    for max_epochs in (2, 4):
        CountReads.reads = 0
        with CountReads():
            _tiny_train(module, classification_loss(), max_epochs=max_epochs)
        runs[max_epochs] = CountReads.reads
    assert 0 < runs[2] <= 2 * 4  # 3 steps per epoch
    assert runs[4] == 2 * runs[2]


def _stopping(**fields):
    from skattn._loop import Stopping

    return Stopping(**fields)


def test_validation_split_is_stratified():
    from skattn._loop import TrainingData
    from skattn._text import encode, train_tokenizer

    tokenizer = train_tokenizer(TOPIC_TEXTS, kind="wordpiece", vocab_size=100, lowercase=True)
    targets = np.asarray(TOPIC_LABELS)
    data = TrainingData(encode(tokenizer, TOPIC_TEXTS, max_length=16), targets=targets)
    clf = AttentionClassifier(**dict(TINY, early_stopping=True, validation_fraction=1 / 3))
    for seed in range(5):
        _, validation = clf._split(data, np.random.default_rng(seed), stratify=targets)
        assert sorted(np.unique(validation.targets).tolist()) == [0, 1, 2]


def test_encoder_early_stopping_on_masked_language_model_loss():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        encoder = AttentionEncoder(**dict(QUIET, max_epochs=3, early_stopping=True, validation_fraction=0.25)).fit(TOPIC_TEXTS)
    assert len(encoder.validation_scores_) == 3
    assert all(score < 0 for score in encoder.validation_scores_)  # minus a cross-entropy


def test_convergence_warning_when_still_learning():
    with pytest.warns(ConvergenceWarning, match="max_epochs was reached"):
        AttentionClassifier(**dict(TINY, max_epochs=3, learning_rate=1e-2)).fit(TOPIC_TEXTS, TOPIC_LABELS)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_convergence_warning_after_a_single_epoch_on_real_data(early_stopping):
    # As MLPClassifier: a fit that max_epochs cut off after its first epoch
    # was still improving.
    X, y, _, _ = load_r8()
    params = dict(TINY, max_epochs=1, early_stopping=early_stopping)
    with pytest.warns(ConvergenceWarning, match="still improving by more than tol=0.0001"):
        AttentionClassifier(**params).fit(X[:300], y[:300])


def test_no_convergence_warning_when_stopped_by_the_rule():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = AttentionClassifier(**dict(TINY, max_epochs=20, tol=10.0, n_iter_no_change=2)).fit(TOPIC_TEXTS, TOPIC_LABELS)
    # With a huge tol no epoch after the first counts as an improvement.
    assert clf.n_iter_ == 3


# -- warm start and partial_fit ------------------------------------------------------------


def test_warm_start_continues_training():
    clf = _fit(max_epochs=2, warm_start=True)
    vocabulary, first_curve = clf.vocabulary_, list(clf.loss_curve_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert clf.n_iter_ == 4 and clf.loss_curve_[:2] == first_curve
    assert clf.vocabulary_ == vocabulary
    cold = _fit(max_epochs=2)
    assert not np.allclose(clf.predict_proba(TOPIC_TEXTS), cold.predict_proba(TOPIC_TEXTS))
    with pytest.raises(ValueError, match="warm_start=True needs the classes"):
        clf.fit(TOPIC_TEXTS, [label % 2 for label in TOPIC_LABELS])


def test_partial_fit_over_a_stream_of_chunks():
    clf = AttentionClassifier(**dict(TINY, learning_rate=1e-2))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(TOPIC_TEXTS[:6], TOPIC_LABELS[:6])
    clf.partial_fit(TOPIC_TEXTS[:6], TOPIC_LABELS[:6], classes=[0, 1, 2])
    tokenizer_json = clf.tokenizer_.to_str()
    for _ in range(15):
        for start in range(0, len(TOPIC_TEXTS), 6):
            clf.partial_fit(TOPIC_TEXTS[start : start + 6], TOPIC_LABELS[start : start + 6])
    assert clf.tokenizer_.to_str() == tokenizer_json  # trained on the first chunk only
    assert clf.n_iter_ == 1 + 15 * 3
    assert clf.score(TOPIC_TEXTS, TOPIC_LABELS) > 0.8
    with pytest.raises(ValueError, match=r"labels \[7\] that are not in classes"):
        clf.partial_fit(TOPIC_TEXTS[:2], [0, 7])
    with pytest.raises(ValueError, match="differs from the classes"):
        clf.partial_fit(TOPIC_TEXTS[:2], [0, 1], classes=[0, 1])


# -- sample weights ------------------------------------------------------------------------


def test_sample_weight_weighs_the_loss():
    weights = np.array([5.0 if label == 2 else 1.0 for label in TOPIC_LABELS])
    unweighted = _fit(max_epochs=2).predict_proba(TOPIC_TEXTS)[:, 2].mean()
    clf = AttentionClassifier(**dict(QUIET, max_epochs=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = clf.fit(TOPIC_TEXTS, TOPIC_LABELS, sample_weight=weights).predict_proba(TOPIC_TEXTS)[:, 2].mean()
    assert weighted > unweighted
    ones = AttentionClassifier(**dict(QUIET, max_epochs=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ones.fit(TOPIC_TEXTS, TOPIC_LABELS, sample_weight=np.ones(len(TOPIC_TEXTS)))
    np.testing.assert_allclose(ones.predict_proba(TOPIC_TEXTS), _fit(max_epochs=2).predict_proba(TOPIC_TEXTS), atol=1e-5)
    with pytest.raises(ValueError, match="non-negative"):
        AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS, sample_weight=-np.ones(len(TOPIC_TEXTS)))


def _short_and_long_classes():
    # Class "l" is every long document, so batches grouped by length hold one class each.
    words = "ab cd ef gh ij kl mn op".split()
    texts = [f"good {w}" for w in words] * 2
    texts += [f"the plot of this film was {w} and {w} again and again until the end" for w in words] * 2
    return texts, np.array(["s"] * 16 + ["l"] * 16)


@pytest.mark.parametrize("weighting", ["sample_weight", "class_weight"])
def test_weights_weigh_even_where_they_follow_the_length_of_the_documents(weighting):
    texts, labels = _short_and_long_classes()
    params = dict(QUIET, max_epochs=3, precision="fp32")
    unweighted = _fit_on(texts, labels, **params).predict_proba(texts)[:, 0].mean()  # classes_ = ["l", "s"]
    if weighting == "sample_weight":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = AttentionClassifier(**params).fit(texts, labels, sample_weight=np.where(labels == "l", 50.0, 1.0))
    else:
        clf = _fit_on(texts, labels, **params, class_weight={"l": 50.0, "s": 1.0})
    assert clf.predict_proba(texts)[:, 0].mean() > unweighted + 0.01


def test_only_the_ratios_of_sample_weights_matter_and_all_zero_weights_are_refused():
    texts, labels = _short_and_long_classes()
    weights = np.where(labels == "l", 3.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        once = AttentionClassifier(**QUIET).fit(texts, labels, sample_weight=weights).predict_proba(texts)
        scaled = AttentionClassifier(**QUIET).fit(texts, labels, sample_weight=weights * 1000).predict_proba(texts)
    np.testing.assert_allclose(scaled, once, atol=1e-5)
    with pytest.raises(ValueError, match="give every labeled training document a weight of zero"):
        AttentionClassifier(**TINY, class_weight={"l": 0.0, "s": 1.0}).fit(texts, labels, sample_weight=(labels == "l") * 1.0)


def test_the_scale_of_the_weights_leaves_early_stopping_as_it_was():
    weights = np.linspace(0.5, 2.0, len(TOPIC_TEXTS))
    params = dict(QUIET, early_stopping=True, validation_fraction=0.25, max_epochs=3, precision="fp32")
    scores = [
        AttentionEncoder(**params).fit(TOPIC_TEXTS, sample_weight=weights * scale).validation_scores_
        for scale in (1.0, 1000.0)
    ]
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-4)


def test_partial_fit_weighs_each_call_against_the_first():
    # One batch per call, so a call's loss is read before its only update.
    params = dict(QUIET, batch_size=64, precision="fp32")
    plain, weighted = AttentionClassifier(**params), AttentionClassifier(**params)
    for model in (plain, weighted):
        model.partial_fit(TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2])
    plain.partial_fit(TOPIC_TEXTS[:6], TOPIC_LABELS[:6])
    weighted.partial_fit(TOPIC_TEXTS[:6], TOPIC_LABELS[:6], sample_weight=np.full(6, 3.0))
    assert weighted.loss_curve_[-1] == pytest.approx(3 * plain.loss_curve_[-1], rel=1e-4)


def test_a_partial_fit_call_without_labeled_documents_accepts_weights():
    model = AttentionClassifier(**dict(QUIET, class_weight={0: 1.0, 1: 2.0, 2: 1.0}))
    model.partial_fit(TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2])
    with pytest.warns(UserWarning, match="labeled -1"):
        model.partial_fit(TOPIC_TEXTS[:4], [-1] * 4, sample_weight=np.ones(4))


def test_a_first_partial_fit_call_of_unlabeled_documents_computes_no_class_frequencies():
    model = AttentionClassifier(**QUIET)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # -1 documents that pretrain nothing
        warnings.simplefilter("error", RuntimeWarning)  # log(0 / 0) of the class frequencies
        model.partial_fit(TOPIC_TEXTS[:4], [-1] * 4, classes=[0, 1, 2])
    model.partial_fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert model._partial_class_counts.tolist() == [6, 6, 6]


def test_the_loss_of_a_batch_grows_with_its_weights():
    from skattn._heads import weighted_mean

    values = torch.tensor([1.0, 2.0, 3.0])
    assert float(weighted_mean(values, torch.full((3,), 3.0))) == pytest.approx(6.0)
    assert float(weighted_mean(values, None)) == pytest.approx(2.0)


def test_sample_weight_routes_through_pipeline_and_grid_search():
    weights = np.linspace(0.5, 2.0, len(TOPIC_TEXTS))
    with warnings.catch_warnings(), sklearn.config_context(enable_metadata_routing=True):
        warnings.simplefilter("ignore", ConvergenceWarning)
        direct = AttentionClassifier(**QUIET).fit(TOPIC_TEXTS, TOPIC_LABELS, sample_weight=weights)
        pipe = Pipeline([("clf", AttentionClassifier(**QUIET).set_fit_request(sample_weight=True))])
        pipe.fit(TOPIC_TEXTS, TOPIC_LABELS, sample_weight=weights)
        np.testing.assert_array_equal(pipe.predict_proba(TOPIC_TEXTS), direct.predict_proba(TOPIC_TEXTS))

        search = GridSearchCV(
            AttentionClassifier(**QUIET).set_fit_request(sample_weight=True).set_score_request(sample_weight=False),
            {"learning_rate": [1e-3, 1e-2]},
            cv=2,
        )
        search.fit(TOPIC_TEXTS, TOPIC_LABELS, sample_weight=weights)
        refit = AttentionClassifier(**dict(QUIET, **search.best_params_)).fit(TOPIC_TEXTS, TOPIC_LABELS, sample_weight=weights)
        np.testing.assert_array_equal(search.predict_proba(TOPIC_TEXTS), refit.predict_proba(TOPIC_TEXTS))


# -- multilabel ---------------------------------------------------------------------------


def _multilabel_corpus():
    # Label 0: about money; label 1: about sport; label 2: mentions "the".
    y = np.zeros((len(TOPIC_TEXTS), 3), dtype=int)
    y[:, 0] = [label == 0 for label in TOPIC_LABELS]
    y[:, 1] = [label == 1 for label in TOPIC_LABELS]
    y[:, 2] = ["the" in text.split() for text in TOPIC_TEXTS]
    return y


def test_multilabel_indicator_targets():
    y = _multilabel_corpus()
    clf = AttentionClassifier(**dict(QUIET, max_epochs=30, learning_rate=1e-2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(TOPIC_TEXTS, y)
    assert clf.classes_.tolist() == [0, 1, 2]
    predicted = clf.predict(TOPIC_TEXTS)
    assert predicted.shape == y.shape and set(np.unique(predicted)) <= {0, 1}
    proba = clf.predict_proba(TOPIC_TEXTS)
    assert proba.shape == y.shape and np.all((proba >= 0) & (proba <= 1))
    assert not np.allclose(proba.sum(axis=1), 1.0)  # independent sigmoids
    np.testing.assert_array_equal(predicted, (proba > 0.5).astype(int))
    assert f1_score(y, predicted, average="micro") > 0.9
    assert clf.decision_function(TOPIC_TEXTS).shape == y.shape
    with pytest.raises(ValueError, match="class_weight is not supported with multilabel"):
        AttentionClassifier(**TINY, class_weight="balanced").fit(TOPIC_TEXTS, y)


def test_a_sparse_label_indicator_matrix_is_read_as_the_dense_one():
    y = _multilabel_corpus()
    dense = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, y)
    sparse = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, scipy.sparse.csr_matrix(y))
    assert sparse.classes_.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(sparse.predict_proba(TOPIC_TEXTS), dense.predict_proba(TOPIC_TEXTS))


# -- logit adjustment --------------------------------------------------------------------


def test_logit_adjusted_loss_is_cross_entropy_on_shifted_logits():
    from skattn._heads import classification_loss

    offset = np.log(np.array([0.7, 0.2, 0.1]))
    logits = torch.tensor([[1.0, 0.5, -1.0], [0.0, 2.0, 0.3]])
    targets = torch.tensor([2, 1])

    class Module:
        def path_logits(self, **inputs):
            return [logits]

    class Batch:
        weights = None

        def __init__(self):
            self.targets = targets

        def inputs(self):
            return {}

    loss = classification_loss(logit_offset=offset)(Module(), Batch(), None)
    expected = torch.nn.functional.cross_entropy(logits + torch.tensor(offset, dtype=torch.float32), targets)
    assert torch.allclose(loss, expected)


def test_logit_adjustment_favours_the_rare_class():
    # Class 2 has 2 training documents against 12 and 12.
    rare = [i for i, label in enumerate(TOPIC_LABELS) if label == 2][:2]
    keep = [i for i, label in enumerate(TOPIC_LABELS) if label != 2] + rare
    texts, labels = [TOPIC_TEXTS[i] for i in keep] * 2, [TOPIC_LABELS[i] for i in keep] * 2
    probe = ["rain and storms", "sunny skies", "a light breeze tomorrow"]

    def rare_probability(tau):
        clf = _fit_on(texts, labels, max_epochs=4, logit_adjustment=tau)
        return clf.predict_proba(probe)[:, 2].mean()

    assert rare_probability(1.0) > rare_probability(0.0)


def _fit_on(texts, labels, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return AttentionClassifier(**{**QUIET, **params}).fit(texts, labels)


def test_logit_adjustment_has_no_effect_with_multilabel_y_and_must_be_non_negative():
    y = np.array([[label == 0, label != 2] for label in TOPIC_LABELS], dtype=int)
    adjusted = AttentionClassifier(**dict(TINY, logit_adjustment=1.0)).fit(TOPIC_TEXTS, y)
    plain = AttentionClassifier(**dict(TINY, logit_adjustment=0.0)).fit(TOPIC_TEXTS, y)
    np.testing.assert_array_equal(adjusted.predict_proba(TOPIC_TEXTS), plain.predict_proba(TOPIC_TEXTS))
    with pytest.raises(InvalidParameterError, match="'logit_adjustment' parameter"):
        AttentionClassifier(**dict(TINY, logit_adjustment=-1.0)).fit(TOPIC_TEXTS, TOPIC_LABELS)


def test_partial_fit_adjusts_logits_by_the_class_frequencies_of_all_calls_so_far():
    clf = AttentionClassifier(**dict(TINY, logit_adjustment=1.0))
    clf.partial_fit(TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2])  # 6 documents per class
    zeros = [text for text, label in zip(TOPIC_TEXTS, TOPIC_LABELS) if label == 0]
    clf.partial_fit(zeros, [0] * len(zeros))  # class 0 only: alone, it would look like the only class
    assert clf._partial_class_counts.tolist() == [12, 6, 6]
    assert np.isfinite(clf.predict_proba(TOPIC_TEXTS)).all()
    clf.fit(TOPIC_TEXTS, TOPIC_LABELS)  # a fit starts the count afresh
    assert not hasattr(clf, "_partial_class_counts")


# -- long documents -----------------------------------------------------------------------


def _long_documents(rng, n, max_length):
    """Documents ten times longer than max_length whose label is decided by their last words."""
    filler = "the market report was published today and many readers looked at it".split()
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice(filler, size=10 * max_length))
        words += [["apples", "oranges"][label]] * (max_length // 2)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def test_chunking_reads_the_whole_document():
    rng = np.random.default_rng(0)
    X, y = _long_documents(rng, 60, max_length=16)
    X_test, y_test = _long_documents(rng, 40, max_length=16)
    # The encoder alone: the n-gram path would see the whole document anyway.
    params = dict(QUIET, max_length=16, max_epochs=20, learning_rate=1e-2, pooling="max", ngram_range=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        chunked = AttentionClassifier(**params, long_text="chunk").fit(X, y)
        truncated = AttentionClassifier(**params).fit(X, y)
    assert chunked.score(X_test, y_test) > 0.9
    assert truncated.score(X_test, y_test) < 0.8  # the deciding word is cut off
    encoder = AttentionEncoder(**dict(TINY, max_length=16, long_text="chunk"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        embedded = encoder.fit(X).transform(X_test)
    assert embedded.shape == (40, TINY["d_model"])


# -- progress ------------------------------------------------------------------------------


@pytest.mark.parametrize("verbose, lines", [(0, 0), (1, 2), (2, 2)])
def test_progress_lines_when_stderr_is_not_a_terminal(capsys, verbose, lines):
    _fit(max_epochs=2, verbose=verbose)
    err = capsys.readouterr().err
    assert err.count("epoch ") == lines
    if lines:
        assert "loss" in err and "tokens/s" in err


def test_progress_bar_on_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _fit(max_epochs=2, verbose=1)
    output = terminal.getvalue()
    assert "AttentionClassifier 2/2" in output and "tokens_per_s" in output and "loss=" in output


# -- callbacks -------------------------------------------------------------------------------


class Recorder:
    """A callback keeping every event it receives."""

    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)


def test_callbacks_see_every_step_and_epoch_and_change_nothing():
    recorder = Recorder()
    clf = _fit(max_epochs=3, callbacks=[recorder])
    steps = [event for event in recorder.events if event.kind == "step"]
    epochs = [event for event in recorder.events if event.kind == "epoch"]
    # 18 documents in batches of 8: 3 steps per epoch, each followed by its epoch's event.
    assert [(e.kind, e.epoch, e.step) for e in recorder.events] == [
        (kind, epoch, step)
        for epoch in (1, 2, 3)
        for kind, step in [("step", 1), ("step", 2), ("step", 3), ("epoch", 3)]
    ]
    assert [e.loss for e in epochs] == pytest.approx(clf.loss_curve_)
    assert sum(e.tokens for e in steps) == sum(e.tokens for e in epochs) == clf.n_tokens_seen_
    assert all(e.validation_score is None for e in epochs)
    for event in steps:
        windows = sum(n for n, _ in event.batch_shapes)
        assert windows in (8, 2)  # one window per document, the last batch holds 2
        assert all(width >= 1 for _, width in event.batch_shapes)
        assert np.isfinite(event.loss) and event.seconds >= 0
    assert all(e.module is steps[0].module for e in recorder.events)
    # Watching does not change what is learned.
    np.testing.assert_array_equal(clf.predict_proba(TOPIC_TEXTS), _fit(max_epochs=3).predict_proba(TOPIC_TEXTS))


def test_callbacks_receive_validation_scores_with_early_stopping():
    recorder = Recorder()
    clf = _fit(max_epochs=3, early_stopping=True, validation_fraction=1 / 3, callbacks=[recorder])
    scores = [event.validation_score for event in recorder.events if event.kind == "epoch"]
    assert scores == clf.validation_scores_


def test_callbacks_run_during_pretraining_with_the_encoders_own_list():
    # The classifier pretrains a clone of the encoder. clone deep-copies a callable
    # object with its state, but not a function: these closures keep their lists.
    pretraining, fine_tuning = [], []
    encoder = AttentionEncoder(**dict(TINY, max_epochs=1, callbacks=[lambda e: pretraining.append(e.kind)]))
    clf = AttentionClassifier(
        **dict(QUIET, max_epochs=1, encoder=encoder, callbacks=[lambda e: fine_tuning.append(e.kind)])
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert pretraining == fine_tuning == ["step", "step", "step", "epoch"]


def test_keyboard_interrupt_from_an_epoch_callback_stops_after_that_epoch():
    def stop_after_second_epoch(event):
        if event.kind == "epoch" and event.epoch == 2:
            raise KeyboardInterrupt

    clf = AttentionClassifier(**dict(QUIET, max_epochs=10, callbacks=[stop_after_second_epoch]))
    with pytest.warns(RuntimeWarning, match="interrupted by the user \\(KeyboardInterrupt\\) at the end of epoch 2"):
        clf.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert np.all(np.isfinite(clf.predict_proba(TOPIC_TEXTS)))


def _raise(error):
    def action(event):
        raise error

    return action


def test_a_failing_callback_fails_fit_and_keeps_the_previous_model():
    clf = _fit(max_epochs=2)
    before, model = clf.predict_proba(TOPIC_TEXTS), clf.model_
    clf.set_params(callbacks=[AtStep(2, _raise(RuntimeError("tracker unreachable")))])
    with pytest.raises(RuntimeError, match="tracker unreachable"):
        clf.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert clf.model_ is model
    np.testing.assert_array_equal(clf.predict_proba(TOPIC_TEXTS), before)


@pytest.mark.parametrize("Estimator", [AttentionClassifier, AttentionEncoder])
def test_callbacks_that_are_not_callable_are_refused_before_training(Estimator):
    estimator = Estimator(**dict(TINY, callbacks=[print, "log"]))
    with pytest.raises(InvalidParameterError, match=rf"The 'callbacks' parameter of {Estimator.__name__} must be None or a list of callables; callbacks\[1\] is 'log', which is not callable."):
        estimator.fit(TOPIC_TEXTS, TOPIC_LABELS if Estimator is AttentionClassifier else None)
    assert not hasattr(estimator, "model_")
    with pytest.raises(InvalidParameterError, match="'callbacks' parameter"):
        Estimator(**dict(TINY, callbacks=print)).fit(TOPIC_TEXTS, TOPIC_LABELS)


# -- interrupts and non-finite losses ----------------------------------------------------


class AtStep:
    """A callback running ``action(event)`` at the ``step``-th optimizer step of the fit."""

    def __init__(self, step, action):
        self.step, self.action, self.seen = step, action, 0

    def __call__(self, event):
        if event.kind == "step":
            self.seen += 1
            if self.seen == self.step:
                self.action(event)


def _ctrl_c(event):
    os.kill(os.getpid(), signal.SIGINT)


def _corrupt_weights(value):
    def corrupt(event):
        with torch.no_grad():
            for parameter in event.module.parameters():
                parameter.fill_(value)

    return corrupt


@pytest.fixture
def sigint_raises():
    """Python's own SIGINT handler for the test, whatever the shell set (nohup, CI runners)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_after_the_batch_and_keeps_a_usable_model(sigint_raises):
    # TOPIC_TEXTS is 18 documents, batch_size 8: 3 batches per epoch.
    clf = AttentionClassifier(**dict(QUIET, max_epochs=10, callbacks=[AtStep(5, _ctrl_c)]))
    with pytest.warns(RuntimeWarning, match="interrupted by the user"):
        clf.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert clf.n_iter_ == 1  # one full epoch; the second was cut short
    proba = clf.predict_proba(TOPIC_TEXTS)
    assert np.all(np.isfinite(proba))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("warm", [False, True])
def test_ctrl_c_while_pretraining_the_encoder_stops_the_classifiers_fit(sigint_raises, warm):
    fine_tuning_epochs = []
    clf = AttentionClassifier(**dict(QUIET, max_epochs=3, callbacks=[lambda e: e.kind == "epoch" and fine_tuning_epochs.append(e)]))
    if warm:
        clf.fit(TOPIC_TEXTS, TOPIC_LABELS)
        fine_tuning_epochs.clear()
    before = clf.predict_proba(TOPIC_TEXTS) if warm else None
    # Cut off in its second epoch, the encoder keeps its first; the classifier has nothing to keep.
    clf.set_params(encoder=AttentionEncoder(**dict(QUIET, max_epochs=5, callbacks=[AtStep(5, _ctrl_c)])))
    with pytest.warns(RuntimeWarning, match="AttentionEncoder pretraining: training interrupted by the user"):
        with pytest.raises(KeyboardInterrupt, match="pretraining the encoder was interrupted"):
            clf.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert fine_tuning_epochs == []
    if warm:
        np.testing.assert_array_equal(clf.predict_proba(TOPIC_TEXTS), before)
    else:
        assert not hasattr(clf, "model_")
    assert not hasattr(clf.encoder, "model_")  # the parameter is cloned, never fitted


def test_fit_never_replaces_the_sigint_handler():
    seen = []
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup
    try:
        _fit(max_epochs=1, callbacks=[AtStep(2, lambda event: seen.append(signal.getsignal(signal.SIGINT)))])
        assert seen == [signal.SIG_IGN]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_model():
    clf = _fit(max_epochs=2, warm_start=True)
    before = clf.predict_proba(TOPIC_TEXTS)
    # Weights turned NaN by the 4th step (epoch 2, batch 1) make the next loss NaN.
    clf.set_params(callbacks=[AtStep(4, _corrupt_weights(float("nan")))])
    with pytest.raises(FloatingPointError, match=r"became nan at epoch 2, batch 2"):
        clf.fit(TOPIC_TEXTS, TOPIC_LABELS)
    np.testing.assert_array_equal(clf.predict_proba(TOPIC_TEXTS), before)
    assert clf.n_iter_ == 2
    unfitted = AttentionClassifier(**TINY, callbacks=[AtStep(1, _corrupt_weights(float("inf")))])
    with pytest.raises(FloatingPointError, match="epoch 1, batch 2"):
        unfitted.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert not hasattr(unfitted, "model_")


# -- checkpoints ---------------------------------------------------------------------------


def test_resume_from_checkpoint_matches_an_uninterrupted_fit(tmp_path, sigint_raises):
    params = dict(QUIET, max_epochs=4, checkpoint_dir=str(tmp_path))
    uninterrupted = _fit(**dict(QUIET, max_epochs=4)).predict_proba(TOPIC_TEXTS)

    interrupted = AttentionClassifier(**params, callbacks=[AtStep(8, _ctrl_c)])  # during epoch 3
    with pytest.warns(RuntimeWarning, match="interrupted"):
        interrupted.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint-attentionclassifier.pt"]
    assert checkpoint_file("AttentionEncoder pretraining") == "checkpoint-attentionencoder-pretraining.pt"

    resumed = _fit(**params, resume=True)
    assert resumed.n_iter_ == 4
    np.testing.assert_array_equal(resumed.predict_proba(TOPIC_TEXTS), uninterrupted)
    # A finished checkpoint gives the final model without training again.
    again = _fit(**params, resume=True)
    np.testing.assert_array_equal(again.predict_proba(TOPIC_TEXTS), uninterrupted)


def test_resume_refuses_a_checkpoint_of_another_fit(tmp_path):
    _fit(max_epochs=1, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"written by another fit \(other data, other parameters"):
        _fit(max_epochs=1, checkpoint_dir=str(tmp_path), resume=True, learning_rate=0.5)


@pytest.mark.parametrize("other", ["another fitted encoder", "another architecture", "no encoder"])
def test_resume_refuses_a_checkpoint_written_with_another_encoder(tmp_path, other):
    first = AttentionEncoder(**TINY).fit(TOPIC_TEXTS)
    second = {
        "another fitted encoder": AttentionEncoder(**dict(TINY, random_state=1)).fit(TOPIC_TEXTS),
        "another architecture": AttentionEncoder(**dict(TINY, d_model=8)).fit(TOPIC_TEXTS),
        "no encoder": None,
    }[other]
    _fit(max_epochs=1, checkpoint_dir=str(tmp_path), encoder=first)
    with pytest.raises(ValueError, match=r"written by another fit \(other data, other parameters"):
        _fit(max_epochs=1, checkpoint_dir=str(tmp_path), resume=True, encoder=second)
    # The same encoder resumes (here: the finished run is returned as it is).
    resumed = _fit(max_epochs=1, checkpoint_dir=str(tmp_path), resume=True, encoder=first)
    assert resumed.n_iter_ == 1


def test_a_classifier_and_its_encoder_share_a_checkpoint_dir(tmp_path):
    def stop_after_epoch_2(event):
        if event.kind == "epoch" and event.epoch == 2:
            raise KeyboardInterrupt

    def pretrained_classifier(**params):
        encoder = AttentionEncoder(**dict(QUIET, max_epochs=2, checkpoint_dir=str(tmp_path)))
        return AttentionClassifier(**dict(QUIET, max_epochs=4, checkpoint_dir=str(tmp_path), encoder=encoder), **params)

    uninterrupted = AttentionClassifier(**dict(QUIET, max_epochs=4, encoder=AttentionEncoder(**dict(QUIET, max_epochs=2))))
    expected = uninterrupted.fit(TOPIC_TEXTS, TOPIC_LABELS).predict_proba(TOPIC_TEXTS)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        pretrained_classifier(callbacks=[stop_after_epoch_2]).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "checkpoint-attentionclassifier.pt", "checkpoint-attentionencoder-pretraining.pt"
    ]
    resumed = pretrained_classifier(resume=True).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert resumed.n_iter_ == 4
    np.testing.assert_array_equal(resumed.predict_proba(TOPIC_TEXTS), expected)


@pytest.mark.parametrize("damage", [b"", b"not a checkpoint", "a list"], ids=["empty", "garbage", "a list"])
def test_a_damaged_checkpoint_is_refused_naming_it(tmp_path, damage):
    _fit(max_epochs=1, checkpoint_dir=str(tmp_path))
    path = tmp_path / "checkpoint-attentionclassifier.pt"
    if damage == "a list":
        torch.save([1, 2], path)
    else:
        path.write_bytes(damage)
    with pytest.raises(ValueError, match=r"AttentionClassifier: the checkpoint '.*checkpoint-attentionclassifier.pt' cannot be read: it is damaged or not a skattn checkpoint \(\w+\); delete the file, or set resume=False"):
        _fit(max_epochs=1, checkpoint_dir=str(tmp_path), resume=True)


def test_a_checkpoint_dir_that_cannot_be_created_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    model = AttentionClassifier(**dict(QUIET, checkpoint_dir=str(tmp_path / "file" / "ckpt")))
    with pytest.raises(ValueError, match=r"checkpoint_dir='.*ckpt' cannot be created"):
        model.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert not hasattr(model, "model_")
    AttentionClassifier(**dict(QUIET, max_epochs=1, checkpoint_dir=str(tmp_path / "new" / "ckpt"))).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert (tmp_path / "new" / "ckpt" / "checkpoint-attentionclassifier.pt").exists()


@pytest.mark.parametrize("random_state", [None, np.random.RandomState(0)], ids=["None", "a RandomState"])
def test_resume_with_early_stopping_needs_an_int_random_state(tmp_path, random_state):
    params = dict(QUIET, random_state=random_state, early_stopping=True, validation_fraction=1 / 3, resume=True)
    model = AttentionClassifier(**params, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match="resume=True with early_stopping=True needs an int random_state"):
        model.fit(TOPIC_TEXTS, TOPIC_LABELS)
    with pytest.raises(ValueError, match="partial_fit keeps its progress in the estimator itself"):
        model.partial_fit(TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2])
    AttentionClassifier(**params).fit(TOPIC_TEXTS, TOPIC_LABELS)  # without checkpoint_dir, resume does nothing


def test_a_checkpoint_of_an_earlier_skattn_is_named_in_a_warning(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"from an earlier version")
    with pytest.warns(UserWarning, match=r"'.*checkpoint.pt' was written by an earlier skattn.*starts from the beginning") as caught:
        model = AttentionClassifier(**dict(QUIET, max_epochs=1, checkpoint_dir=str(tmp_path), resume=True))
        model.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert model.n_iter_ == 1
    assert [w.filename for w in caught if "earlier skattn" in str(w.message)] == [__file__]  # the caller's line


def test_an_empty_or_dangling_checkpoint_dir_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_dir is empty: pass a directory's path, or None"):
        AttentionClassifier(**dict(QUIET, checkpoint_dir="")).fit(TOPIC_TEXTS, TOPIC_LABELS)
    link = tmp_path / "dangling"
    try:
        link.symlink_to(tmp_path / "gone")
    except (OSError, NotImplementedError):
        pytest.skip("this platform makes no symbolic links")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        AttentionClassifier(**dict(QUIET, checkpoint_dir=str(link))).fit(TOPIC_TEXTS, TOPIC_LABELS)


def test_partial_fit_writes_no_checkpoint_for_fit_to_resume(tmp_path):
    AttentionClassifier(**dict(QUIET, max_epochs=3, checkpoint_dir=str(tmp_path / "ckpt"))).partial_fit(
        TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2]
    )
    assert list(tmp_path.iterdir()) == []  # not even the directory
    with pytest.raises(ValueError, match="X and y have inconsistent lengths"):
        AttentionClassifier(**dict(QUIET, checkpoint_dir=str(tmp_path / "ckpt"))).fit(TOPIC_TEXTS, TOPIC_LABELS[:-1])
    assert list(tmp_path.iterdir()) == []  # nor a fit refused before training
    resumed = _fit(max_epochs=3, checkpoint_dir=str(tmp_path), resume=True)
    assert resumed.n_iter_ == 3
    np.testing.assert_array_equal(resumed.predict_proba(TOPIC_TEXTS), _fit(max_epochs=3).predict_proba(TOPIC_TEXTS))


def test_fits_at_the_same_time_may_share_a_checkpoint_dir(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    def fit(learning_rate):
        return _fit(max_epochs=6, learning_rate=learning_rate, checkpoint_dir=str(tmp_path)).n_iter_

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(fit, [1e-3, 2e-3, 3e-3, 4e-3])) == [6] * 4
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint-attentionclassifier.pt"]


def test_early_stopping_weighs_its_validation_score(monkeypatch):
    import skattn._base
    from sklearn.model_selection import train_test_split

    held_out = []

    def recording_split(*args, **kwargs):
        train, validation = train_test_split(*args, **kwargs)
        held_out.append(validation)
        return train, validation

    monkeypatch.setattr(skattn._base, "train_test_split", recording_split)
    # One epoch, so that the score is the fitted model's; the held-out documents' weights do not touch training.
    params = dict(QUIET, max_epochs=1, early_stopping=True, validation_fraction=1 / 3, precision="fp32",
                  ngram_range=None, learning_rate=1e-5)  # a model still wrong on some documents
    texts, labels = np.asarray(TOPIC_TEXTS), np.asarray(TOPIC_LABELS)
    plain = AttentionClassifier(**params).fit(texts, labels)
    rows = held_out[-1]
    correct = plain.predict(texts[rows]) == labels[rows]
    assert plain.validation_scores_ == [pytest.approx(np.mean(correct))] and 0 < np.mean(correct) < 1
    weights = np.ones(len(texts))
    weights[rows] = np.where(correct, 1.0, 9.0)  # the errors count nine times
    weighted = AttentionClassifier(**params).fit(texts, labels, sample_weight=weights)
    assert np.array_equal(held_out[-1], rows)
    correct = weighted.predict(texts[rows]) == labels[rows]
    assert weighted.validation_scores_ == [pytest.approx(np.average(correct, weights=weights[rows]))]
    assert weighted.validation_scores_[0] < plain.validation_scores_[0]


def test_early_stopping_on_too_little_data_names_validation_fraction():
    with pytest.raises(ValueError, match=r"early_stopping=True cannot hold out validation_fraction=0.1 of 6 training documents \(1 documents\) stratified over 3 classes: .*\. Use a larger validation_fraction"):
        AttentionClassifier(**dict(TINY, early_stopping=True)).fit(TOPIC_TEXTS[:6], TOPIC_LABELS[:6])
    # Too little left to train on: the advice turns around.
    with pytest.raises(ValueError, match=r"validation_fraction=0.9 of 18 .*\. Use a smaller validation_fraction"):
        AttentionClassifier(**dict(TINY, early_stopping=True, validation_fraction=0.9)).fit(TOPIC_TEXTS, TOPIC_LABELS)


# -- continuing a fitted model ------------------------------------------------------------


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(d_model=32, n_heads=4), "d_model=32 (the fitted model's is 16), n_heads=4 (the fitted model's is 2)"),
        (dict(dropout=0.3), "dropout=0.3"),
        (dict(max_length=16), "max_length=16"),
        (dict(ngram_range=None), "ngram_range=None (the fitted model's is (1, 2))"),
        (dict(ngram_range=(1, 3)), "ngram_range=(1, 3)"),
        (dict(vocab_size=150), "vocab_size=150 (the fitted model's is 200)"),
        (dict(tokenizer="bpe", lowercase=False), "tokenizer='bpe' (the fitted model's is 'wordpiece'), lowercase=False"),
    ],
)
def test_a_continued_fit_refuses_parameters_that_describe_another_model(change, named):
    warm = _fit(warm_start=True)
    partial = AttentionClassifier(**QUIET).partial_fit(TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2])
    for model, call, how in [(warm, "fit", "warm_start=True"), (partial, "partial_fit", "partial_fit")]:
        before = model.predict_proba(TOPIC_TEXTS)
        model.set_params(**change)
        with pytest.raises(ValueError, match=re.escape(f"{how} continues the fitted model, which these parameters would change: {named}")):
            getattr(model, call)(TOPIC_TEXTS, TOPIC_LABELS)
        np.testing.assert_array_equal(model.predict_proba(TOPIC_TEXTS), before)


@pytest.mark.parametrize("lowercase", [True, False])
def test_a_continued_fit_with_an_encoder_refuses_another_lowercase_for_the_ngram_path(lowercase):
    encoder = AttentionEncoder(**dict(TINY, max_epochs=1)).fit(TOPIC_TEXTS)
    params = dict(encoder=FrozenEstimator(encoder), warm_start=True, max_epochs=1, lowercase=lowercase)
    model = _fit_on(TOPIC_TEXTS, TOPIC_LABELS, **params)
    model.fit(TOPIC_TEXTS, TOPIC_LABELS)  # unchanged: continues
    assert model.n_iter_ == 2
    with pytest.raises(ValueError, match=re.escape(f"lowercase={not lowercase} (the fitted n-gram path's is {lowercase})")):
        model.set_params(lowercase=not lowercase).fit(TOPIC_TEXTS, TOPIC_LABELS)


def test_a_stream_that_pretrained_its_encoder_takes_unlabeled_documents_without_a_warning():
    model = AttentionClassifier(**dict(QUIET, encoder=AttentionEncoder(**dict(TINY, max_epochs=1))))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.partial_fit(TOPIC_TEXTS, TOPIC_LABELS[:12] + [-1] * 6, classes=[0, 1, 2])
        model.partial_fit(TOPIC_TEXTS, [-1] * 6 + TOPIC_LABELS[6:])
    assert model.n_iter_ == 2
    assert not [w for w in caught if "labeled -1" in str(w.message)]


def test_a_continued_fit_takes_unchanged_or_training_parameters():
    model = _fit(warm_start=True, max_epochs=1)
    model.set_params(ngram_range="auto", learning_rate=1e-2).fit(TOPIC_TEXTS, TOPIC_LABELS)  # "auto" keeps the range
    assert model.n_iter_ == 2
    encoder_model = AttentionEncoder(**dict(TINY, warm_start=True, max_epochs=1)).fit(TOPIC_TEXTS)
    with pytest.raises(ValueError, match=re.escape("pooling='max' (the fitted model's is 'mean')")):
        encoder_model.set_params(pooling="max").fit(TOPIC_TEXTS)


def test_validation_scores_stay_aligned_with_the_loss_curve_across_continued_fits():
    model = _fit(warm_start=True, max_epochs=2)
    assert model.validation_scores_ is None
    model.set_params(early_stopping=True, validation_fraction=0.3, max_epochs=2).fit(TOPIC_TEXTS * 2, TOPIC_LABELS * 2)
    model.set_params(early_stopping=False, max_epochs=1).fit(TOPIC_TEXTS, TOPIC_LABELS)
    scores = model.validation_scores_
    assert len(scores) == len(model.loss_curve_) == 5
    assert np.isnan(scores[:2]).all() and np.isfinite(scores[2:4]).all() and np.isnan(scores[4])


def test_partial_fit_trains_on_minus_one_when_the_classes_declare_it():
    labels = [label - 1 for label in TOPIC_LABELS]  # -1, 0, 1
    model = AttentionClassifier(**dict(QUIET, learning_rate=1e-2))
    for _ in range(15):
        model.partial_fit(TOPIC_TEXTS, labels, classes=[-1, 0, 1])
    assert model.classes_.tolist() == [-1, 0, 1]
    assert model.score(TOPIC_TEXTS, labels) > 0.8


def test_partial_fit_refuses_balanced_class_weights():
    model = AttentionClassifier(**dict(QUIET, class_weight="balanced"))
    with pytest.raises(ValueError, match=r"class_weight='balanced' is not supported by partial_fit"):
        model.partial_fit(TOPIC_TEXTS[:4], TOPIC_LABELS[:4], classes=[0, 1, 2])
    assert not hasattr(model, "model_")
    model.set_params(class_weight={0: 1.0, 1: 2.0, 2: 1.0}).partial_fit(TOPIC_TEXTS[:4], TOPIC_LABELS[:4], classes=[0, 1, 2])
    assert model.n_iter_ == 1


def test_a_continued_fit_keeps_the_kind_of_target():
    labels = np.asarray(TOPIC_LABELS) % 2
    indicator = np.column_stack([labels, 1 - labels])
    warm = _fit(warm_start=True)
    before = warm.predict_proba(TOPIC_TEXTS)
    with pytest.raises(ValueError, match=r"^warm_start=True continues a model fitted with y as one class per document; this y is a label-indicator matrix \(multilabel\)"):
        warm.fit(TOPIC_TEXTS, indicator[:, :1].repeat(3, axis=1))
    np.testing.assert_array_equal(warm.predict_proba(TOPIC_TEXTS), before)
    stream = AttentionClassifier(**QUIET).partial_fit(TOPIC_TEXTS, indicator, classes=[0, 1])
    with pytest.raises(ValueError, match=r"^partial_fit continues a model fitted with y as a label-indicator matrix \(multilabel\); this y is one class per document"):
        stream.partial_fit(TOPIC_TEXTS, labels)
    assert stream.predict(TOPIC_TEXTS[:2]).shape == (2, 2) and stream.n_iter_ == 1


def test_a_failed_partial_fit_call_leaves_the_stream_as_it_was():
    def fail_at_step_2(event):
        if event.kind == "step" and event.step == 2:
            raise RuntimeError("boom")

    reference = AttentionClassifier(**QUIET).partial_fit(TOPIC_TEXTS[:9], TOPIC_LABELS[:9], classes=[0, 1, 2])
    failed = AttentionClassifier(**QUIET).partial_fit(TOPIC_TEXTS[:9], TOPIC_LABELS[:9], classes=[0, 1, 2])
    failed.set_params(callbacks=[fail_at_step_2])
    with pytest.raises(RuntimeError, match="boom"):
        failed.partial_fit(TOPIC_TEXTS[9:], TOPIC_LABELS[9:])
    failed.set_params(callbacks=None)
    for model in (reference, failed):
        model.partial_fit(TOPIC_TEXTS[9:], TOPIC_LABELS[9:])
    np.testing.assert_array_equal(failed.predict_proba(TOPIC_TEXTS), reference.predict_proba(TOPIC_TEXTS))


def test_partial_fit_takes_a_learning_rate_and_weight_decay_set_between_calls():
    same = AttentionClassifier(**QUIET).partial_fit(TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2])
    changed = AttentionClassifier(**QUIET).partial_fit(TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2])
    changed.set_params(learning_rate=0.05, weight_decay=0.5)
    for model in (same, changed):
        model.partial_fit(TOPIC_TEXTS, TOPIC_LABELS)
    groups = changed._optimizer_state["param_groups"]
    assert groups[0]["lr"] == 0.05 and groups[0]["weight_decay"] == 0.5
    assert not np.allclose(changed.predict_proba(TOPIC_TEXTS), same.predict_proba(TOPIC_TEXTS))


def test_partial_fit_refuses_resume(tmp_path):
    model = AttentionClassifier(**dict(QUIET, checkpoint_dir=str(tmp_path), resume=True))
    with pytest.raises(ValueError, match="partial_fit keeps its progress in the estimator itself"):
        model.partial_fit(TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2])
    assert not hasattr(model, "model_")


def test_resume_after_a_warm_fit_names_its_starting_weights(tmp_path):
    model = _fit(warm_start=True, max_epochs=1, checkpoint_dir=str(tmp_path), resume=True)
    with pytest.raises(ValueError, match="with warm_start=True, other starting weights"):
        model.fit(TOPIC_TEXTS, TOPIC_LABELS)


# -- max_epochs="auto" --------------------------------------------------------------------------


def test_auto_max_epochs_shrinks_with_the_number_of_documents():
    from skattn._base import auto_max_epochs

    assert [auto_max_epochs(n) for n in (1, 500, 8_000, 8_421, 10_000, 11_293, 40_848, 1_000_000)] == [10, 10, 10, 10, 8, 7, 2, 2]


@pytest.mark.parametrize("estimator", [AttentionClassifier, AttentionEncoder])
def test_auto_max_epochs_is_what_fit_runs(monkeypatch, estimator):
    from skattn import _base

    # 18 documents: a budget of 54 document passes is 3 epochs.
    monkeypatch.setattr(_base, "AUTO_EPOCH_DOCUMENTS", 3 * len(TOPIC_TEXTS))
    params = {**TINY, "max_epochs": "auto"}
    fitted = estimator(**params).fit(TOPIC_TEXTS, TOPIC_LABELS if estimator is AttentionClassifier else None)
    assert fitted.n_iter_ == len(fitted.loss_curve_) == 3
    assert estimator().max_epochs == "auto"
