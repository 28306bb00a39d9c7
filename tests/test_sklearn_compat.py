"""scikit-learn API compatibility: estimator checks, meta-estimators, text equivalents of data checks."""

import copy

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.utils import estimator_checks

import skattn
from skattn import AttentionClassifier, AttentionEncoder

from .conftest import LABELS, TEXTS, TINY, TOPIC_LABELS, TOPIC_TEXTS, joblib_worker_threads

FITTED_ATTRIBUTES = ["tokenizer_", "config_", "model_", "loss_curve_", "n_iter_"]

# Checks that need no numeric data (check_param_validation fails on the
# parameters before ever looking at X).
DATA_FREE_CHECKS = [
    name
    for name in [
        "check_no_attributes_set_in_init",
        "check_parameters_default_constructible",
        "check_get_params_invariance",
        "check_set_params",
        "check_estimator_repr",
        "check_mixin_order",
        "check_estimator_cloneable",
        "check_estimator_tags_renamed",
        "check_valid_tag_types",
        "check_do_not_raise_errors_in_init_or_set_params",
        "check_param_validation",
        "check_estimators_unfitted",
    ]
    if hasattr(estimator_checks, name)
]


@pytest.fixture(scope="module")
def binary_classifier():
    return AttentionClassifier(**TINY).fit(TEXTS, LABELS)


@pytest.fixture(scope="module")
def fp32_classifier():
    return AttentionClassifier(**{**TINY, "precision": "fp32"}).fit(TOPIC_TEXTS, TOPIC_LABELS)


# -- scikit-learn's own checks --------------------------------------------------


@pytest.mark.parametrize("check_name", DATA_FREE_CHECKS)
@pytest.mark.parametrize("Estimator", [AttentionClassifier, AttentionEncoder])
def test_sklearn_data_free_checks(check_name, Estimator):
    getattr(estimator_checks, check_name)(Estimator.__name__, Estimator())


@pytest.mark.parametrize(
    "check_name", ["check_transformers_unfitted", "check_get_feature_names_out_error"]
)
def test_sklearn_transformer_checks(check_name):
    getattr(estimator_checks, check_name)("AttentionEncoder", AttentionEncoder())


@pytest.mark.parametrize("Estimator", [AttentionClassifier, AttentionEncoder])
def test_tags_declare_string_input(Estimator):
    tags = Estimator().__sklearn_tags__()
    assert tags.input_tags.string is True
    assert tags.input_tags.two_d_array is False


# -- fit contract ----------------------------------------------------------------


def test_fit_returns_self_and_keeps_params():
    encoder = AttentionEncoder(**{**TINY, "random_state": None})
    clf = AttentionClassifier(**TINY, encoder=encoder)
    before = clf.get_params(deep=True)
    assert clf.fit(TOPIC_TEXTS, TOPIC_LABELS) is clf
    after = clf.get_params(deep=True)
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] is before[key] or after[key] == before[key], key
    assert clf.encoder is encoder
    assert encoder.random_state is None


@pytest.mark.parametrize("Estimator", [AttentionClassifier, AttentionEncoder])
def test_fitted_attributes_absent_before_fit(Estimator):
    est = Estimator(**TINY)
    expected = FITTED_ATTRIBUTES + (["classes_"] if Estimator is AttentionClassifier else [])
    for attribute in expected:
        assert not hasattr(est, attribute), attribute
    est.fit(TOPIC_TEXTS, TOPIC_LABELS)
    for attribute in expected:
        assert hasattr(est, attribute), attribute
    assert est.n_iter_ == TINY["max_epochs"] == len(est.loss_curve_)
    assert np.all(np.isfinite(est.loss_curve_))


def test_refit_with_same_random_state_is_identical(fitted_classifier):
    clf = AttentionClassifier(**TINY)
    first = clf.fit(TOPIC_TEXTS, TOPIC_LABELS).predict_proba(TOPIC_TEXTS)
    second = clf.fit(TOPIC_TEXTS, TOPIC_LABELS).predict_proba(TOPIC_TEXTS)
    assert np.array_equal(first, second)
    assert np.array_equal(first, fitted_classifier.predict_proba(TOPIC_TEXTS))
    other_seed = clone(clf).set_params(random_state=1).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert not np.array_equal(first, other_seed.predict_proba(TOPIC_TEXTS))


# -- prediction invariances -----------------------------------------------------


