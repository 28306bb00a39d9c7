"""Learning on real and non-English text: accuracy well above chance.

Small models and subsets keep each test to seconds; the full-size results
are in benchmarks/.
"""

import numpy as np
from sklearn.metrics import accuracy_score

from skattn import AttentionClassifier, AttentionEncoder
from skattn.datasets import load_r8

SMALL = dict(
    vocab_size=2000,
    max_length=96,
    d_model=64,
    n_heads=2,
    n_layers=1,
    d_ff=128,
    batch_size=32,
    random_state=0,
)


def _r8_subset(n_train=1500, n_test=600):
    X_train, y_train, X_test, y_test = load_r8()
    return X_train[:n_train], y_train[:n_train], X_test[:n_test], y_test[:n_test]


def test_load_r8():
    X_train, y_train, X_test, y_test = load_r8()
    assert (len(X_train), len(y_train), len(X_test), len(y_test)) == (5485, 5485, 2189, 2189)
    assert sorted(set(y_train)) == ["acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade"]
    assert all(isinstance(x, str) and x for x in X_train[:100])


def test_classifier_learns_r8_topics():
    X_train, y_train, X_test, y_test = _r8_subset()
    # The encoder alone: with the n-gram path, accuracy would not show it learns.
    clf = AttentionClassifier(**SMALL, max_epochs=6, learning_rate=3e-3, ngram_range=None).fit(X_train, y_train)
    majority = max(y_test.count(c) for c in set(y_test)) / len(y_test)
    accuracy = clf.score(X_test, y_test)
    assert majority < 0.65  # the most frequent topic, 'earn'
    assert accuracy > 0.85, accuracy
    # bfloat16 inference (a cast replica of the model) agrees with float32.
    bf16 = clf.set_params(precision="bf16").score(X_test, y_test)
    fp32 = clf.set_params(precision="fp32").score(X_test, y_test)
    assert abs(bf16 - fp32) <= 0.01, (bf16, fp32)


def test_both_paths_together_on_r8_topics():
    X_train, y_train, X_test, y_test = _r8_subset()
    clf = AttentionClassifier(**SMALL, max_epochs=3).fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.9
    bf16 = clf.set_params(precision="bf16").predict(X_test)
    fp32 = clf.set_params(precision="fp32").predict(X_test)
    assert np.mean(bf16 == fp32) >= 0.99


def test_encoder_features_feed_a_linear_model():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X_train, y_train, X_test, y_test = _r8_subset(n_train=1000, n_test=400)
    pipe = make_pipeline(AttentionEncoder(**SMALL, max_epochs=2), LogisticRegression(max_iter=2000))
    pipe.fit(X_train, y_train)
    assert pipe.score(X_test, y_test) > 0.7


def test_unlabeled_texts_pretrain_the_encoder():
    X_train, y_train, X_test, y_test = _r8_subset(n_train=1200, n_test=400)
    y = np.array(y_train, dtype=object)
    # Integer labels with -1 for unlabeled texts, as in sklearn.semi_supervised.
    codes = np.unique(y, return_inverse=True)[1]
    codes[400:] = -1
    clf = AttentionClassifier(**SMALL, max_epochs=4, encoder=AttentionEncoder(**SMALL, max_epochs=1))
    clf.fit(X_train, codes)
    assert -1 not in clf.classes_
    names = np.unique(y)
    assert accuracy_score(y_test, names[clf.predict(X_test)]) > 0.7


# Two topics written in Chinese, with no spaces between words.
_SPORT = ["足球", "比赛", "球队", "进球", "冠军", "教练", "球员", "联赛"]
_MONEY = ["股票", "市场", "银行", "利率", "投资", "经济", "价格", "公司"]
_FILLER = ["今天", "我们", "认为", "这个", "非常", "已经", "昨天", "可能"]


def _chinese_corpus(n, rng):
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(2))
        topic = _SPORT if label == 0 else _MONEY
        words = list(rng.choice(topic, size=3)) + list(rng.choice(_FILLER, size=3))
        rng.shuffle(words)
        texts.append("".join(words) + "。")
        labels.append(["体育", "财经"][label])
    return texts, labels


def test_chinese_without_spaces():
    rng = np.random.default_rng(0)
    X_train, y_train = _chinese_corpus(300, rng)
    X_test, y_test = _chinese_corpus(200, rng)
    clf = AttentionClassifier(**dict(SMALL, vocab_size=200), max_epochs=8).fit(X_train, y_train)
    assert set(clf.classes_) == {"体育", "财经"}
    assert clf.score(X_test, y_test) > 0.9
