"""The classifier's linear path over word n-grams."""

import functools
import json
import pickle
import unicodedata
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

import skattn
from skattn import AttentionClassifier
from skattn._ngram_counts import lookup_of
from skattn._ngrams import (
    MAX_NGRAM_FEATURES, WordNgrams, _word_pattern, fit_ngram_vectorizer, fitted_ngram_range, resolve_ngram_range,
    restore_ngram_vectorizer, transform_ngrams, written_without_spaces,
)
from skattn.datasets import load_r8

from .conftest import TINY, TOPIC_LABELS, TOPIC_TEXTS


def test_words_split_as_the_tokenizer_splits_them():
    analyzer = WordNgrams((1, 2), lowercase=True)
    assert analyzer("Rates ROSE, again!") == [
        "rates", "rose", ",", "again", "!", "rates rose", "rose ,", ", again", "again !",
    ]
    # Han characters are words of their own, and so is each punctuation mark or symbol.
    assert analyzer("股票上涨。OK") == ["股", "票", "上", "涨", "。", "ok", "股 票", "票 上", "上 涨", "涨 。", "。 ok"]
    assert WordNgrams((1, 1), lowercase=False)("so good!!! 😀 $5 it's") == [
        "so", "good", "!", "!", "!", "😀", "$", "5", "it", "'", "s",
    ]
    assert WordNgrams((2, 3), lowercase=False)("A b c") == ["A b", "b c", "A b c"]
    # Longer n-grams are built from the words, never from the shorter n-grams.
    assert WordNgrams((1, 3), lowercase=False)("A b c") == ["A", "b", "c", "A b", "b c", "A b c"]
    assert WordNgrams((1, 4), lowercase=False)("a b") == ["a", "b", "a b"]
    assert analyzer(" \t\n") == []
    # Without marks (models saved before marks were words), punctuation is dropped.
    assert WordNgrams((1, 2), lowercase=True, marks=False)("Rates ROSE, again!") == [
        "rates", "rose", "again", "rates rose", "rose again",
    ]
    assert WordNgrams((1, 1), lowercase=True, marks=False)("...") == []


@pytest.mark.parametrize("marks", [True, False])
@pytest.mark.parametrize("lowercase", [True, False])
def test_ascii_text_splits_as_the_unicode_patterns_split_it(marks, lowercase):
    # ASCII documents take shorter patterns; every ASCII character, in random
    # runs, must give the words the Unicode patterns give.
    analyzer = WordNgrams((1, 1), lowercase=lowercase, marks=marks)
    rng = np.random.default_rng(0)
    alphabet = np.array([chr(point) for point in range(128)] + [" ", "a", "Z", "7", "_"] * 8)
    documents = ["".join(rng.choice(alphabet, size=rng.integers(0, 40))) for _ in range(2000)]
    documents.append("".join(chr(point) for point in range(128)))
    for document in documents:
        assert document.isascii()
        text = unicodedata.normalize("NFKC", document)
        text = text.lower() if lowercase else text
        assert analyzer.words(document) == _word_pattern(marks).findall(text), repr(document)


@pytest.mark.parametrize(
    "text, words",
    [
        ("हिन्दी है", ["हिन्दी", "है"]),  # Devanagari vowel signs and virama stay in their word
        ("ที่นี่", ["ที่นี่"]),  # Thai tone marks
        ("مَرْحَبًا", ["مَرْحَبًا"]),  # Arabic harakat
        ("می\u200cخواهم", ["می\u200cخواهم"]),  # Persian zero-width non-joiner inside a word
        ("❤️!", ["❤️", "!"]),  # a variation selector stays with its symbol
        ("👍🏽 ok", ["👍🏽", "ok"]),  # a skin tone stays with its emoji
        ("👨\u200d👩\u200d👧 family", ["👨\u200d👩\u200d👧", "family"]),  # one zero-width-joined emoji
        ("soft\u00adhyphen", ["soft", "hyphen"]),  # other format characters are dropped
    ],
)
def test_marks_leave_combining_characters_with_their_words(text, words):
    assert WordNgrams((1, 1), lowercase=False)(text) == words


def test_the_combining_scan_covers_every_combining_and_format_character():
    import sys
    import unicodedata

    from skattn._ngrams import _COMBINING_SCAN

    wanted = ("Mn", "Mc", "Me", "Cf")
    everywhere = [point for point in range(sys.maxunicode + 1) if unicodedata.category(chr(point)) in wanted]
    scanned = [point for start, stop in _COMBINING_SCAN for point in range(start, stop) if unicodedata.category(chr(point)) in wanted]
    assert scanned == everywhere


