"""A battery of input, label, property, thread and failure-safety checks.

Tiny models only (``TINY`` with one epoch); the estimators shared by several
tests are fitted once per module and never modified by a test (tests that
train or might train work on their own estimator or on a deep copy).
"""

import copy
import re
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from sklearn.utils._param_validation import InvalidParameterError

from skattn import AttentionClassifier, AttentionEncoder

from .conftest import TINY, TOPIC_LABELS, TOPIC_TEXTS

FAST = {**TINY, "max_epochs": 1}

# -- corpora ---------------------------------------------------------------------

FAMILY = "\U0001F469\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"  # 👩‍👩‍👧‍👦, a ZWJ sequence
FLAGS = "\U0001F1EF\U0001F1F5\U0001F1EB\U0001F1F7"  # 🇯🇵🇫🇷, regional indicator pairs
_BIG_UNIT = f"lorem ipsum dolor 我爱NLP {FAMILY} مرحبا e\u0301 "
BIG = (_BIG_UNIT * (1_000_000 // len(_BIG_UNIT) + 1))[:1_000_000]  # a 1 MB text

MESSY = [
    "",
    "   \t\n  \r\n ",
    FAMILY,
    f"{FAMILY} family photo",
    FLAGS,
    f"travel {FLAGS} tips",
    "e\u0301",
    "cafe\u0301 re\u0301sume\u0301",
    "مرحبا بالعالم",
    "שלום עולם",
    "我爱NLP and 東京",
    "a\x00b\x07c",
    "\x00",
    "\u200b\u200d\ufeff",
    "same text, two labels",
    "same text, two labels",
    BIG,
]
MESSY_LABELS = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2]  # the duplicates disagree

# Every training text messy, plus a few normal ones.
CORPUS = MESSY + TOPIC_TEXTS[:6]
CORPUS_LABELS = MESSY_LABELS + TOPIC_LABELS[:6]

# Texts to predict on: every messy text and the tiny topic corpus; SMALL
# leaves out the 1 MB text, for tests that predict many times.
QUERY = MESSY + TOPIC_TEXTS
SMALL = [t for t in QUERY if t is not BIG]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: on a loaded 2-core machine, two spinning OpenMP
    threads make each tiny forward pass 20 times slower. Restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def clf():
    return AttentionClassifier(**FAST).fit(CORPUS, CORPUS_LABELS)


@pytest.fixture(scope="module")
def enc():
    return AttentionEncoder(**FAST).fit(CORPUS)


def _check_proba(proba, clf, n):
    assert proba.shape == (n, len(clf.classes_))
    assert proba.dtype.kind == "f"
    assert np.all(np.isfinite(proba))
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def _check_embedding(X_new, enc, n):
    assert X_new.shape == (n, enc.config_.d_model)
    assert X_new.dtype == np.float32
    assert np.all(np.isfinite(X_new))


# -- 1. messy valid text ------------------------------------------------------------


def test_messy_classifier_fit_predict(clf):
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    proba = clf.predict_proba(QUERY)
    _check_proba(proba, clf, len(QUERY))
    pred = clf.predict(QUERY)
    assert pred.shape == (len(QUERY),)
    assert set(pred.tolist()) <= set(clf.classes_.tolist())
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=1)])
    assert np.all(np.isfinite(clf.loss_curve_))


@pytest.mark.parametrize("index", range(len(MESSY)))
def test_messy_single_document(clf, enc, index):
    doc = [MESSY[index]]
    _check_proba(clf.predict_proba(doc), clf, 1)
    assert clf.predict(doc)[0] in clf.classes_
    _check_embedding(enc.transform(doc), enc, 1)


def test_messy_encoder_fit_transform(enc):
    _check_embedding(enc.transform(QUERY), enc, len(QUERY))
    assert np.all(np.isfinite(enc.loss_curve_))


def test_messy_only_corpus_fits():
    texts = [t for t in MESSY if t is not BIG]
    labels = [i % 2 for i in range(len(texts))]
    model = AttentionClassifier(**FAST).fit(texts, labels)
    _check_proba(model.predict_proba(SMALL), model, len(SMALL))
    encoder = AttentionEncoder(**FAST).fit(texts)
    _check_embedding(encoder.transform(SMALL), encoder, len(SMALL))


