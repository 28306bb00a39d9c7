"""Bad input fails fast, with the usual scikit-learn error types and a clear message."""

import copy

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from skattn import AttentionClassifier, AttentionEncoder

from .conftest import LABELS, TEXTS, TINY, TOPIC_LABELS, TOPIC_TEXTS

ESTIMATORS = [AttentionClassifier, AttentionEncoder]


class TrainingStarted(Exception):
    """Raised by a callback at the first training step."""


def refuse_training(event):
    raise TrainingStarted(event.kind)


# Errors from validation must come before training: a test expecting ValueError
# or TypeError fails with TrainingStarted if validation happens too late.
GUARDED = dict(TINY, callbacks=[refuse_training])


def fit(Estimator, X, y=None, **params):
    est = Estimator(**{**GUARDED, **params})
    if Estimator is AttentionClassifier:
        return est.fit(X, TOPIC_LABELS[: len(X)] if y is None else y)
    return est.fit(X, y)


def training_run(Estimator, X):
    """What fitting on X trains: the vocabulary and the loss of each step."""
    losses = []
    est = Estimator(**dict(TINY, callbacks=[lambda event: losses.append(event.loss)]))
    est.fit(X, TOPIC_LABELS if Estimator is AttentionClassifier else None)
    return est.vocabulary_, losses


# -- X of the wrong kind -----------------------------------------------------------


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "X, error, match",
    [
        ("a single document", TypeError, "single str"),
        (b"a single document", TypeError, "single bytes"),
        (["a film", None, "a plot"], TypeError, "element 1 is None"),
        (["a film", float("nan")], TypeError, "element 1 is NaN"),
        ([np.nan, "a film"], TypeError, "element 0 is NaN"),
        (["a film", 3], TypeError, "element 1 is 3 of type int"),
        (["a film", b"a plot"], TypeError, "element 1 .*bytes"),
        (None, TypeError, "iterable of text documents.*NoneType"),
        (5, TypeError, "iterable of text documents.*int"),
        ([], ValueError, "empty"),
        (np.array([], dtype=object), ValueError, "empty"),
        (np.array([["a", "b"], ["c", "d"]], dtype=object), ValueError, r"single column.*\(2, 2\)"),
        (np.array([[["a"]]], dtype=object), ValueError, "1-D"),
    ],
)
def test_bad_X_raises_before_training(Estimator, X, error, match):
    y = None if Estimator is AttentionEncoder else [0, 1] * 2
    with pytest.raises(error, match=match):
        Estimator(**GUARDED).fit(X, y)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_pandas_missing_values_and_wide_frames_rejected(Estimator):
    pd = pytest.importorskip("pandas")
    y = None if Estimator is AttentionEncoder else [0, 1, 0]
    with pytest.raises(TypeError, match="element 1 is NaN"):
        Estimator(**GUARDED).fit(pd.Series(["a film", np.nan, "a plot"]), y)
    with pytest.raises(TypeError, match="element 2 is None"):
        Estimator(**GUARDED).fit(pd.Series(["a film", "a plot", None], dtype=object), y)
    wide = pd.DataFrame({"title": ["a", "b", "c"], "body": ["d", "e", "f"]})
    with pytest.raises(ValueError, match="single column.*2 columns"):
        Estimator(**GUARDED).fit(wide, y)


def test_bad_X_at_prediction(fitted_classifier, fitted_encoder):
    for method in [
        fitted_classifier.predict,
        fitted_classifier.predict_proba,
        fitted_classifier.decision_function,
        fitted_encoder.transform,
    ]:
        with pytest.raises(TypeError, match="single str"):
            method("a film")
        with pytest.raises(TypeError, match="NaN"):
            method(["a film", np.nan])
        with pytest.raises(ValueError, match="empty"):
            method([])


# -- accepted containers ---------------------------------------------------------


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_containers_accepted_and_equivalent_to_a_list(Estimator):
    pd = pytest.importorskip("pandas")
    reference = training_run(Estimator, TOPIC_TEXTS)
    containers = {
        "tuple": tuple(TOPIC_TEXTS),
        "object array": np.array(TOPIC_TEXTS, dtype=object),
        "str array": np.array(TOPIC_TEXTS),
        "one-column 2-D array": np.array(TOPIC_TEXTS, dtype=object).reshape(-1, 1),
        "Series": pd.Series(TOPIC_TEXTS, index=range(50, 50 + len(TOPIC_TEXTS))),
        "one-column DataFrame": pd.DataFrame({"text": TOPIC_TEXTS}),
        "generator": (text for text in TOPIC_TEXTS),
    }
    for name, X in containers.items():
        assert training_run(Estimator, X) == reference, name