def test_analyzer_normalizes_and_pickles():
    analyzer = WordNgrams((1, 1), lowercase=True)
    assert analyzer("ﬁne ＡＢＣ ｶﾅ") == ["fine", "abc", "カ", "ナ"]  # NFKC
    assert analyzer("Éclair") == ["éclair"]  # accents kept
    restored = pickle.loads(pickle.dumps(WordNgrams((1, 2), lowercase=True)))
    assert restored("Warm up!") == ["warm", "up", "!", "warm up", "up !"]
    # An analyzer pickled before ``marks`` existed has no such attribute: it drops marks, as it did.
    old = WordNgrams((1, 1), lowercase=True)
    del old.__dict__["marks"]
    assert pickle.loads(pickle.dumps(old))("Warm up!") == ["warm", "up"]


def test_vectorizer_keeps_the_most_frequent_ngrams_and_drops_the_rest():
    texts = ["a b c", "a b", "a"]
    vectorizer, features = fit_ngram_vectorizer(texts, ngram_range=(1, 2), lowercase=True)
    np.testing.assert_array_equal(features.toarray(), vectorizer.transform(texts).toarray())
    assert sorted(vectorizer.vocabulary_) == ["a", "a b", "b", "b c", "c"]
    rows = vectorizer.transform(["a b", "zzz"])
    assert rows.dtype == np.float32
    np.testing.assert_allclose(np.sqrt(rows.multiply(rows).sum(axis=1)).A1, [1.0, 0.0], atol=1e-6)
    assert MAX_NGRAM_FEATURES == 2**18


def test_fast_transform_gives_the_vectorizers_matrix():
    vectorizer, _ = fit_ngram_vectorizer(TOPIC_TEXTS + ["股票上涨 股票"], ngram_range=(1, 2), lowercase=True)
    documents = [
        TOPIC_TEXTS[0],
        TOPIC_TEXTS[1] + " " + TOPIC_TEXTS[1],  # every n-gram twice: sublinear counts
        "",
        "...",
        "words never seen zzzz qqqq",
        "股票上涨。股票",
    ]
    fast = transform_ngrams(vectorizer, documents)
    reference = vectorizer.transform(documents)
    assert fast.dtype == np.float32 and fast.shape == reference.shape
    assert fast.has_canonical_format
    np.testing.assert_array_equal(fast.indptr, reference.indptr)
    np.testing.assert_array_equal(fast.indices, reference.indices)
    np.testing.assert_allclose(fast.data, reference.data, rtol=1e-6)
    assert fast[2].nnz == 0 and fast[1].nnz > 0


def _sklearn_vectorizer(analyzer, **params):
    return TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, dtype=np.float32, **params)


def _assert_same_rows(ours, reference):
    assert ours.dtype == np.float32 and ours.shape == reference.shape and ours.has_canonical_format
    reference = reference.tocsr()
    reference.sort_indices()
    np.testing.assert_array_equal(ours.indptr, reference.indptr)
    np.testing.assert_array_equal(ours.indices, reference.indices)
    np.testing.assert_array_equal(ours.data, reference.data)


@functools.cache
def _r8_sample():
    return load_r8()[0][:300] + MIXED_TEXTS


MIXED_TEXTS = [
    "Rates ROSE, again! Rates rose again.",
    "股票上涨。股票下跌，股票",
    "so good!!! 😀 $5 it's good",
    "a b a b a b",
    "",
    "one",
]


@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3), (1, 4)])
@pytest.mark.parametrize("lowercase", [True, False])
def test_fit_gives_scikit_learns_vocabulary_idf_and_rows(ngram_range, lowercase):
    X_train = _r8_sample()
    vectorizer, features = fit_ngram_vectorizer(X_train, ngram_range=ngram_range, lowercase=lowercase)
    reference = _sklearn_vectorizer(vectorizer.analyzer)
    expected = reference.fit_transform(X_train)
    assert vectorizer.vocabulary_ == reference.vocabulary_  # the same columns, sorted by name
    np.testing.assert_array_equal(vectorizer.idf_, reference.idf_)
    _assert_same_rows(features, expected)
    unseen = MIXED_TEXTS + ["stocks a b c unseen words", "..."]
    _assert_same_rows(transform_ngrams(vectorizer, unseen), reference.transform(unseen))