def test_messy_partial_fit():
    model = AttentionClassifier(**FAST)
    model.partial_fit(CORPUS, CORPUS_LABELS, classes=[0, 1, 2])
    model.partial_fit(MESSY, MESSY_LABELS)
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    assert model.n_iter_ == 2
    _check_proba(model.predict_proba(SMALL), model, len(SMALL))
    assert set(model.predict(SMALL).tolist()) <= {0, 1, 2}


PUNCTUATION = ["!!!", "...", "?!?", "—", "()[]{}", "\U0001F642", "  ", "", "*-*", "#@%"]
WHITESPACE = ["  ", "", "\t", "\n", " \u00a0 ", "\u3000", "\r\n", " ", "\u2003", ""]


def test_all_punctuation_training_texts_train_both_paths():
    # Punctuation marks and symbols are words of the n-gram path.
    model = AttentionClassifier(**FAST).fit(PUNCTUATION, [0, 1] * 5)
    assert "!" in model.ngram_vectorizer_.vocabulary_
    _check_proba(model.predict_proba(SMALL + PUNCTUATION), model, len(SMALL) + len(PUNCTUATION))


def test_all_whitespace_training_texts_need_ngram_range_none():
    with pytest.raises(ValueError, match=re.escape("ngram_range=None")):
        AttentionClassifier(**FAST).fit(WHITESPACE, [0, 1] * 5)
    model = AttentionClassifier(**FAST, ngram_range=None).fit(WHITESPACE, [0, 1] * 5)
    _check_proba(model.predict_proba(SMALL), model, len(SMALL))


# -- 2. invalid items ---------------------------------------------------------------

VALID = ["a good film", "the team won", "rain tomorrow", "stocks fell"]
BAD_ITEMS = {
    "None": None,
    "nan": float("nan"),
    "bytes": b"bytes",
    "int": 3,
    "float": 2.5,
    "nested": ["nested"],
    "dict": {"text": "a dict"},
}
METHODS = ["fit", "partial_fit", "predict", "predict_proba", "transform"]


def _call(method, X, clf, enc):
    """Call ``method`` with ``X``; fitting methods on fresh estimators."""
    y = [0, 1, 0, 1, 0, 1, 0, 1][: len(X)] if hasattr(X, "__len__") and not isinstance(X, str) else [0, 1]
    if method == "fit":
        return AttentionClassifier(**FAST).fit(X, y)
    if method == "partial_fit":
        return AttentionClassifier(**FAST).partial_fit(X, y, classes=[0, 1])
    if method == "transform":
        return enc.transform(X)
    return getattr(clf, method)(X)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("position", [0, 2])
@pytest.mark.parametrize("name", list(BAD_ITEMS))
def test_non_str_element(method, position, name, clf, enc):
    X = list(VALID)
    X[position] = BAD_ITEMS[name]
    with pytest.raises(TypeError, match=rf"element {position}\b"):
        _call(method, X, clf, enc)


@pytest.mark.parametrize("method", METHODS)
def test_non_str_element_object_array(method, clf, enc):
    X = np.array(["a good film", "the team won", None, "stocks fell"], dtype=object)
    with pytest.raises(TypeError, match=r"element 2\b"):
        _call(method, X, clf, enc)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("surrogate", ["\ud800", "x\udc00y"])
def test_lone_surrogate(method, surrogate, clf, enc):
    X = list(VALID)
    X[1] = surrogate
    with pytest.raises(ValueError) as info:
        _call(method, X, clf, enc)
    message = str(info.value)
    assert "element 1" in message and "surrogate" in message.lower(), message


@pytest.mark.parametrize("method", METHODS)
def test_two_column_array(method, clf, enc):
    X = np.array([["a good film", "x"], ["the team won", "y"], ["rain", "z"], ["stocks", "w"]])
    with pytest.raises(ValueError, match=r"column"):
        _call(method, X, clf, enc)