@pytest.mark.parametrize("fixture, atol", [("fitted_classifier", 1e-2), ("fp32_classifier", 1e-5)])
@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_predictions_do_not_depend_on_batch_size(request, fixture, atol, batch_size):
    clf = copy.deepcopy(request.getfixturevalue(fixture))
    reference_proba = clf.predict_proba(TOPIC_TEXTS)
    reference = clf.predict(TOPIC_TEXTS)
    clf.set_params(batch_size=batch_size)
    np.testing.assert_allclose(clf.predict_proba(TOPIC_TEXTS), reference_proba, atol=atol)
    if atol <= 1e-5:
        np.testing.assert_array_equal(clf.predict(TOPIC_TEXTS), reference)


@pytest.mark.parametrize("fixture, atol", [("fitted_classifier", 1e-2), ("fp32_classifier", 1e-5)])
def test_predictions_do_not_depend_on_input_order(request, fixture, atol):
    clf = request.getfixturevalue(fixture)
    texts = np.array(TOPIC_TEXTS + ["markets", "a late storm", "the final goal of the cup"], dtype=object)
    order = np.random.default_rng(0).permutation(len(texts))
    inverse = np.argsort(order)
    proba = clf.predict_proba(texts)
    np.testing.assert_allclose(clf.predict_proba(texts[order])[inverse], proba, atol=atol)
    if atol <= 1e-5:
        np.testing.assert_array_equal(clf.predict(texts[order])[inverse], clf.predict(texts))


def test_encoder_transform_does_not_depend_on_input_order(fitted_encoder):
    texts = np.array(TOPIC_TEXTS, dtype=object)
    order = np.random.default_rng(1).permutation(len(texts))
    embedded = fitted_encoder.transform(texts)
    np.testing.assert_allclose(fitted_encoder.transform(texts[order])[np.argsort(order)], embedded, atol=2e-2)


@pytest.mark.parametrize("fixture", ["fitted_classifier", "binary_classifier"])
def test_probabilities_and_decision_function(request, fixture):
    clf = request.getfixturevalue(fixture)
    X = TOPIC_TEXTS if fixture == "fitted_classifier" else TEXTS
    n_classes = len(clf.classes_)
    proba = clf.predict_proba(X)
    predicted = clf.predict(X)
    assert proba.shape == (len(X), n_classes)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-7)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), atol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], predicted)
    scores = clf.decision_function(X)
    if n_classes == 2:
        assert scores.shape == (len(X),)
        np.testing.assert_array_equal(clf.classes_[(scores > 0).astype(int)], predicted)
        # log-odds of classes_[1]
        np.testing.assert_allclose(scores, np.log(proba[:, 1] / proba[:, 0]), atol=1e-4)
    else:
        assert scores.shape == (len(X), n_classes)
        np.testing.assert_array_equal(clf.classes_[scores.argmax(axis=1)], predicted)
    score = clf.score(X, clf.predict(X))
    assert score == 1.0
    assert 0.0 <= clf.score(X, TOPIC_LABELS if n_classes == 3 else LABELS) <= 1.0


# -- labels ---------------------------------------------------------------------


def test_labels_come_back_as_given(fitted_classifier, binary_classifier):
    np.testing.assert_array_equal(binary_classifier.classes_, ["neg", "pos"])
    assert binary_classifier.classes_.dtype.kind == "U"
    assert set(binary_classifier.predict(TEXTS)) <= {"neg", "pos"}
    np.testing.assert_array_equal(fitted_classifier.classes_, [0, 1, 2])
    assert fitted_classifier.classes_.dtype.kind == "i"
    assert fitted_classifier.predict(TOPIC_TEXTS).dtype.kind == "i"


def test_class_weight_options():
    # Imbalanced: 12 pos, 4 neg, so "balanced" weights differ from 1.
    texts = TEXTS[:4] * 3 + TEXTS[4:8]
    labels = ["pos"] * 12 + ["neg"] * 4
    probas = {}
    for name, class_weight in [(None, None), ("balanced", "balanced"), ("dict", {"pos": 1.0, "neg": 3.0})]:
        clf = AttentionClassifier(**TINY, class_weight=class_weight).fit(texts, labels)
        probas[name] = clf.predict_proba(texts)
        assert np.all(np.isfinite(probas[name]))
    assert not np.allclose(probas[None], probas["balanced"])
    assert not np.allclose(probas[None], probas["dict"])
    # The rarer class gains probability when it is up-weighted.
    neg = 0  # classes_ == ["neg", "pos"]
    assert probas["balanced"][:, neg].mean() > probas[None][:, neg].mean()