@pytest.mark.parametrize("ngram_range", [(1, 2), (1, 3), (2, 3)])
def test_fit_keeps_the_most_frequent_ngrams_and_the_first_by_name_at_the_cut(monkeypatch, ngram_range):
    X_train = _r8_sample()
    counts = CountVectorizer(analyzer=WordNgrams(ngram_range, lowercase=True)).fit(X_train)
    totals = dict(zip(counts.get_feature_names_out(), np.asarray(counts.transform(X_train).sum(axis=0)).ravel()))
    by_count = sorted(totals, key=lambda term: (-totals[term], term))
    limit = 1000
    cut = totals[by_count[limit - 1]]
    assert totals[by_count[limit]] == cut  # the cut falls inside a tie, so the rule for ties decides
    monkeypatch.setattr(skattn._ngrams, "MAX_NGRAM_FEATURES", limit)
    vectorizer, features = fit_ngram_vectorizer(X_train, ngram_range=ngram_range, lowercase=True)
    assert sorted(vectorizer.vocabulary_) == sorted(by_count[:limit])
    assert {term for term in totals if totals[term] > cut} <= set(vectorizer.vocabulary_)
    # The idf and rows are scikit-learn's for that vocabulary.
    reference = _sklearn_vectorizer(vectorizer.analyzer, vocabulary=sorted(vectorizer.vocabulary_))
    expected = reference.fit_transform(X_train)
    assert vectorizer.vocabulary_ == reference.vocabulary_
    np.testing.assert_array_equal(vectorizer.idf_, reference.idf_)
    _assert_same_rows(features, expected)


def test_transform_finds_ngrams_whose_words_are_not_terms():
    # Without single words in the vocabulary, bigrams are still found from their words; and an
    # n-gram whose prefix is a kept bigram but is not itself kept counts for nothing.
    vectorizer, _ = fit_ngram_vectorizer(["x y z", "x y w", "q r"], ngram_range=(2, 3), lowercase=True)
    assert sorted(vectorizer.vocabulary_) == ["q r", "x y", "x y w", "x y z", "y w", "y z"]
    documents = ["x y z", "q r x y", "x y q", "z y x", "x x y w w", ""]
    _assert_same_rows(transform_ngrams(vectorizer, documents), vectorizer.transform(documents))
    assert transform_ngrams(vectorizer, []).shape == (0, 6)


def test_the_lookup_follows_its_vectorizer():
    vectorizer, _ = fit_ngram_vectorizer(["a b", "b c"], ngram_range=(1, 2), lowercase=True)
    first = transform_ngrams(vectorizer, ["a b c"])
    copy = pickle.loads(pickle.dumps(vectorizer))  # a new object: its lookup is rebuilt
    _assert_same_rows(transform_ngrams(copy, ["a b c"]), first)
    copy.vocabulary_ = {"c": 0, "a": 1}  # replaced vocabulary: the lookup follows it
    copy.idf_ = np.ones(2)
    np.testing.assert_allclose(transform_ngrams(copy, ["a b c"]).toarray(), [[2**-0.5, 2**-0.5]], rtol=1e-6)
    assert lookup_of(copy) is lookup_of(copy)
    copy.vocabulary_["b c"] = 2  # grown in place: seen too
    copy.idf_ = np.ones(3)
    assert transform_ngrams(copy, ["b c"]).toarray()[0, 2] > 0


def test_a_restored_vocabulary_may_hold_ngrams_longer_than_the_range():
    vectorizer = restore_ngram_vectorizer(["a", "a b", "a b c"], np.ones(3), ngram_range=(1, 2), lowercase=True, marks=True)
    _assert_same_rows(transform_ngrams(vectorizer, ["a b c", "c"]), vectorizer.transform(["a b c", "c"]))
    with pytest.raises(ValueError, match=r"n-gram range \(0, 2\) is not a valid"):
        restore_ngram_vectorizer(["a"], np.ones(1), ngram_range=(0, 2), lowercase=True, marks=True)


def test_vectorizer_needs_a_word():
    with pytest.raises(ValueError, match="no word.*ngram_range=None"):
        fit_ngram_vectorizer(["  ", "\t\n"], ngram_range=(1, 2), lowercase=True)
    with pytest.raises(ValueError, match=r"No training text has the 3 words that the smallest n-gram of ngram_range=\(3, 3\) needs \(the longest has 2\); lower"):
        fit_ngram_vectorizer(["good film", "bad"], ngram_range=(3, 3), lowercase=True)