@pytest.mark.parametrize("method", METHODS)
def test_single_string(method, clf, enc):
    with pytest.raises(TypeError, match=r"single str"):
        _call(method, "a good film", clf, enc)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("empty", [[], (), np.array([], dtype=str)], ids=["list", "tuple", "array"])
def test_empty_X(method, empty, clf, enc):
    with pytest.raises(ValueError, match=r"empty"):
        _call(method, empty, clf, enc)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "transform"])
def test_single_column_array_is_valid(method, clf, enc):
    X = np.array(VALID, dtype=object).reshape(-1, 1)
    out = _call(method, X, clf, enc)
    np.testing.assert_array_equal(out, _call(method, VALID, clf, enc))


# -- 3. bad labels ------------------------------------------------------------------

X4 = ["a good film", "the team won", "rain tomorrow", "stocks fell"]


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_mixed_label_types(method):
    y = ["a", 1, "b", 2]
    model = AttentionClassifier(**FAST)
    with pytest.raises(ValueError, match=r"(?i)mix"):
        if method == "fit":
            model.fit(X4, y)
        else:
            model.partial_fit(X4, y, classes=["a", 1, "b", 2])


def test_mixed_label_types_supervised_encoder():
    with pytest.raises(ValueError, match=r"(?i)mix"):
        AttentionEncoder(**FAST).fit(X4, ["a", 1, "b", 2])


@pytest.mark.parametrize(
    "y, message",
    [
        ([0.0, 1.0, float("nan"), 1.0], "y has a missing label (element 2 is nan). Leave those documents out, or label them -1"),
        (["a", "b", None, "a"], "y has a missing label (element 2 is None)."),
        (np.array([0.0, 1.0, np.nan, 1.0]), "y has a missing label (element 2 is nan)."),
        ([0.0, 1.0, float("inf"), 1.0], "y holds an infinite value (element 2 is inf); labels must be finite."),
        (np.array([[0, 1], [1, 0], [1, np.nan], [1, 1]]), "y has a missing label (row 2, column 1 is nan). Leave those documents out."),
    ],
    ids=["nan-in-list", "none-in-list", "nan-in-array", "inf", "nan-in-indicator"],
)
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_missing_or_infinite_label(method, y, message):
    model = AttentionClassifier(**FAST)
    # The error alone tells the user: no RuntimeWarning from a cast of NaN before it.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match=re.escape(message)):
            if method == "fit":
                model.fit(X4, y)
            else:
                model.partial_fit(X4, y, classes=[0.0, 1.0] if np.ndim(y) == 1 else [0, 1])
    assert not hasattr(model, "model_")


def test_missing_label_pandas():
    pd = pytest.importorskip("pandas")
    for y in (pd.Series(["a", None, "b", "a"], dtype="category"), pd.Series(["a", pd.NA, "b", "a"], dtype="string")):
        with pytest.raises(ValueError, match=r"y has a missing label \(element 1 is "):
            AttentionClassifier(**FAST).fit(X4, y)


def test_missing_label_encoder_hint():
    # The encoder takes no unlabeled documents in y, so the hint stops short of -1.
    with pytest.raises(ValueError, match=r"^y has a missing label \(element 1 is None\)\. Leave those documents out\.$"):
        AttentionEncoder(**FAST).fit(X4, ["a", None, "b", "a"])


@pytest.mark.parametrize(
    "classes, message",
    [
        ([0, 1, float("nan")], "classes holds nan at element 2; every class must be a finite label."),
        ([0, None, 1], "classes holds None at element 1; every class must be a finite label."),
        ([0, 1, float("inf")], "classes holds inf at element 2; every class must be a finite label."),
        ([0, "1"], "classes mixes label types (string and number): element 1 is '1', element 0 is 0."),
        ([[0, 1]], "classes must be a 1-D list of labels, got an array of shape (1, 2)."),
    ],
)
def test_partial_fit_refuses_bad_classes(classes, message):
    model = AttentionClassifier(**FAST)
    with pytest.raises(ValueError, match=re.escape(message)):
        model.partial_fit(X4, [0, 1, 0, 1], classes=classes)
    assert not hasattr(model, "model_")