# -- clone, params, meta-estimators ---------------------------------------------


def test_clone_and_nested_params():
    clf = AttentionClassifier(**TINY, encoder=AttentionEncoder(**TINY))
    params = clf.get_params(deep=True)
    assert params["encoder__d_model"] == TINY["d_model"]
    assert "encoder__mlm_probability" in params
    clf.set_params(encoder__d_model=8, d_model=32, encoder__max_epochs=1)
    assert clf.encoder.d_model == 8 and clf.d_model == 32
    cloned = clone(clf)
    assert cloned is not clf and cloned.encoder is not clf.encoder
    assert cloned.get_params()["encoder__d_model"] == 8
    # The encoder decides the architecture when one is given.
    cloned.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert cloned.config_.d_model == 8
    assert cloned.predict_proba(TOPIC_TEXTS).shape == (len(TOPIC_TEXTS), 3)


def test_clone_of_fitted_estimator_is_unfitted(fitted_classifier):
    cloned = clone(fitted_classifier)
    assert cloned.get_params() == fitted_classifier.get_params()
    for attribute in FITTED_ATTRIBUTES + ["classes_"]:
        assert not hasattr(cloned, attribute)


def test_pipeline_with_encoder_and_logistic_regression():
    pipe = Pipeline([("enc", AttentionEncoder(**TINY)), ("lr", LogisticRegression())])
    pipe.fit(TOPIC_TEXTS, TOPIC_LABELS)
    predicted = pipe.predict(TOPIC_TEXTS)
    assert predicted.shape == (len(TOPIC_TEXTS),)
    assert set(predicted) <= {0, 1, 2}
    assert pipe.named_steps["lr"].coef_.shape == (3, TINY["d_model"])
    names = pipe[:-1].get_feature_names_out()
    assert list(names) == [f"attentionencoder{i}" for i in range(TINY["d_model"])]


def test_an_encoder_before_a_regressor_says_how_to_embed_for_it():
    pipe = Pipeline([("enc", AttentionEncoder(**TINY)), ("ridge", Ridge())])
    with pytest.raises(ValueError, match=r"this y is continuous; a Pipeline passes its target to every step"):
        pipe.fit(TOPIC_TEXTS, np.linspace(0.0, 1.0, len(TOPIC_TEXTS)))
    with pytest.raises(ValueError, match=r"this y is multilabel-indicator"):
        AttentionEncoder(**TINY).fit(TOPIC_TEXTS, np.eye(3, dtype=int)[TOPIC_LABELS])
    frozen = Pipeline([("enc", FrozenEstimator(AttentionEncoder(**TINY).fit(TOPIC_TEXTS))), ("ridge", Ridge())])
    assert frozen.fit(TOPIC_TEXTS, np.linspace(0.0, 1.0, len(TOPIC_TEXTS))).predict(TOPIC_TEXTS).shape == (len(TOPIC_TEXTS),)


def test_grid_search_in_parallel():
    search = GridSearchCV(AttentionClassifier(**TINY), {"d_model": [8, 16]}, cv=2, n_jobs=2)
    search.fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert search.best_params_["d_model"] in (8, 16)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_estimator_.config_.d_model == search.best_params_["d_model"]
    assert search.predict(TOPIC_TEXTS).shape == (len(TOPIC_TEXTS),)


def test_cross_val_score_and_cross_validate():
    scores = cross_val_score(AttentionClassifier(**TINY), TOPIC_TEXTS, TOPIC_LABELS, cv=2)
    assert scores.shape == (2,) and np.all(np.isfinite(scores))
    results = cross_validate(
        AttentionClassifier(**TINY), TEXTS, LABELS, cv=3, scoring=["accuracy", "neg_log_loss"]
    )
    assert np.all(np.isfinite(results["test_accuracy"]))
    assert np.all(np.isfinite(results["test_neg_log_loss"]))


class ThreadProbe:
    """A callback recording torch's intra-op thread count at each training step."""

    def __init__(self):
        self.threads = set()

    def __call__(self, event):
        self.threads.add(torch.get_num_threads())


def _fit_and_count_threads():
    probe = ThreadProbe()
    AttentionClassifier(**TINY, callbacks=[probe]).fit(TOPIC_TEXTS, TOPIC_LABELS)
    (threads,) = probe.threads
    return threads