def test_classifier_has_both_paths_and_predicts_their_sum(fitted_classifier):
    vectorizer = fitted_classifier.ngram_vectorizer_
    assert len(vectorizer.vocabulary_) == fitted_classifier.model_.wide.bag.num_embeddings
    assert fitted_classifier.model_.wide.bag.weight.abs().sum() > 0  # trained
    inputs = fitted_classifier._inputs(TOPIC_TEXTS[:4])
    batch = inputs.batch(np.arange(4), next(fitted_classifier.model_.parameters()).device)
    with torch.inference_mode():
        encoder_logits, ngram_logits = fitted_classifier.model_.path_logits(**batch.inputs())
    assert fitted_classifier.encoder_logit_scale == "auto" and fitted_classifier.encoder_logit_scale_ == 0.25
    expected = (0.25 * encoder_logits + ngram_logits).cpu().numpy()
    np.testing.assert_allclose(
        fitted_classifier.set_params(precision="fp32").decision_function(TOPIC_TEXTS[:4]), expected, rtol=1e-5, atol=1e-5
    )


def test_ngram_range_none_trains_the_encoder_alone():
    clf = AttentionClassifier(**TINY, ngram_range=None).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert clf.ngram_vectorizer_ is None
    assert clf.model_.wide is None
    assert clf.predict(TOPIC_TEXTS).shape == (len(TOPIC_TEXTS),)