@pytest.mark.parametrize(
    "params, error, message",
    [
        (dict(class_weight={0: -5.0, 1: 1.0}), ValueError, "class_weight[0] is -5.0; class weights must be finite, non-negative numbers."),
        (dict(class_weight={0: float("nan")}), ValueError, "class_weight[0] is nan"),
        (dict(class_weight={0: "a"}), ValueError, "class_weight[0] is 'a'"),
        (dict(device="meta"), ValueError, "device='meta': skattn trains and predicts on 'cpu' and 'cuda' devices only."),
        (dict(device="mps"), ValueError, "device='mps': skattn trains and predicts on 'cpu' and 'cuda' devices only."),
        (dict(d_model=True), InvalidParameterError, "The 'd_model' parameter of AttentionClassifier must be an int, not a bool; got True."),
        (dict(vocab_size=6), InvalidParameterError, "The 'vocab_size' parameter of AttentionClassifier must be an int in the range [7, inf)."),
    ],
)
def test_bad_option_values_are_refused_before_training(params, error, message):
    model = AttentionClassifier(**{**FAST, **params})
    with pytest.raises(error, match=re.escape(message)):
        model.fit(X4, [0, 1, 0, 1])
    assert not hasattr(model, "model_")


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(tmp_path):
    path = tmp_path / "checkpoint"
    path.write_text("not a folder")
    with pytest.raises(ValueError, match=re.escape(f"checkpoint_dir={str(path)!r} is a file, not a directory.")):
        AttentionClassifier(**{**FAST, "checkpoint_dir": path}).fit(X4, [0, 1, 0, 1])


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_a_vocabulary_smaller_than_the_alphabet(kind):
    texts = ["".join(chr(0x4E00 + i) for i in range(k * 10, (k + 1) * 10)) for k in range(30)]  # 300 characters
    model = AttentionClassifier(**{**FAST, "tokenizer": kind, "vocab_size": 100})
    if kind == "unigram":  # keeps every character, so refuses
        with pytest.raises(ValueError, match=r"tokenizer='unigram' needs a vocabulary holding every character .* \(300 distinct\) .* vocab_size=100"):
            model.fit(texts, [0, 1] * 15)
    else:  # limit their alphabet, and keep to vocab_size
        assert model.fit(texts, [0, 1] * 15).config_.vocab_size <= 100
    assert AttentionClassifier(**{**FAST, "vocab_size": 7}).fit(X4, [0, 1, 0, 1]).config_.vocab_size <= 7


def test_an_encoder_fitted_on_other_texts_is_named_in_a_warning():
    other = AttentionEncoder(**{**FAST, "vocab_size": 60}).fit(["zebra quokka xylophone", "quokka zebra"] * 6)
    with pytest.warns(UserWarning, match=r"The encoder's tokenizer reads \d+% of the tokens of these texts as unknown"):
        AttentionClassifier(**{**FAST, "encoder": other}).fit(X4, [0, 1, 0, 1])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="The encoder's tokenizer")
        AttentionClassifier(**{**FAST, "encoder": AttentionEncoder(**FAST).fit(X4)}).fit(X4, [0, 1, 0, 1])


def test_the_classifier_reads_long_texts_as_its_encoder_does():
    texts = [" ".join(["markets"] * 200), " ".join(["goal"] * 200)] * 4
    encoder = AttentionEncoder(**{**FAST, "long_text": "chunk", "max_length": 8}).fit(texts)
    classifier = AttentionClassifier(**{**FAST, "encoder": encoder}).fit(texts, [0, 1] * 4)
    assert classifier.n_tokens_seen_ == encoder.n_tokens_seen_ > 8 * len(texts)
    assert classifier._inputs(texts).encoded.offsets[-1] > len(texts)  # predict reads every window too
    # A model fitted before this was recorded keeps reading as it was fitted: by its own long_text.
    del classifier._long_text_in_fit
    assert classifier._inputs(texts).encoded.offsets[-1] == len(texts)