def test_parallel_workers_do_not_oversubscribe():
    # joblib's process workers share the cores, whatever their number (each
    # gets cpu_count() // n_jobs threads unless the user's environment says
    # otherwise), and fit keeps to what its worker was given.
    expected = joblib_worker_threads(n_jobs=2)
    threads = joblib.Parallel(n_jobs=2)(joblib.delayed(_fit_and_count_threads)() for _ in range(2))
    assert threads == [expected] * 2


# -- AttentionEncoder --------------------------------------------------------------


def test_encoder_transform_and_feature_names(fitted_encoder):
    embedded = fitted_encoder.transform(TOPIC_TEXTS)
    assert embedded.dtype == np.float32
    assert embedded.shape == (len(TOPIC_TEXTS), TINY["d_model"])
    assert np.all(np.isfinite(embedded))
    names = fitted_encoder.get_feature_names_out()
    assert list(names) == [f"attentionencoder{i}" for i in range(TINY["d_model"])]


def test_encoder_set_output_pandas(fitted_encoder):
    pd = pytest.importorskip("pandas")
    encoder = copy.deepcopy(fitted_encoder).set_output(transform="pandas")
    X = pd.Series(TOPIC_TEXTS, index=range(100, 100 + len(TOPIC_TEXTS)))
    frame = encoder.transform(X)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(fitted_encoder.get_feature_names_out())
    assert list(frame.index) == list(X.index)
    np.testing.assert_allclose(frame.to_numpy(), fitted_encoder.transform(TOPIC_TEXTS))
    assert isinstance(encoder.fit_transform(TOPIC_TEXTS), pd.DataFrame)


