"""Insight into fitted models: explanations, attention weights, the model card, plots, progress."""

import io
import json
import pickle
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import skattn
from skattn import AttentionClassifier, AttentionEncoder, Explanation
from skattn._explain import text_encoder

from .conftest import TINY, TOPIC_LABELS, TOPIC_TEXTS

FILLER = "the a of report market company said year price share group plan board talks week".split()
KEYWORDS = {"pos": "excellent", "neg": "terrible"}


def keyword_corpus(n_documents, seed):
    """Documents of random filler words where one keyword, at a random place, decides the class."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n_documents):
        label = ["neg", "pos"][i % 2]
        words = list(rng.choice(FILLER, size=int(rng.integers(6, 14))))
        words.insert(int(rng.integers(0, len(words) + 1)), KEYWORDS[label])
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


# On the CPU in float32 everywhere, so that GPUs and CPUs without native bf16 run the same numbers.
KEYWORD_MODEL = dict(
    vocab_size=200, d_model=32, n_heads=2, n_layers=1, d_ff=64, max_epochs=6, learning_rate=3e-3,
    device="cpu", precision="fp32", random_state=0,
)


def _fit_quietly(estimator, X, y=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


@pytest.fixture(scope="module")
def keyword_data():
    return keyword_corpus(400, seed=0), keyword_corpus(40, seed=1)


@pytest.fixture(scope="module")
def both_paths(keyword_data):
    (X, y), _ = keyword_data
    return _fit_quietly(AttentionClassifier(**KEYWORD_MODEL), X, y)


@pytest.fixture(scope="module")
def encoder_only(keyword_data):
    (X, y), _ = keyword_data
    return _fit_quietly(AttentionClassifier(**KEYWORD_MODEL, ngram_range=None), X, y)


# -- explain -------------------------------------------------------------------------------


def test_the_deciding_word_ranks_first_in_the_encoder(encoder_only, keyword_data):
    _, (X_test, y_test) = keyword_data
    assert encoder_only.score(X_test, y_test) == 1.0
    hits = 0
    for explanation, label in zip(encoder_only.explain(X_test[:20]), y_test[:20]):
        assert explanation.target == label
        feature, importance, path = explanation.top(1)[0]
        hits += (feature, path) == (KEYWORDS[label], "encoder") and importance > 0
        assert explanation.ngrams == [] and explanation.ngram_score == 0.0
        assert explanation.encoder_share == 1.0
    assert hits >= 18  # a filler word ranks first in at most a few documents


def test_integrated_gradients_add_up_to_the_change_of_the_score(encoder_only, keyword_data, monkeypatch):
    from skattn import _explain

    # The document whose score moves most from the empty input: one of the class the empty input is not.
    _, (X_test, _) = keyword_data
    explanations = encoder_only.explain(X_test[:10])
    changes = [e.encoder_score - e.encoder_baseline for e in explanations]
    text = X_test[int(np.argmax(changes))]
    change = max(changes)
    assert change > 0.1
    monkeypatch.setattr(_explain, "INTEGRATION_STEPS", 256)
    finer = encoder_only.explain([text])[0].token_importance.sum()
    assert finer == pytest.approx(change, rel=0.05, abs=1e-3)
    monkeypatch.setattr(_explain, "PASS_TOKENS", 16)  # one step per pass: the same sums
    np.testing.assert_allclose(encoder_only.explain([text])[0].token_importance.sum(), finer, rtol=1e-4)


def test_the_deciding_word_ranks_first_in_the_ngram_path(both_paths, keyword_data):
    _, (X_test, y_test) = keyword_data
    hits = 0
    for explanation, label in zip(both_paths.explain(X_test[:20]), y_test[:20]):
        top_gram = explanation.top(1, path="ngram")[0][0]
        hits += KEYWORDS[label] in top_gram.split()
        assert 0.0 < explanation.ngram_share < 1.0
        assert explanation.encoder_share + explanation.ngram_share == pytest.approx(1.0)
    assert hits >= 18


def test_tokens_and_ngrams_map_back_to_the_text(both_paths):
    text = "The MARKET said: Excellent price!"
    explanation = both_paths.explain([text])[0]
    assert [text[start:end].lower() for start, end in explanation.token_spans] == ["the", "market", "said", ":", "excellent", "price", "!"]
    # Punctuation never seen in training is an unknown token, still mapped to its character.
    assert explanation.tokens == ["the", "market", "said", "[UNK]", "excellent", "price", "[UNK]"]
    for gram, spans in zip(explanation.ngrams, explanation.ngram_spans):
        assert spans, gram
        for start, end in spans:
            assert " ".join(text[start:end].lower().replace(":", "").split()) == gram


def test_ngram_spans_survive_normalisation():
    from skattn._ngrams import WordNgrams, ngram_spans

    text = "Café cafe\u0301 ｶﾀｶﾅ ½ İstanbul ㍻ price! 这本书"
    spans = ngram_spans(text, (1, 2), lowercase=True, marks=True)
    assert set(WordNgrams((1, 2), lowercase=True)(text)) <= set(spans)  # every n-gram is found
    assert [text[s:e] for s, e in spans["price !"]] == ["price!"]
    without_marks = ngram_spans(text, (1, 2), lowercase=True, marks=False)
    assert set(WordNgrams((1, 2), lowercase=True, marks=False)(text)) == set(without_marks)
    assert [text[s:e] for s, e in spans["café"]] == ["Café", "cafe\u0301"]
    assert [text[s:e] for s, e in spans["本 书"]] == ["本书"]
    assert [text[s:e] for s, e in spans["price"]] == ["price"]


def test_the_two_paths_add_up_to_the_models_score(both_paths, keyword_data):
    _, (X_test, _) = keyword_data
    both_paths.set_params(precision="fp32")  # the logits explain computes, in float32
    try:
        logits = both_paths.decision_function(X_test[:6])
    finally:
        both_paths.set_params(precision="auto")
    logits = np.stack([-logits / 2, logits / 2], axis=1)  # two classes: log-odds, centred
    classes = list(both_paths.classes_)
    for row, explanation in zip(logits, both_paths.explain(X_test[:6])):
        assert explanation.ngram_importance.sum() == pytest.approx(explanation.ngram_score)
        centred = row[classes.index(explanation.target)]
        assert explanation.encoder_score + explanation.ngram_score == pytest.approx(centred, abs=1e-4)


def test_explain_a_chosen_class(both_paths):
    text = "the market said excellent price"
    for_pos, against = both_paths.explain([text])[0], both_paths.explain([text], target="neg")[0]
    assert (for_pos.target, against.target) == ("pos", "neg")
    assert against.encoder_score + against.ngram_score == pytest.approx(-(for_pos.encoder_score + for_pos.ngram_score), rel=1e-4)
    assert dict(zip(against.ngrams, against.ngram_importance))["excellent"] < 0


def test_rollout_is_a_distribution_over_tokens(both_paths):
    explanation = both_paths.explain(["the market said excellent price"], method="rollout")[0]
    assert explanation.method == "rollout"
    assert np.all(explanation.token_importance >= 0)
    assert explanation.token_importance.sum() == pytest.approx(1.0)
    assert len(explanation.token_importance) == len(explanation.tokens) == 5


def test_explain_rejects_unknown_targets_and_methods(both_paths):
    with pytest.raises(ValueError, match=r"target='maybe' is not one of the classes \['neg', 'pos'\]"):
        both_paths.explain(["a text"], target="maybe")
    with pytest.raises(ValueError, match=r"method must be one of \('gradient', 'rollout'\); got 'lime'"):
        both_paths.explain(["a text"], method="lime")
    with pytest.raises(NotFittedError):
        AttentionClassifier().explain(["a text"])


def test_explain_reads_every_window_of_a_chunked_document():
    words = ["word"] * 60 + ["excellent"]
    X = [" ".join(words)] * 4 + [" ".join(["word"] * 61)] * 4
    params = dict(TINY, max_length=16, long_text="chunk")
    clf = _fit_quietly(AttentionClassifier(**params), X, [1] * 4 + [0] * 4)
    explanation = clf.explain(X[:1])[0]
    assert len(explanation.tokens) == 61 and explanation.tokens[-1] == "excellent"
    assert np.count_nonzero(explanation.token_importance) == 61
    truncated = _fit_quietly(AttentionClassifier(**dict(params, long_text="truncate")), X, [1] * 4 + [0] * 4)
    assert len(truncated.explain(X[:1])[0].tokens) == 14


def test_explain_multilabel_picks_the_highest_scoring_label():
    y = np.array([[1, 0], [0, 1], [1, 1]] * 6)
    clf = _fit_quietly(AttentionClassifier(**TINY), TOPIC_TEXTS, y)
    scores = clf.decision_function(TOPIC_TEXTS[:3])
    explanations = clf.explain(TOPIC_TEXTS[:3])
    assert [e.target for e in explanations] == list(scores.argmax(axis=1))
    assert clf.explain(TOPIC_TEXTS[:1], target=1)[0].target == 1


def test_an_empty_document_explains_and_draws(both_paths, plot):
    explanation = both_paths.explain([""])[0]
    assert explanation.tokens == [] and explanation.ngrams == []
    assert "<div>" in explanation._repr_html_()
    assert len(plot.plot_explanation(explanation).texts) == 0


def test_explanation_frame_and_html(both_paths):
    pytest.importorskip("pandas")
    explanation = both_paths.explain(["the market said <excellent> price"])[0]
    frame = explanation.to_frame()
    assert list(frame.columns) == ["path", "feature", "importance", "spans"]
    assert len(frame) == len(explanation.tokens) + len(explanation.ngrams)
    assert frame["importance"].is_monotonic_decreasing
    markup = explanation._repr_html_()
    assert "&lt;" in markup and "&gt;" in markup and "<excellent>" not in markup
    assert "background: rgba(0, 128, 0" in markup
    assert isinstance(explanation, Explanation) and skattn.Explanation is Explanation


# -- attention weights ------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["fitted_classifier", "fitted_encoder"])
def test_attention_weights_are_the_models_own(fixture, request):
    estimator = request.getfixturevalue(fixture)
    text = TOPIC_TEXTS[0]
    (attention,) = estimator.attention_weights([text])
    n = len(attention.tokens)
    assert attention.tokens[0] == "[CLS]" and attention.tokens[-1] == "[SEP]"
    assert attention.weights.shape == (TINY["n_layers"], TINY["n_heads"], n, n)
    np.testing.assert_allclose(attention.weights.sum(axis=-1), 1.0, atol=1e-5)
    assert [text[s:e] for s, e in attention.token_spans[1:-1]] == text.split()
    # The recorded weights run the same model as the fused kernel.
    encoder = text_encoder(estimator.model_)
    ids = torch.tensor([estimator.tokenizer_.encode(text).ids], device=next(encoder.parameters()).device)
    with torch.inference_mode():
        plain, _ = encoder(ids)
        recorded, _ = encoder(ids, record=[])
    torch.testing.assert_close(plain, recorded, atol=1e-5, rtol=1e-5)


def test_attention_weights_without_layers():
    clf = _fit_quietly(AttentionClassifier(**dict(TINY, n_layers=0)), TOPIC_TEXTS, TOPIC_LABELS)
    (attention,) = clf.attention_weights(["stocks fell"])
    assert attention.weights.shape == (0, 0, 4, 4)


# -- summary ----------------------------------------------------------------------------------


def test_summary_describes_the_fitted_classifier(fitted_classifier, tmp_path):
    summary = fitted_classifier.summary()
    facts = summary.to_dict()
    json.dumps(facts)
    assert facts["n_parameters"] == sum(p.numel() for p in fitted_classifier.model_.parameters())
    assert sum(summary.parameters.values()) == facts["n_parameters"]
    assert list(summary.parameters) == [
        "token embeddings", "position embeddings", "transformer blocks", "final layer norm", "classification head", "n-gram path",
    ]
    assert facts["classes"] == ["0", "1", "2"]
    assert facts["n_epochs"] == TINY["max_epochs"] and facts["n_tokens_seen"] == fitted_classifier.n_tokens_seen_
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the fixture's device="auto"
    assert facts["device"].split(":")[0] == device and facts["precision"] in ("fp32", "bf16") and facts["fit_time_s"] > 0
    assert facts["n_ngrams"] == len(fitted_classifier.ngram_vectorizer_.vocabulary_)
    assert facts["encoder_logit_scale"] == fitted_classifier.encoder_logit_scale_ == 0.25
    assert facts["inference_device"].split(":")[0] == device and facts["inference_precision"] in ("fp32", "bf16", "int8")
    text = str(summary)
    assert text.startswith("AttentionClassifier\n") and "classes" in text and "n-gram path" in text and "inference" in text
    assert repr(summary) == text and "<table>" in summary._repr_html_()
    fitted_classifier.save(tmp_path / "model.skattn")
    for reloaded in (pickle.loads(pickle.dumps(fitted_classifier)), skattn.load(tmp_path / "model.skattn")):
        assert (reloaded.fit_time_, reloaded.fit_device_, reloaded.fit_precision_) == (
            fitted_classifier.fit_time_, fitted_classifier.fit_device_, fitted_classifier.fit_precision_,
        )
        assert reloaded.summary().rows[:-1] == summary.rows[:-1]


def test_summary_of_an_encoder_and_of_an_unfitted_estimator(fitted_encoder):
    summary = fitted_encoder.summary()
    assert "classes" not in summary.to_dict() and "classification head" not in summary.parameters
    # A classifier fine-tuning a BPE encoder names the tokenizer it holds, not its own parameter.
    bpe = AttentionEncoder(**dict(TINY, tokenizer="bpe")).fit(TOPIC_TEXTS)
    tuned = _fit_quietly(AttentionClassifier(**TINY, encoder=bpe), TOPIC_TEXTS, TOPIC_LABELS)
    assert tuned.tokenizer == "wordpiece" and tuned.summary().to_dict()["tokenizer"] == "bpe"
    assert summary.to_dict()["n_parameters"] == sum(p.numel() for p in fitted_encoder.model_.parameters())
    with pytest.raises(NotFittedError):
        AttentionEncoder().summary()


@pytest.mark.parametrize("fitted", [False, True])
def test_sklearn_html_representation_still_works(fitted, fitted_classifier):
    estimator = fitted_classifier if fitted else AttentionClassifier(d_model=64)
    markup = estimator._repr_html_()
    assert "AttentionClassifier" in markup and "d_model" in markup


# -- plots -------------------------------------------------------------------------------------


def _png_shape(figure, dpi=50):
    """The (height, width) of ``figure`` saved as PNG, and whether it has more than one colour."""
    import matplotlib.image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    buffer.seek(0)
    pixels = matplotlib.image.imread(buffer, format="png")
    return pixels.shape[:2], len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 10


@pytest.fixture
def plot():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skattn import plot

    yield plot
    plt.close("all")


def test_plot_learning_curve(plot, both_paths):
    ax = plot.plot_learning_curve(both_paths)
    assert list(ax.lines[0].get_ydata()) == both_paths.loss_curve_ and ax.right_ax is None
    ax.figure.set_size_inches(6, 4)
    assert _png_shape(ax.figure) == ((200, 300), True)
    stopped = _fit_quietly(AttentionClassifier(**dict(TINY, early_stopping=True, validation_fraction=0.34, max_epochs=3)), TOPIC_TEXTS, TOPIC_LABELS)
    ax = plot.plot_learning_curve(stopped)
    assert list(ax.right_ax.lines[0].get_ydata()) == stopped.validation_scores_


def test_plot_attention(plot, both_paths):
    ax = plot.plot_attention(both_paths, "the market said excellent price", head=1)
    assert ax.images[0].get_array().shape == (7, 7)
    assert [label.get_text() for label in ax.get_xticklabels()][0] == "[CLS]"
    ax.figure.set_size_inches(5, 4)
    assert _png_shape(ax.figure) == ((200, 250), True)
    with pytest.raises(ValueError, match="layer=3 is out of range for a model of 1 layers"):
        plot.plot_attention(both_paths, "a text", layer=3)
    with pytest.raises(ValueError, match="head=2 is out of range for a model of 2 heads"):
        plot.plot_attention(both_paths, "a text", head=2)


def test_plot_explanation(plot, both_paths):
    text = " ".join(["the market said excellent price for the board"] * 6)
    explanation = both_paths.explain([text])[0]
    ax = plot.plot_explanation(explanation, width=60)
    assert "".join(t.get_text() for t in ax.texts) == text
    assert max(t.get_position()[0] + len(t.get_text().rstrip()) for t in ax.texts) <= 60
    assert "pos: encoder" in ax.get_title(loc="left")
    size = ax.figure.get_size_inches()
    (height, width), coloured = _png_shape(ax.figure, dpi=40)
    assert (height, width) == (round(size[1] * 40), round(size[0] * 40)) and coloured


def test_plot_explanation_draws_dollar_signs_as_text(plot, both_paths):
    explanation = both_paths.explain(["net loss of $5 mln vs $$3 mln"])[0]
    ax = plot.plot_explanation(explanation)
    assert "".join(t.get_text() for t in ax.texts) == explanation.text
    assert _png_shape(ax.figure)[1]  # renders: no mathtext parse error


def test_wrap_breaks_at_spaces_within_the_width():
    from skattn.plot import _wrap

    assert _wrap("aaaa bbbb", 4) == [(0, 5), (5, 9)]
    assert _wrap("abcdefghij", 4) == [(0, 4), (4, 8), (8, 10)]
    assert _wrap("ab\ncd", 10) == [(0, 2), (3, 5)]


def test_plot_confusion_matrix(plot, both_paths, keyword_data):
    _, (X_test, y_test) = keyword_data
    display = plot.plot_confusion_matrix(both_paths, X_test, y_test)
    assert display.confusion_matrix.sum() == len(X_test)
    assert np.trace(display.confusion_matrix) == len(X_test)
    display.figure_.set_size_inches(4, 4)
    assert _png_shape(display.figure_) == ((200, 200), True)


# -- progress by default -------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_auto_progress_is_silent_off_a_terminal(capsys):
    clf = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert clf.verbose == "auto"
    clf.predict(TOPIC_TEXTS)
    assert capsys.readouterr().err == ""


def test_auto_progress_shows_bars_on_a_terminal(monkeypatch):
    from skattn import _progress

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    clf = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert "AttentionClassifier 2/2" in terminal.getvalue()
    terminal.seek(0)
    terminal.truncate()
    clf.predict(TOPIC_TEXTS)
    assert terminal.getvalue() == ""  # a small predict shows nothing
    monkeypatch.setattr(_progress, "AUTO_INFERENCE_DOCUMENTS", len(TOPIC_TEXTS))
    clf.predict(TOPIC_TEXTS)
    assert f"/{len(TOPIC_TEXTS)} [" in terminal.getvalue() and "doc" in terminal.getvalue()


def test_auto_progress_is_silent_in_worker_threads_and_with_verbose_0(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fitted = []
    worker = threading.Thread(target=lambda: fitted.append(AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)))
    worker.start()
    worker.join()
    assert len(fitted) == 1 and fitted[0].n_iter_ == TINY["max_epochs"]  # the fit ran, silently
    AttentionClassifier(**TINY, verbose=0).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert terminal.getvalue() == ""


def test_verbose_rejects_other_strings():
    with pytest.raises(ValueError, match="verbose"):
        AttentionClassifier(verbose="loud").fit(TOPIC_TEXTS, TOPIC_LABELS)
