"""The HTTP server: real requests to ``skattn.serve.run`` in a subprocess, and to ``create_app`` in a thread."""

import contextlib
import http.client
import json
import pickle
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from sklearn.exceptions import NotFittedError  # noqa: E402

from skattn import AttentionClassifier, ModelFileError  # noqa: E402
from skattn._versions import library_versions  # noqa: E402
from skattn.serve import MAX_BODY_BYTES, create_app, run  # noqa: E402

from .conftest import LABELS, TEXTS, TINY, TOPIC_LABELS, TOPIC_TEXTS  # noqa: E402

MAX_TEXTS = 20
MAX_TEXT_CHARS = 200
# Seen and unseen texts, an empty one, and scripts other than Latin.
QUERIES = TOPIC_TEXTS[:6] + ["markets and goals in the rain", "", "天气 sunny ☀️ آب و هوا"]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def _request(url, path, body=None, *, data=None, timeout=60):
    """``(status, JSON)`` of a GET, or of a POST of ``body`` as JSON (or of the bytes ``data``)."""
    if body is not None:
        data = json.dumps(body).encode()
    headers = {} if data is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(url + path, data=data, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _serving(estimator, directory):
    """Save ``estimator`` and serve the file with ``run`` in a subprocess; yield its URL."""
    path = directory / "model.skattn"
    estimator.save(path)
    port = _free_port()
    code = (
        f"from skattn.serve import run; run({str(path)!r}, host='127.0.0.1', port={port}, "
        f"max_texts={MAX_TEXTS}, max_text_chars={MAX_TEXT_CHARS})"
    )
    log = directory / "server.log"
    with open(log, "wb") as output:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen([sys.executable, "-c", code], stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with status {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError):
                if _request(url, "/health", timeout=5) == (200, {"status": "ok"}):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer /health within 60 s:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _serving_in_thread(app):
    """Serve ``app`` with uvicorn in a thread of this process; yield its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(scope="module")
def classifier_url(fitted_classifier, tmp_path_factory):
    with _serving(fitted_classifier, tmp_path_factory.mktemp("classifier")) as url:
        yield url


@pytest.fixture(scope="module")
def encoder_url(fitted_encoder, tmp_path_factory):
    with _serving(fitted_encoder, tmp_path_factory.mktemp("encoder")) as url:
        yield url


# -- a classifier served by run() -----------------------------------------------------------


def test_predict_matches_the_estimator(classifier_url, fitted_classifier):
    status, answer = _request(classifier_url, "/predict", {"texts": QUERIES})
    assert status == 200
    assert answer == {"predictions": fitted_classifier.predict(QUERIES).tolist()}
    assert all(type(label) is int for label in answer["predictions"])


def test_predict_proba_matches_the_estimator(classifier_url, fitted_classifier):
    status, answer = _request(classifier_url, "/predict_proba", {"texts": QUERIES})
    assert status == 200
    assert answer["classes"] == [0, 1, 2]
    np.testing.assert_allclose(answer["probabilities"], fitted_classifier.predict_proba(QUERIES), rtol=0, atol=1e-6)


def test_concurrent_requests_get_the_serial_answers(classifier_url, fitted_classifier):
    expected = fitted_classifier.predict(QUERIES).tolist()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _request(classifier_url, "/predict", {"texts": QUERIES}), range(16)))
    assert answers == [(200, {"predictions": expected})] * 16


def test_health_and_info(classifier_url):
    assert _request(classifier_url, "/health") == (200, {"status": "ok"})
    status, info = _request(classifier_url, "/info")
    assert status == 200
    assert info["estimator"] == "AttentionClassifier"
    assert info["classes"] == [0, 1, 2]
    assert info["multilabel"] is False
    assert info["parameters"]["d_model"] == TINY["d_model"]
    assert info["parameters"]["ngram_range"] == "auto"
    assert info["versions"] == library_versions()
    limits = {"max_texts": MAX_TEXTS, "max_text_chars": MAX_TEXT_CHARS, "max_body_bytes": MAX_BODY_BYTES}
    assert info["limits"] == limits


def test_a_classifier_does_not_embed(classifier_url):
    status, answer = _request(classifier_url, "/embed", {"texts": ["a"]})
    assert status == 404
    assert "AttentionClassifier" in answer["detail"] and "/predict" in answer["detail"]


@pytest.mark.parametrize(
    "body, status, named",
    [
        ({"texts": []}, 422, ["texts is empty"]),
        ({"texts": ["a"] * (MAX_TEXTS + 1)}, 413, [f"{MAX_TEXTS + 1} texts", f"at most {MAX_TEXTS}"]),
        ({"texts": ["a", "b", "x" * (MAX_TEXT_CHARS + 1)]}, 413, ["texts[2]", f"at most {MAX_TEXT_CHARS}"]),
        (b'{"texts": ["a"', 422, ["JSON decode error"]),
        ({"text": ["a"]}, 422, ['["body", "texts"]', "missing"]),
        ({"texts": "a"}, 422, ['["body", "texts"]', "list"]),
        ({"texts": ["a", None]}, 422, ['["body", "texts", 1]', "string"]),
        ({"texts": ["a", 3]}, 422, ['["body", "texts", 1]', "string"]),
        (b'{"texts": ["ok", "\\ud800"]}', 422, ["texts element 1", "lone surrogate"]),
    ],
    ids=["empty", "too-many", "too-long", "not-json", "no-texts", "not-a-list", "null", "number", "surrogate"],
)
def test_bad_requests_get_a_4xx_naming_the_problem(classifier_url, body, status, named):
    if isinstance(body, bytes):
        answer = _request(classifier_url, "/predict", data=body)
    else:
        answer = _request(classifier_url, "/predict", body)
    assert answer[0] == status
    detail = json.dumps(answer[1]["detail"])
    for words in named:
        assert words in detail


def test_a_declared_body_over_the_limit_is_refused_unread(classifier_url):
    connection = http.client.HTTPConnection(classifier_url.removeprefix("http://"), timeout=30)
    try:
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()  # and no body: the server answers without waiting for it
        response = connection.getresponse()
        assert response.status == 413
        assert f"limit of {MAX_BODY_BYTES} bytes" in json.loads(response.read())["detail"]
    finally:
        connection.close()


# -- an encoder served by run() -------------------------------------------------------------


def test_embed_matches_transform(encoder_url, fitted_encoder):
    status, answer = _request(encoder_url, "/embed", {"texts": QUERIES})
    assert status == 200
    np.testing.assert_allclose(answer["embeddings"], fitted_encoder.transform(QUERIES), rtol=0, atol=1e-6)


def test_an_encoder_does_not_classify(encoder_url):
    for path in ("/predict", "/predict_proba"):
        status, answer = _request(encoder_url, path, {"texts": ["a"]})
        assert status == 404
        assert "AttentionEncoder" in answer["detail"] and "/embed" in answer["detail"]
    status, info = _request(encoder_url, "/info")
    assert info["estimator"] == "AttentionEncoder" and "classes" not in info


def test_embed_has_the_limits(encoder_url):
    status, answer = _request(encoder_url, "/embed", {"texts": ["a"] * (MAX_TEXTS + 1)})
    assert status == 413 and f"at most {MAX_TEXTS}" in answer["detail"]


# -- create_app served in a thread ----------------------------------------------------------


def test_labels_come_back_as_json_values():
    labels = AttentionClassifier(**TINY).fit(TEXTS, LABELS)
    indicators = np.column_stack([np.equal(TOPIC_LABELS, 0), np.greater(TOPIC_LABELS, 0), np.equal(TOPIC_LABELS, 2)])
    multilabel = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, indicators.astype(int))
    for estimator in (labels, multilabel):
        with _serving_in_thread(create_app(estimator)) as url:
            expected = {"predictions": estimator.predict(QUERIES).tolist()}
            assert _request(url, "/predict", {"texts": QUERIES}) == (200, expected)
            assert _request(url, "/predict_proba", {"texts": QUERIES})[1]["classes"] == estimator.classes_.tolist()
    assert {type(label) for label in labels.predict(QUERIES).tolist()} == {str}
    assert multilabel.predict(QUERIES).shape == (len(QUERIES), 3)


def test_an_unexpected_error_is_500_without_details(fitted_classifier, monkeypatch):
    def fail(X):
        raise RuntimeError("a secret detail")

    monkeypatch.setattr(fitted_classifier, "predict", fail)
    with _serving_in_thread(create_app(fitted_classifier)) as url:
        status, answer = _request(url, "/predict", {"texts": ["a"]})
    assert status == 500
    assert "secret" not in json.dumps(answer) and "Traceback" not in json.dumps(answer)


def test_a_streamed_body_over_the_limit_is_413(fitted_classifier):
    with _serving_in_thread(create_app(fitted_classifier, max_body_bytes=1000)) as url:
        assert _request(url, "/predict", {"texts": ["a" * 900]})[0] == 200
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        try:
            # An iterable body is sent chunked, with no Content-Length.
            body = iter([b'{"texts": ["', b"a" * 2000, b'"]}'])
            connection.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 413
            assert "limit of 1000 bytes" in json.loads(response.read())["detail"]
        finally:
            connection.close()


def test_create_app_refuses_what_it_cannot_serve(fitted_classifier):
    with pytest.raises(NotFittedError):
        create_app(AttentionClassifier())
    with pytest.raises(TypeError, match="AttentionClassifier or an AttentionEncoder"):
        create_app(object())
    with pytest.raises(ValueError, match="max_texts must be a positive integer, got 0"):
        create_app(fitted_classifier, max_texts=0)


class _Trap:
    """Unpickling it creates the file ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_run_never_unpickles(tmp_path):
    path = tmp_path / "model.joblib"
    path.write_bytes(pickle.dumps(_Trap(tmp_path / "unpickled")))
    with pytest.raises(ModelFileError):
        run(path, port=_free_port())
    assert not (tmp_path / "unpickled").exists()