@pytest.mark.parametrize("n_labels", [3, 5])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_wrong_length_y(method, n_labels):
    y = [0, 1, 0, 1, 0][:n_labels]
    model = AttentionClassifier(**FAST)
    with pytest.raises(ValueError) as info:
        if method == "fit":
            model.fit(X4, y)
        else:
            model.partial_fit(X4, y, classes=[0, 1])
    message = str(info.value)
    assert re.search(r"\b4\b", message) and re.search(rf"\b{n_labels}\b", message), message


def test_wrong_length_y_encoder():
    with pytest.raises(ValueError) as info:
        AttentionEncoder(**FAST).fit(X4, [0, 1, 0])
    message = str(info.value)
    assert re.search(r"\b4\b", message) and re.search(r"\b3\b", message), message


@pytest.mark.parametrize("y", [[1, 1, 1, 1], ["a"] * 4, [0, -1, -1, 0]], ids=["int", "str", "with-unlabeled"])
def test_single_class(y):
    with pytest.raises(ValueError, match=r"2 classes"):
        AttentionClassifier(**FAST).fit(X4, y)


def test_float_minus_one_marks_unlabeled():
    texts = TOPIC_TEXTS[:12]
    y_int = [0, 1, -1, 0, 1, -1, 0, 1, -1, 0, 1, -1]
    y_float = [float(v) for v in y_int]
    with pytest.warns(UserWarning, match="4 documents are labeled -1"):
        model_float = AttentionClassifier(**FAST).fit(texts, y_float)
    np.testing.assert_array_equal(model_float.classes_, [0.0, 1.0])
    assert model_float.classes_.dtype.kind == "f"
    with pytest.warns(UserWarning, match="4 documents are labeled -1"):
        model_int = AttentionClassifier(**FAST).fit(texts, y_int)
    np.testing.assert_array_equal(model_int.classes_, [0, 1])
    np.testing.assert_array_equal(model_float.predict_proba(texts), model_int.predict_proba(texts))
    assert model_float.n_iter_ == model_int.n_iter_
    assert set(model_float.predict(texts).tolist()) <= {0.0, 1.0}


# -- 4. properties ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp32(clf, enc):
    """fp32 deep copies of the shared estimators, default and batch_size=1."""
    clf32 = copy.deepcopy(clf).set_params(precision="fp32")
    enc32 = copy.deepcopy(enc).set_params(precision="fp32")
    return {
        "clf": clf32,
        "clf1": copy.deepcopy(clf32).set_params(batch_size=1),
        "enc": enc32,
        "enc1": copy.deepcopy(enc32).set_params(batch_size=1),
    }


# Other documents of varied lengths, so that a document shares padded batches.
FILLER = [
    "a",
    "the central bank raised interest rates again and again and again",
    "",
    "我爱NLP and 東京",
    " ".join(["word"] * 60),
    "the striker scored",
    FAMILY,
    "stocks fell as markets closed lower on tuesday",
    "sunny",
]

DOCS = st.lists(st.text(), min_size=1, max_size=6)
PROPERTY = settings(max_examples=25, deadline=None)


@PROPERTY
@given(docs=DOCS)
def test_property_outputs_finite(clf, enc, docs):
    n = len(docs)
    _check_embedding(enc.transform(docs), enc, n)
    proba = clf.predict_proba(docs)
    _check_proba(proba, clf, n)
    assert set(clf.predict(docs).tolist()) <= set(clf.classes_.tolist())


def _rows_independent(default, batch1, method, docs):
    n = len(docs)
    together = getattr(default, method)(docs)
    alone = np.vstack([getattr(default, method)([d]) for d in docs])
    mixed = getattr(default, method)(FILLER[:4] + docs + FILLER[4:])[4 : 4 + n]
    one_by_one = getattr(batch1, method)(docs)
    for other in (alone, mixed, one_by_one):
        np.testing.assert_allclose(other, together, atol=1e-5, rtol=0)


@PROPERTY
@given(docs=DOCS)
def test_property_rows_independent_transform(fp32, docs):
    _rows_independent(fp32["enc"], fp32["enc1"], "transform", docs)