def test_containers_accepted_at_prediction(fitted_classifier, fitted_encoder):
    pd = pytest.importorskip("pandas")
    expected = fitted_classifier.predict_proba(TOPIC_TEXTS)
    embedded = fitted_encoder.transform(TOPIC_TEXTS)
    for X in [
        tuple(TOPIC_TEXTS),
        np.array(TOPIC_TEXTS, dtype=object),
        np.array(TOPIC_TEXTS, dtype=object).reshape(-1, 1),
        pd.Series(TOPIC_TEXTS, index=range(7, 7 + len(TOPIC_TEXTS))),
        pd.DataFrame({"text": TOPIC_TEXTS}),
    ]:
        np.testing.assert_array_equal(fitted_classifier.predict_proba(X), expected)
        np.testing.assert_array_equal(fitted_encoder.transform(X), embedded)


def test_empty_strings_are_valid_documents():
    texts = TOPIC_TEXTS + ["", ""]
    labels = TOPIC_LABELS + [0, 1]
    clf = AttentionClassifier(**TINY).fit(texts, labels)
    assert clf.predict([""])[0] in clf.classes_
    proba = clf.predict_proba(["", "the team won"])
    assert np.all(np.isfinite(proba))
    encoder = AttentionEncoder(**TINY).fit(["", "a film", ""] + TOPIC_TEXTS)
    embedded = encoder.transform(["", ""])
    assert embedded.shape == (2, TINY["d_model"]) and np.all(np.isfinite(embedded))


# -- y ---------------------------------------------------------------------------


def test_y_errors():
    with pytest.raises(ValueError, match="requires y.*None"):
        AttentionClassifier(**GUARDED).fit(TOPIC_TEXTS, None)
    for Estimator in ESTIMATORS:
        with pytest.raises(ValueError, match="inconsistent lengths.*18 documents.*17 labels"):
            Estimator(**GUARDED).fit(TOPIC_TEXTS, TOPIC_LABELS[:-1])
        with pytest.raises(ValueError, match="at least 2 classes"):
            Estimator(**GUARDED).fit(TOPIC_TEXTS, ["pos"] * len(TOPIC_TEXTS))
        with pytest.raises(ValueError, match="continuous"):
            Estimator(**GUARDED).fit(TOPIC_TEXTS, np.linspace(0, 1, len(TOPIC_TEXTS)))
    with pytest.raises(ValueError, match="no labeled samples"):
        AttentionClassifier(**GUARDED).fit(TOPIC_TEXTS, [-1] * len(TOPIC_TEXTS))
    with pytest.raises(ValueError, match="at least 2 classes"):
        AttentionClassifier(**GUARDED).fit(TOPIC_TEXTS, [0] * 9 + [-1] * 9)


@pytest.mark.parametrize(
    "Estimator, y, shown",
    [
        (AttentionClassifier, ["pos"] * 18, "'pos'"),
        (AttentionEncoder, ["pos"] * 18, "'pos'"),
        (AttentionClassifier, [0] * 9 + [-1] * 9, "0"),
        (AttentionEncoder, [3] * 18, "3"),
    ],
)
def test_one_class_error_names_the_label_as_given(Estimator, y, shown):
    # The label should read as the user wrote it, not as a NumPy scalar repr
    # such as np.str_('pos') or np.int64(0).
    with pytest.raises(ValueError, match="at least 2 classes") as caught:
        Estimator(**GUARDED).fit(TOPIC_TEXTS, y)
    assert f"only {shown}" in str(caught.value)
    assert "np." not in str(caught.value)


# -- parameters ------------------------------------------------------------------


