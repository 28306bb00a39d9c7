"""ONNX export, and the torch-free predictor matching the estimator."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from skattn import AttentionClassifier, AttentionEncoder
from skattn.datasets import load_r8

from .conftest import TINY, TOPIC_LABELS, TOPIC_TEXTS

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import skattn.onnx  # noqa: E402  (after the skips: it needs onnxruntime to load a model)
from skattn._settle import FLOAT32_ROUNDING  # noqa: E402
from skattn._shortcut import encoder_logit_bounds  # noqa: E402

SMALL = dict(vocab_size=2000, d_model=32, n_heads=2, n_layers=1, d_ff=64, max_epochs=2, random_state=0, precision="fp32")


@pytest.fixture(scope="module")
def r8():
    X_train, y_train, X_test, y_test = load_r8()
    return X_train[:800], y_train[:800], X_test[:400]


@pytest.fixture(scope="module")
def r8_model(r8, tmp_path_factory):
    X_train, y_train, _ = r8
    clf = AttentionClassifier(**SMALL).fit(X_train, y_train)
    path = tmp_path_factory.mktemp("onnx") / "r8.onnx"
    assert clf.to_onnx(path) is clf
    return clf, path


def test_predictor_matches_the_classifier_on_r8_test_documents(r8, r8_model):
    _, _, X_test = r8
    clf, path = r8_model
    predictor = skattn.onnx.load(path)
    np.testing.assert_allclose(predictor.predict_proba(X_test), clf.predict_proba(X_test), atol=1e-4, rtol=0)
    np.testing.assert_allclose(predictor.decision_function(X_test), clf.decision_function(X_test), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(predictor.predict(X_test), clf.predict(X_test))
    np.testing.assert_array_equal(predictor.classes_, clf.classes_)
    assert predictor.classes_.dtype == clf.classes_.dtype
    # One document, and one far longer than max_length: the axes are dynamic.
    single = [X_test[0]]
    np.testing.assert_allclose(predictor.predict_proba(single), clf.predict_proba(single), atol=1e-4, rtol=0)
    long_document = [" ".join(X_test[:30])]
    np.testing.assert_allclose(predictor.predict_proba(long_document), clf.predict_proba(long_document), atol=1e-4, rtol=0)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_chunked_documents_and_encoders_export_too(tmp_path, pooling):
    long_texts = [" ".join([text] * 12) for text in TOPIC_TEXTS]  # several windows each at max_length=32
    params = dict(TINY, precision="fp32", long_text="chunk", pooling=pooling)
    clf = AttentionClassifier(**params).fit(long_texts, TOPIC_LABELS)
    clf.to_onnx(tmp_path / "clf.onnx")
    predictor = skattn.onnx.load(tmp_path / "clf.onnx")
    np.testing.assert_allclose(predictor.predict_proba(long_texts), clf.predict_proba(long_texts), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(predictor.predict(long_texts), clf.predict(long_texts))

    encoder = AttentionEncoder(**params).fit(long_texts)
    encoder.to_onnx(tmp_path / "encoder.onnx")
    embedded = skattn.onnx.load(tmp_path / "encoder.onnx").transform(long_texts)
    np.testing.assert_allclose(embedded, encoder.transform(long_texts), atol=1e-4, rtol=0)


def test_punctuation_marks_reach_the_exported_ngram_path(tmp_path):
    # Each class has its own marks; the predictor must split them off as the classifier does.
    texts = [f"{text}{mark}" for text, mark in zip(TOPIC_TEXTS, ["!!", "?", ":)", "...", "$", "%"] * 3)]
    clf = AttentionClassifier(**dict(TINY, precision="fp32")).fit(texts, TOPIC_LABELS)
    clf.to_onnx(tmp_path / "clf.onnx")
    predictor = skattn.onnx.load(tmp_path / "clf.onnx")
    unseen = ["markets !!", "goal ?", "rain :)", "!!", "$ %"]
    np.testing.assert_allclose(predictor.decision_function(texts + unseen), clf.decision_function(texts + unseen), atol=1e-4, rtol=0)

    # The same file as exported before marks were words (format 1, no skattn.ngram_marks):
    # its n-gram path drops them, as it did.
    onnx = pytest.importorskip("onnx")
    model = onnx.load(tmp_path / "clf.onnx")
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert metadata["skattn.format_version"] == str(skattn.onnx.FORMAT_VERSION)
    metadata.pop("skattn.ngram_marks")
    metadata["skattn.format_version"] = "1"
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, tmp_path / "before.onnx")
    before = skattn.onnx.load(tmp_path / "before.onnx")
    assert not np.allclose(before.decision_function(unseen), clf.decision_function(unseen), atol=1e-4, rtol=0)
    np.testing.assert_allclose(before.decision_function(["markets", "goal"]), clf.decision_function(["markets", "goal"]), atol=1e-4, rtol=0)


def test_multilabel_classifier_exports_with_its_threshold(tmp_path):
    y = np.array([[label == 0, label != 2] for label in TOPIC_LABELS], dtype=int)
    clf = AttentionClassifier(**dict(TINY, precision="fp32", max_epochs=6)).fit(TOPIC_TEXTS, y)
    clf.to_onnx(tmp_path / "multilabel.onnx")
    predictor = skattn.onnx.load(tmp_path / "multilabel.onnx")
    np.testing.assert_allclose(predictor.predict_proba(TOPIC_TEXTS), clf.predict_proba(TOPIC_TEXTS), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(predictor.predict(TOPIC_TEXTS), clf.predict(TOPIC_TEXTS))


_WITHOUT_TORCH = textwrap.dedent(
    """
    import json, sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is not installed here")

    sys.meta_path.insert(0, NoTorch())
    import skattn.onnx

    predictor = skattn.onnx.load(sys.argv[1])
    texts = json.loads(sys.stdin.read())
    print(json.dumps({
        "proba": predictor.predict_proba(texts).tolist(),
        "labels": predictor.predict(texts).tolist(),
        "shortcut": predictor._shortcut is not None,
        "loaded": sorted(name for name in sys.modules if name.startswith(("torch", "skattn"))),
    }))
    """
)


def test_predictor_runs_where_torch_cannot_be_imported(r8, r8_model):
    _, _, X_test = r8
    clf, path = r8_model
    texts = list(X_test[:50])
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, str(path)],
        input=json.dumps(texts), capture_output=True, text=True, check=True,
    )
    output = json.loads(result.stdout)
    assert not any(name.startswith("torch") for name in output["loaded"])
    assert not {"skattn._classifier", "skattn._encoder", "skattn._loop", "skattn._model"} & set(output["loaded"])
    np.testing.assert_allclose(output["proba"], clf.predict_proba(texts), atol=1e-4, rtol=0)
    assert output["labels"] == clf.predict(texts).tolist()
    assert output["shortcut"]  # predict settled documents without torch too


def test_a_foreign_onnx_file_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "identity",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "identity.onnx"
    # IR version 10, which every onnxruntime the onnx extra allows reads: the newest onnx
    # writes a newer one by default, which older runtimes refuse before skattn looks.
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10)
    onnx.save(model, path)
    with pytest.raises(ValueError, match="is not an ONNX model exported by skattn"):
        skattn.onnx.load(path)


def test_a_file_that_is_not_onnx_is_refused(fitted_classifier, tmp_path):
    path = tmp_path / "model.skattn"
    fitted_classifier.save(path)
    with pytest.raises(ValueError, match=r"model\.skattn' is not an ONNX model this ONNX Runtime can load \("):
        skattn.onnx.load(path)
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.onnx' is not an ONNX model"):
        skattn.onnx.load(tmp_path / "empty.onnx")
    with pytest.raises(FileNotFoundError):
        skattn.onnx.load(tmp_path / "absent.onnx")
    with pytest.raises(IsADirectoryError):
        skattn.onnx.load(tmp_path)


def test_binary_decision_function_is_the_classifiers(tmp_path):
    labels = [label == 0 for label in TOPIC_LABELS]
    clf = AttentionClassifier(**dict(TINY, precision="fp32")).fit(TOPIC_TEXTS, labels)
    clf.to_onnx(tmp_path / "binary.onnx")
    predictor = skattn.onnx.load(tmp_path / "binary.onnx")
    scores = predictor.decision_function(TOPIC_TEXTS)
    assert scores.shape == (len(TOPIC_TEXTS),)
    np.testing.assert_allclose(scores, clf.decision_function(TOPIC_TEXTS), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(predictor.predict(TOPIC_TEXTS), clf.predict(TOPIC_TEXTS))


def test_the_exported_ngram_path_lowercases_as_it_was_fitted(tmp_path):
    clf = AttentionClassifier(**dict(TINY, precision="fp32")).fit(TOPIC_TEXTS, TOPIC_LABELS)
    shouting = [text.upper() for text in TOPIC_TEXTS]
    # Without a refit the parameter does not change the fitted path, so it must not change the export.
    clf.set_params(lowercase=False).to_onnx(tmp_path / "model.onnx")
    predictor = skattn.onnx.load(tmp_path / "model.onnx")
    np.testing.assert_allclose(predictor.decision_function(shouting), clf.decision_function(shouting), atol=1e-4, rtol=0)


def test_unfitted_estimator_cannot_export(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        AttentionClassifier().to_onnx(tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def _count_graph_documents(predictor):
    """Make ``predictor`` count the documents its graph runs on; returns the running count."""
    counted, run = [0], predictor.session.run

    def counting_run(outputs, feed):
        counted[0] += len(feed["documents"])
        return run(outputs, feed)

    predictor.session = type("CountingSession", (), {"run": staticmethod(counting_run)})()
    return counted


def test_predict_skips_the_graph_where_the_ngram_path_settles(r8, r8_model, tmp_path):
    _, _, X_test = r8
    clf, path = r8_model
    predictor = skattn.onnx.load(path)
    weight, bounds, encoder_scale, allowance = predictor._shortcut
    np.testing.assert_array_equal(weight, clf.model_.wide.bag.weight.detach().numpy())
    for ours, expected in zip(bounds, encoder_logit_bounds(clf.model_)):
        np.testing.assert_allclose(ours, expected, rtol=1e-12)
    assert encoder_scale == pytest.approx(clf.encoder_logit_scale_) and allowance == FLOAT32_ROUNDING
    counted = _count_graph_documents(predictor)
    labels = predictor.predict(X_test)
    assert 0 < counted[0] < len(X_test)  # some settled, some not, on this small model
    counted[0] = 0
    scores = predictor.decision_function(X_test)  # scores always come from the whole graph
    assert counted[0] == len(X_test)
    np.testing.assert_array_equal(labels, predictor.classes_[scores.argmax(axis=1)])
    np.testing.assert_array_equal(labels, clf.predict(X_test))

    # Without the shortcut's metadata (files exported before it), predict runs the graph on all.
    onnx = pytest.importorskip("onnx")
    model = onnx.load(path)
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    del metadata["skattn.shortcut"]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, tmp_path / "before.onnx")
    before = skattn.onnx.load(tmp_path / "before.onnx")
    assert before._shortcut is None
    counted = _count_graph_documents(before)
    np.testing.assert_array_equal(before.predict(X_test), clf.predict(X_test))
    assert counted[0] == len(X_test)


def test_multilabel_predict_settles_labels_as_the_classifier(tmp_path):
    y = np.array([[label == 0, label != 2] for label in TOPIC_LABELS], dtype=int)
    clf = AttentionClassifier(**dict(TINY, precision="fp32", max_epochs=6)).fit(TOPIC_TEXTS, y)
    clf.to_onnx(tmp_path / "multilabel.onnx")
    predictor = skattn.onnx.load(tmp_path / "multilabel.onnx")
    counted = _count_graph_documents(predictor)
    documents = TOPIC_TEXTS + ["markets rates bank", "goal match", "rain sun", "zzz"]
    labels = predictor.predict(documents)
    assert counted[0] < len(documents)
    np.testing.assert_array_equal(labels, clf.predict(documents))
    np.testing.assert_array_equal(labels, (predictor.decision_function(documents) > 0).astype(int))


def test_without_the_onnx_package_predict_runs_the_whole_graph(r8, r8_model, monkeypatch):
    _, _, X_test = r8
    clf, path = r8_model
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx fails
    predictor = skattn.onnx.load(path)
    assert predictor._shortcut is None
    counted = _count_graph_documents(predictor)
    np.testing.assert_array_equal(predictor.predict(X_test[:50]), clf.predict(X_test[:50]))
    assert counted[0] == 50