@PROPERTY
@given(docs=DOCS)
def test_property_rows_independent_predict_proba(fp32, docs):
    _rows_independent(fp32["clf"], fp32["clf1"], "predict_proba", docs)


# -- 5. threads ---------------------------------------------------------------------


def test_threads_give_serial_answers(clf, enc):
    texts = SMALL
    serial = {
        "predict": clf.predict(texts),
        "predict_proba": clf.predict_proba(texts),
        "transform": enc.transform(texts),
    }
    # Fresh copies: the threads also race on any lazily built inference state.
    shared = {"predict": copy.deepcopy(clf), "transform": copy.deepcopy(enc)}
    shared["predict_proba"] = shared["predict"]
    jobs = [["predict", "predict_proba", "transform"][i % 3] for i in range(8)]

    def work(method):
        return method, [getattr(shared[method], method)(texts) for _ in range(4)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, jobs))
    for method, outputs in results:
        for out in outputs:
            if method == "predict":
                np.testing.assert_array_equal(out, serial[method])
            else:
                np.testing.assert_allclose(out, serial[method], atol=1e-6, rtol=0)


# -- 6. failed fits leave the estimator as it was -------------------------------------


class FailingEncoder(AttentionEncoder):
    """An AttentionEncoder whose fit raises ``FailingEncoder.failure`` when set."""

    failure = None

    def fit(self, X, y=None, sample_weight=None):
        if FailingEncoder.failure is not None:
            raise FailingEncoder.failure
        return super().fit(X, y, sample_weight)


@pytest.fixture(scope="module")
def fitted_twice_safe():
    FailingEncoder.failure = None
    model = AttentionClassifier(**FAST, warm_start=False, encoder=FailingEncoder(**FAST))
    model.fit(TOPIC_TEXTS, TOPIC_LABELS)
    return model


def _snapshot(model):
    return {
        "proba": model.predict_proba(SMALL),
        "keys": set(model.__dict__),
        "params": model.get_params(),
        "n_iter": model.n_iter_,
        "model": model.model_,
        "classes": model.classes_.copy(),
        "loss_curve": list(model.loss_curve_),
    }


def _assert_unchanged(model, before):
    after_keys = set(model.__dict__)
    assert after_keys == before["keys"], after_keys ^ before["keys"]
    assert model.get_params() == before["params"]
    assert model.n_iter_ == before["n_iter"]
    assert model.model_ is before["model"]
    np.testing.assert_array_equal(model.classes_, before["classes"])
    assert model.loss_curve_ == before["loss_curve"]
    np.testing.assert_array_equal(model.predict_proba(SMALL), before["proba"])


@pytest.mark.parametrize(
    "failure",
    ["negative-weight", "wrong-length-y", "whitespace-only", "MemoryError", "KeyboardInterrupt"],
)
def test_failed_fit_leaves_estimator_unchanged(fitted_twice_safe, failure):
    model = fitted_twice_safe
    before = _snapshot(model)
    X, y = TOPIC_TEXTS, TOPIC_LABELS
    try:
        if failure == "negative-weight":
            weights = np.ones(len(X))
            weights[-1] = -1.0
            with pytest.raises(ValueError, match="sample_weight"):
                model.fit(X, y, sample_weight=weights)
        elif failure == "wrong-length-y":
            with pytest.raises(ValueError, match="inconsistent"):
                model.fit(X, y[:-1])
        elif failure == "whitespace-only":
            # Discovered late: after the encoder's pretraining on these texts.
            with pytest.raises(ValueError, match=re.escape("ngram_range=None")):
                model.fit(WHITESPACE, [0, 1] * 5)
        elif failure == "MemoryError":
            FailingEncoder.failure = MemoryError("out of memory while pretraining")
            with pytest.raises(MemoryError):
                model.fit(X, y)
        else:
            FailingEncoder.failure = KeyboardInterrupt()
            with pytest.raises(KeyboardInterrupt):
                model.fit(X, y)
    finally:
        FailingEncoder.failure = None
    _assert_unchanged(model, before)
    assert model.encoder.__class__ is FailingEncoder
    assert not hasattr(model.encoder, "model_")  # the user's encoder is never fitted