@pytest.mark.parametrize("Estimator", ESTIMATORS)
@pytest.mark.parametrize(
    "params, match",
    [
        ({"tokenizer": "foo"}, "'tokenizer' parameter"),
        ({"pooling": "sum"}, "'pooling' parameter"),
        ({"activation": "tanh"}, "'activation' parameter"),
        ({"dropout": 1.5}, "'dropout' parameter"),
        ({"dropout": 1.0}, "'dropout' parameter"),
        ({"vocab_size": 0}, "'vocab_size' parameter"),
        ({"max_length": 2}, "'max_length' parameter"),
        ({"d_model": 0}, "'d_model' parameter"),
        ({"batch_size": 0}, "'batch_size' parameter"),
        ({"max_epochs": 0}, "'max_epochs' parameter"),
        ({"learning_rate": 0.0}, "'learning_rate' parameter"),
        ({"precision": "fp16"}, "'precision' parameter"),
        ({"random_state": "seed"}, "'random_state' parameter"),
    ],
)
def test_invalid_parameters(Estimator, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        fit(Estimator, TOPIC_TEXTS, **params)


def test_estimator_specific_invalid_parameters():
    with pytest.raises(InvalidParameterError, match="'mlm_probability' parameter"):
        AttentionEncoder(**GUARDED, mlm_probability=0.0).fit(TOPIC_TEXTS)
    with pytest.raises(InvalidParameterError, match="'class_weight' parameter"):
        AttentionClassifier(**GUARDED, class_weight="uniform").fit(TOPIC_TEXTS, TOPIC_LABELS)
    with pytest.raises(InvalidParameterError, match="'encoder_logit_scale' parameter"):
        AttentionClassifier(**GUARDED, encoder_logit_scale=-1.0).fit(TOPIC_TEXTS, TOPIC_LABELS)
    with pytest.raises(InvalidParameterError, match=r"'encoder_logit_scale' parameter .* a str among \{'auto'\}"):
        AttentionClassifier(**GUARDED, encoder_logit_scale="half").fit(TOPIC_TEXTS, TOPIC_LABELS)
    with pytest.raises(InvalidParameterError, match="'ngram_range' parameter"):
        AttentionClassifier(**GUARDED, ngram_range=[1, 2]).fit(TOPIC_TEXTS, TOPIC_LABELS)
    with pytest.raises(InvalidParameterError, match="'encoder' parameter"):
        AttentionClassifier(**GUARDED, encoder="foo").fit(TOPIC_TEXTS, TOPIC_LABELS)
    with pytest.raises(TypeError, match="AttentionEncoder, a FrozenEstimator of a fitted one, or None; got StandardScaler"):
        AttentionClassifier(**GUARDED, encoder=StandardScaler()).fit(TOPIC_TEXTS, TOPIC_LABELS)
    with pytest.raises(ValueError, match="not in class_weight"):
        AttentionClassifier(**GUARDED, class_weight={"pos": 1.0, "other": 2.0}).fit(TEXTS, LABELS)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_heads_must_divide_d_model(Estimator):
    with pytest.raises(ValueError, match="d_model=10.*n_heads=4"):
        fit(Estimator, TOPIC_TEXTS, d_model=10, n_heads=4)


@pytest.mark.parametrize("Estimator", ESTIMATORS)
def test_unavailable_or_invalid_device(Estimator):
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            fit(Estimator, TOPIC_TEXTS, device="cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            fit(Estimator, TOPIC_TEXTS, device=torch.device("cuda", 0))
    with pytest.raises(ValueError, match="not a valid device"):
        fit(Estimator, TOPIC_TEXTS, device="gpu0")


def test_a_missing_device_at_prediction_falls_back_to_the_cpu_with_a_warning(fitted_classifier):
    # As a model trained on a GPU and shipped to a server without one: it predicts, and says where.
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    clf = copy.deepcopy(fitted_classifier).set_params(device="cuda")
    with pytest.warns(UserWarning, match=r"device='cuda' was requested but CUDA is not available\. Running on the CPU instead\."):
        predicted = clf.predict(TOPIC_TEXTS)
    np.testing.assert_array_equal(predicted, fitted_classifier.predict(TOPIC_TEXTS))


# -- not fitted ------------------------------------------------------------------


@pytest.mark.parametrize(
    "Estimator, method",
    [
        (AttentionClassifier, "predict"),
        (AttentionClassifier, "predict_proba"),
        (AttentionClassifier, "predict_log_proba"),
        (AttentionClassifier, "decision_function"),
        (AttentionEncoder, "transform"),
        (AttentionEncoder, "get_feature_names_out"),
    ],
)
def test_unfitted_raises_not_fitted(Estimator, method):
    args = () if method == "get_feature_names_out" else (TOPIC_TEXTS,)
    with pytest.raises(NotFittedError):
        getattr(Estimator(**TINY), method)(*args)


def test_unfitted_score_raises_not_fitted():
    with pytest.raises(NotFittedError):
        AttentionClassifier(**TINY).score(TOPIC_TEXTS, TOPIC_LABELS)


# -- a failed fit leaves a fitted estimator intact ---------------------------------


def test_failed_fit_keeps_previous_model():
    clf = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    model, proba = clf.model_, clf.predict_proba(TOPIC_TEXTS)
    with pytest.raises(TypeError):
        clf.fit(["a film", None], [0, 1])
    with pytest.raises(ValueError):
        clf.fit(TOPIC_TEXTS, TOPIC_LABELS[:-1])
    with pytest.raises(ValueError):
        clf.fit(TOPIC_TEXTS, ["a"] * len(TOPIC_TEXTS))
    with pytest.raises(InvalidParameterError):
        clf.set_params(dropout=2.0).fit(TOPIC_TEXTS, TOPIC_LABELS)
    clf.set_params(dropout=TINY.get("dropout", 0.1))

    # A failure during training itself (e.g. a diverging loss) is no different.
    def diverge(event):
        raise FloatingPointError("the training loss became nan")

    with pytest.raises(FloatingPointError):
        clf.set_params(callbacks=[diverge]).fit(TOPIC_TEXTS[:6], ["x", "y", "z", "x", "y", "z"])
    assert clf.model_ is model
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    np.testing.assert_array_equal(clf.predict_proba(TOPIC_TEXTS), proba)


def test_failed_encoder_fit_keeps_previous_model(fitted_encoder):
    encoder = copy.deepcopy(fitted_encoder)
    embedded = encoder.transform(TOPIC_TEXTS)
    with pytest.raises(TypeError):
        encoder.fit([None])
    with pytest.raises(ValueError):
        encoder.fit([])
    np.testing.assert_array_equal(encoder.transform(TOPIC_TEXTS), embedded)