def test_encoder_supervised_fit_differs_from_mlm(fitted_encoder):
    supervised = AttentionEncoder(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert supervised.transform(TOPIC_TEXTS).shape == (len(TOPIC_TEXTS), TINY["d_model"])
    assert not np.allclose(supervised.transform(TOPIC_TEXTS), fitted_encoder.transform(TOPIC_TEXTS))
    assert supervised.n_iter_ == TINY["max_epochs"]


# -- pretraining then fine-tuning ---------------------------------------------------


def test_unfitted_encoder_is_pretrained_on_a_clone():
    encoder = AttentionEncoder(**{**TINY, "d_model": 8})
    clf = AttentionClassifier(**TINY, encoder=encoder).fit(TOPIC_TEXTS, TOPIC_LABELS)
    for attribute in FITTED_ATTRIBUTES:
        assert not hasattr(encoder, attribute), attribute
    assert clf.config_.d_model == 8
    assert clf.predict(TOPIC_TEXTS).shape == (len(TOPIC_TEXTS),)


def test_fitted_encoder_is_copied_not_modified(fitted_encoder):
    weights = {k: v.clone() for k, v in fitted_encoder.model_.state_dict().items()}
    embedded = fitted_encoder.transform(TOPIC_TEXTS)
    clf = AttentionClassifier(**TINY, encoder=fitted_encoder).fit(TOPIC_TEXTS, TOPIC_LABELS)
    after = fitted_encoder.model_.state_dict()
    assert after.keys() == weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(after[name], tensor), name
    np.testing.assert_array_equal(fitted_encoder.transform(TOPIC_TEXTS), embedded)
    assert clf.model_.encoder is not fitted_encoder.model_
    assert clf.tokenizer_.get_vocab() == fitted_encoder.tokenizer_.get_vocab()
    assert clf.config_ == fitted_encoder.config_
    # Fine-tuning did start from the encoder's weights and then changed them.
    tuned = clf.model_.encoder.state_dict()
    assert not torch.equal(tuned["token_embedding.weight"], weights["token_embedding.weight"])


def test_unlabeled_samples_marked_minus_one():
    extra = ["quarterly profits beat forecasts", "fans cheered the winning team", "cloudy with showers"]
    texts = TOPIC_TEXTS + extra
    labels = TOPIC_LABELS + [-1] * len(extra)
    with pytest.warns(UserWarning, match="3 documents are labeled -1, which marks an unlabeled document: they are left out of the loss"):
        clf = AttentionClassifier(**TINY).fit(texts, labels)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert set(clf.predict(texts)) <= {0, 1, 2}
    assert clf.predict_proba(texts).shape == (len(texts), 3)
    with pytest.raises(ValueError, match="no labeled samples"):
        AttentionClassifier(**TINY).fit(texts, [-1] * len(texts))


@pytest.mark.parametrize("fixture", ["fitted_classifier", "fitted_encoder"])
def test_default_activation_reaches_the_model(request, fixture):
    estimator = request.getfixturevalue(fixture)
    assert estimator.get_params()["activation"] == "relu"
    assert estimator.config_.activation == "relu"
    encoder = getattr(estimator.model_, "encoder", estimator.model_)
    assert all(isinstance(block.ff.activation, torch.nn.ReLU) for block in encoder.blocks)


def test_pretrained_encoder_decides_the_activation():
    # The encoder's architecture parameters win over the classifier's.
    encoder = AttentionEncoder(**TINY, activation="gelu")
    clf = AttentionClassifier(**TINY, activation="relu", encoder=encoder).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert clf.config_.activation == "gelu"
    assert isinstance(clf.model_.encoder.blocks[0].ff.activation, torch.nn.GELU)
    assert clf.score(TOPIC_TEXTS, TOPIC_LABELS) > 1 / 3


class _CountingEncoder(AttentionEncoder):
    """An AttentionEncoder that counts its pretrainings (in this process)."""

    fits = 0

    def fit(self, X, y=None, sample_weight=None):
        type(self).fits += 1
        return super().fit(X, y, sample_weight=sample_weight)


@pytest.mark.parametrize("frozen", [False, True])
def test_one_pretraining_serves_a_grid_search_when_frozen(frozen):
    _CountingEncoder.fits = 0
    encoder = _CountingEncoder(**TINY).fit(TOPIC_TEXTS)
    proba_before = encoder.transform(TOPIC_TEXTS)
    search = GridSearchCV(
        AttentionClassifier(**TINY, encoder=FrozenEstimator(encoder) if frozen else encoder),
        {"learning_rate": [1e-3, 3e-3]},
        cv=2,
    )
    search.fit(TOPIC_TEXTS, TOPIC_LABELS)
    # 2 candidates x 2 folds + the refit: clone() drops an unfrozen encoder's
    # training, so each of the 5 fits pretrains a fresh one.
    assert _CountingEncoder.fits == (1 if frozen else 1 + 5)
    np.testing.assert_array_equal(encoder.transform(TOPIC_TEXTS), proba_before)  # never modified
    if frozen:
        best = search.best_estimator_
        assert best.tokenizer_.to_str() == encoder.tokenizer_.to_str()


def test_frozen_encoder_must_be_fitted():
    from sklearn.frozen import FrozenEstimator

    clf = AttentionClassifier(**TINY, encoder=FrozenEstimator(AttentionEncoder(**TINY)))
    with pytest.raises(ValueError, match="FrozenEstimator of an unfitted AttentionEncoder"):
        clf.fit(TOPIC_TEXTS, TOPIC_LABELS)


def test_a_model_searched_over_numpy_values_saves(tmp_path):
    # ParameterGrid hands out the grid's own values: NumPy integers from an array.
    search = GridSearchCV(AttentionClassifier(**TINY), {"d_model": np.array([8, 16])}, cv=2).fit(TOPIC_TEXTS, TOPIC_LABELS)
    best = search.best_estimator_
    assert isinstance(best.d_model, np.integer) and type(best.config_.d_model) is int
    best.save(tmp_path / "best.skattn")
    np.testing.assert_array_equal(skattn.load(tmp_path / "best.skattn").predict_proba(TOPIC_TEXTS), best.predict_proba(TOPIC_TEXTS))


def test_output_code_classifier_cannot_wrap_it_and_says_why():
    # It labels each binary problem -1 / 1 for estimators with a decision_function, and -1 marks unlabeled texts.
    from sklearn.multiclass import OutputCodeClassifier

    with pytest.raises(ValueError, match=r"labeled -1, which marks unlabeled texts"):
        OutputCodeClassifier(AttentionClassifier(**TINY), code_size=2, random_state=0).fit(TOPIC_TEXTS, TOPIC_LABELS)


def test_output_dtypes(fitted_classifier, fitted_encoder):
    assert fitted_encoder.transform(TOPIC_TEXTS).dtype == np.float32
    assert fitted_classifier.decision_function(TOPIC_TEXTS).dtype == np.float32
    # Probabilities in float64, as scikit-learn's classifiers return them.
    assert fitted_classifier.predict_proba(TOPIC_TEXTS).dtype == np.float64
    assert fitted_classifier.predict_log_proba(TOPIC_TEXTS).dtype == np.float64