def test_ngram_path_alone_can_separate_what_the_encoder_cannot_see():
    # The deciding word sits past max_length: the truncated encoder never
    # sees it, the n-grams of the whole document do.
    rng = np.random.default_rng(0)
    filler = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]

    def documents(n):
        labels = rng.integers(2, size=n)
        texts = [" ".join([*rng.choice(filler, size=40), ["apples", "oranges"][label]]) for label in labels]
        return texts, labels

    X, y = documents(80)
    X_test, y_test = documents(60)
    params = dict(TINY, max_length=16, max_epochs=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with_ngrams = AttentionClassifier(**params).fit(X, y)
        without = AttentionClassifier(**params, ngram_range=None).fit(X, y)
    assert with_ngrams.score(X_test, y_test) > 0.95
    assert without.score(X_test, y_test) < 0.8


def test_encoder_logit_scale_weighs_the_encoder_path():
    scaled = AttentionClassifier(**TINY, encoder_logit_scale=0.0).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert float(scaled.model_.encoder_scale) == 0.0
    inputs = scaled._inputs(TOPIC_TEXTS)
    batch = inputs.batch(np.arange(len(TOPIC_TEXTS)), next(scaled.model_.parameters()).device)
    with torch.inference_mode():
        ngram_logits = scaled.model_.path_logits(**batch.inputs())[1].cpu().numpy()
    np.testing.assert_allclose(scaled.set_params(precision="fp32").decision_function(TOPIC_TEXTS), ngram_logits, atol=1e-6)
    # The scale is part of the fitted model: it survives pickling.
    assert float(pickle.loads(pickle.dumps(scaled)).model_.encoder_scale) == 0.0
    # Without the n-gram path there is no sum to weigh: the encoder's logits are the model's.
    alone = AttentionClassifier(**TINY, ngram_range=None, encoder_logit_scale=0.3).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert alone.encoder_logit_scale_ == 1.0


def test_auto_encoder_logit_scale_weighs_the_encoder_less_on_text_without_spaces():
    labels = [0, 1, 2] * 4  # three classes: decision_function is then the logits
    assert not hasattr(AttentionClassifier(), "encoder_logit_scale_")
    english = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert english.encoder_logit_scale_ == 0.25
    chinese = AttentionClassifier(**TINY, precision="fp32").fit(CHINESE * 4, labels)
    assert chinese.encoder_logit_scale == "auto" and chinese.encoder_logit_scale_ == 0.1
    inputs = chinese._inputs(CHINESE)
    batch = inputs.batch(np.arange(len(CHINESE)), next(chinese.model_.parameters()).device)
    with torch.inference_mode():
        encoder_logits, ngram_logits = chinese.model_.path_logits(**batch.inputs())
    np.testing.assert_allclose(
        chinese.decision_function(CHINESE), (0.1 * encoder_logits + ngram_logits).cpu().numpy(), rtol=1e-5, atol=1e-5
    )
    # Continued training keeps the first fit's choice, whatever the new texts are written in.
    chinese.partial_fit(TOPIC_TEXTS[:3], [0, 1, 2])
    assert chinese.encoder_logit_scale_ == 0.1
    chinese.set_params(warm_start=True).fit(TOPIC_TEXTS[:6], [0, 1, 2] * 2)
    assert chinese.encoder_logit_scale_ == 0.1
    # A number is used as given, cold or warm.
    assert chinese.set_params(encoder_logit_scale=0.5).fit(CHINESE * 4, labels).encoder_logit_scale_ == 0.5
    assert AttentionClassifier(**TINY, encoder_logit_scale=0.3).fit(CHINESE * 4, labels).encoder_logit_scale_ == 0.3


def test_partial_fit_keeps_the_first_vectorizer():
    clf = AttentionClassifier(**TINY)
    clf.partial_fit(TOPIC_TEXTS[:9], TOPIC_LABELS[:9], classes=[0, 1, 2])
    vocabulary = dict(clf.ngram_vectorizer_.vocabulary_)
    clf.partial_fit(["entirely new words here"] * 3, [0, 1, 2])
    assert clf.ngram_vectorizer_.vocabulary_ == vocabulary


@pytest.mark.parametrize("ngram_range", [(2, 1), (0, 1), (1, 2, 3), (1.0, 2), (True, 2)])
def test_invalid_ngram_range(ngram_range):
    with pytest.raises(ValueError, match=r"ngram_range must be 'auto', None or a tuple \(min_n, max_n\)"):
        AttentionClassifier(**TINY, ngram_range=ngram_range).fit(TOPIC_TEXTS, TOPIC_LABELS)


ENGLISH = ["the markets closed lower", "rain expected tomorrow", "the team won the final"]
CHINESE = ["这家酒店的服务很好，房间干净", "书的内容很无聊，不推荐", "质量不错 物流很快"]


@pytest.mark.parametrize(
    "documents, expected",
    [
        (ENGLISH, (1, 2)),
        (CHINESE, (1, 3)),
        (ENGLISH * 3 + CHINESE[:1], (1, 2)),  # mostly English, some Chinese: by words, English wins
        (CHINESE * 3 + ["the hotel was clean and the staff were kind"], (1, 3)),
        (["ひらがなとカタカナのぶん"], (1, 3)),
    ],
)
def test_auto_ngram_range_uses_character_trigrams_for_text_without_spaces(documents, expected):
    assert resolve_ngram_range("auto", documents) == expected
    assert written_without_spaces(documents) is (expected == (1, 3))
    assert resolve_ngram_range((1, 1), documents) == (1, 1)


def test_auto_ngram_range_is_fitted_saved_and_exported(tmp_path):
    chinese = AttentionClassifier(**TINY).fit(CHINESE * 4, [0, 1, 0] * 4)
    assert chinese.ngram_range == "auto"  # the parameter stays as given
    assert fitted_ngram_range(chinese.ngram_vectorizer_) == (1, 3)
    assert "好，" not in chinese.ngram_vectorizer_.vocabulary_ and "服 务 很" in chinese.ngram_vectorizer_.vocabulary_
    english = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert fitted_ngram_range(english.ngram_vectorizer_) == (1, 2)

    chinese.save(tmp_path / "zh.skattn")
    restored = skattn.load(tmp_path / "zh.skattn")
    assert fitted_ngram_range(restored.ngram_vectorizer_) == (1, 3)
    assert restored.encoder_logit_scale_ == 0.1
    np.testing.assert_array_equal(restored.predict_proba(CHINESE), chinese.predict_proba(CHINESE))


MARKED_TEXTS = [f"{text}{mark}" for text, mark in zip(TOPIC_TEXTS, ["!!", "?", ":)", "...", "$", "%"] * 3)]


def test_marks_are_saved_and_files_written_before_them_keep_dropping_them(tmp_path):
    import hashlib
    import zipfile

    clf = AttentionClassifier(**TINY).fit(MARKED_TEXTS, TOPIC_LABELS)
    assert "!" in clf.ngram_vectorizer_.vocabulary_ and "final ." in clf.ngram_vectorizer_.vocabulary_
    clf.save(tmp_path / "now.skattn")
    restored = skattn.load(tmp_path / "now.skattn")
    assert restored.ngram_vectorizer_.analyzer.marks is True
    np.testing.assert_array_equal(restored.predict_proba(MARKED_TEXTS), clf.predict_proba(MARKED_TEXTS))

    # The same file as skattn wrote it before marks were words: no "marks" in ngrams.json.
    with zipfile.ZipFile(tmp_path / "now.skattn") as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    ngrams = json.loads(parts["ngrams.json"])
    del ngrams["marks"]
    parts["ngrams.json"] = json.dumps(ngrams).encode()
    manifest = json.loads(parts["manifest.json"])
    manifest["parts"]["ngrams.json"] = hashlib.sha256(parts["ngrams.json"]).hexdigest()
    manifest["format_version"] = 1
    parts["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(tmp_path / "before.skattn", "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    old = skattn.load(tmp_path / "before.skattn")
    assert old.ngram_vectorizer_.analyzer.marks is False
    assert old.ngram_vectorizer_.analyzer("final!") == ["final"]

