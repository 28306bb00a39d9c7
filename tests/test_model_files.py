"""Model files written by ``save`` and read by ``skattn.load``: data only, complete or refused."""

import json
import os
import pickle
import stat
import subprocess
import sys
import threading
import warnings
import zipfile

import joblib
import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

import skattn
from skattn import AttentionClassifier, AttentionEncoder, InconsistentVersionWarning, ModelFileError

from .conftest import TINY, TOPIC_LABELS, TOPIC_TEXTS

STRING_LABELS = [["markets", "sport", "weather"][label] for label in TOPIC_LABELS]


def _reload(estimator, tmp_path, name="model.skattn"):
    path = tmp_path / name
    assert estimator.save(path) is estimator
    return skattn.load(path)


def test_classifier_round_trip_gives_identical_probabilities(fitted_classifier, tmp_path):
    restored = _reload(fitted_classifier, tmp_path)
    np.testing.assert_array_equal(restored.predict_proba(TOPIC_TEXTS), fitted_classifier.predict_proba(TOPIC_TEXTS))
    np.testing.assert_array_equal(restored.classes_, fitted_classifier.classes_)
    assert restored.classes_.dtype == fitted_classifier.classes_.dtype
    assert restored.get_params() == fitted_classifier.get_params()
    assert restored.loss_curve_ == fitted_classifier.loss_curve_ and restored.n_iter_ == fitted_classifier.n_iter_


def test_string_labels_class_weight_and_ngram_range_come_back_as_they_were(tmp_path):
    clf = AttentionClassifier(**TINY, class_weight={"sport": 2.0, "markets": 1.0, "weather": 1.0}, ngram_range=(1, 3))
    clf.fit(TOPIC_TEXTS, STRING_LABELS)
    restored = _reload(clf, tmp_path)
    assert restored.class_weight == clf.class_weight and restored.ngram_range == (1, 3)
    assert restored.classes_.tolist() == ["markets", "sport", "weather"] and restored.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(restored.predict(TOPIC_TEXTS), clf.predict(TOPIC_TEXTS))


def test_encoder_and_unfitted_estimators_round_trip(fitted_encoder, tmp_path):
    restored = _reload(fitted_encoder, tmp_path)
    np.testing.assert_array_equal(restored.transform(TOPIC_TEXTS), fitted_encoder.transform(TOPIC_TEXTS))
    unfitted = _reload(AttentionClassifier(ngram_range=None, max_epochs=3), tmp_path, "unfitted.skattn")
    assert unfitted.get_params() == AttentionClassifier(ngram_range=None, max_epochs=3).get_params()
    assert not hasattr(unfitted, "model_")


@pytest.mark.parametrize("frozen", [False, True])
def test_pretrain_then_fine_tune_round_trip_keeps_the_encoder(tmp_path, frozen):
    encoder = AttentionEncoder(**TINY).fit(TOPIC_TEXTS)
    clf = AttentionClassifier(**TINY, encoder=FrozenEstimator(encoder) if frozen else encoder)
    clf.fit(TOPIC_TEXTS, TOPIC_LABELS)
    restored = _reload(clf, tmp_path)
    np.testing.assert_array_equal(restored.predict_proba(TOPIC_TEXTS), clf.predict_proba(TOPIC_TEXTS))
    inner = restored.encoder.estimator if frozen else restored.encoder
    assert isinstance(restored.encoder, FrozenEstimator) == frozen
    np.testing.assert_array_equal(inner.transform(TOPIC_TEXTS), encoder.transform(TOPIC_TEXTS))


def test_run_controls_are_saved_as_their_defaults(tmp_path):
    clf = AttentionClassifier(**TINY, callbacks=[print], checkpoint_dir=str(tmp_path / "ckpt"))
    clf.fit(TOPIC_TEXTS, TOPIC_LABELS)
    restored = _reload(clf, tmp_path)
    assert restored.callbacks is None and restored.checkpoint_dir is None and restored.resume is False


def test_a_parameter_a_file_cannot_hold_is_refused_naming_it(tmp_path):
    clf = AttentionClassifier(**dict(TINY, random_state=np.random.RandomState(0)))
    with pytest.raises(TypeError, match=r"AttentionClassifier.save: the parameter random_state=RandomState"):
        clf.save(tmp_path / "model.skattn")
    assert os.listdir(tmp_path) == []  # no partial or temporary file left


def test_the_file_is_data_only(fitted_classifier, tmp_path):
    path = tmp_path / "model.skattn"
    fitted_classifier.save(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    assert names == {"manifest.json", "tokenizer.json", "weights.safetensors", "ngrams.json", "ngrams.safetensors"}
    assert manifest["format"] == "skattn-model" and manifest["format_version"] == 2
    assert manifest["class"] == "AttentionClassifier"
    assert set(manifest["versions"]) == {"skattn", "torch", "scikit-learn", "tokenizers"}
    assert set(manifest["parts"]) == names - {"manifest.json"}


def _rewrite(path, name, change):
    """Copy the archive at ``path`` with the part ``name`` passed through ``change``."""
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info.filename) for info in archive.infolist()}
    parts[name] = change(parts[name])
    with zipfile.ZipFile(path, "w") as archive:
        for part, data in parts.items():
            archive.writestr(part, data)


def _flip_last_byte(data):
    return data[:-1] + bytes([data[-1] ^ 1])


def _newer_format(data):
    manifest = json.loads(data)
    manifest["format_version"] = 99
    return json.dumps(manifest).encode()


def _unknown_class(data):
    manifest = json.loads(data)
    manifest["class"] = "os.system"
    return json.dumps(manifest).encode()


def _manifest_changed(**changes):
    """A change of manifest.json, which no checksum covers: None removes a key."""

    def change(data):
        manifest = json.loads(data)
        for key, value in changes.items():
            if value is None:
                manifest.pop(key)
            else:
                manifest[key] = value
        return json.dumps(manifest).encode()

    return change


def _tokenizer_facts_a_list(data):
    manifest = json.loads(data)
    manifest["fitted"]["_tokenizer_in_fit"] = []
    return json.dumps(manifest).encode()


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: _rewrite(p, "weights.safetensors", _flip_last_byte), "'weights.safetensors' does not match its checksum"),
        (lambda p: _rewrite(p, "tokenizer.json", lambda d: d.replace(b"[UNK]", b"[XXX]")), "'tokenizer.json' does not match its checksum"),
        (lambda p: _rewrite(p, "manifest.json", _newer_format), "format version 99; this skattn reads versions up to 2"),
        (lambda p: _rewrite(p, "manifest.json", _unknown_class), "unknown estimator class 'os.system'"),
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable skattn model file"),
        (lambda p: p.write_bytes(b""), "not a readable skattn model file"),
        (lambda p: _rewrite(p, "manifest.json", _manifest_changed(versions=None)), "not a valid skattn model file: 'versions'"),
        (lambda p: _rewrite(p, "manifest.json", _manifest_changed(versions=[])), "its versions are a list, not an object"),
        (lambda p: _rewrite(p, "manifest.json", _manifest_changed(params=[])), "not a valid skattn model file"),
        (lambda p: _rewrite(p, "manifest.json", _manifest_changed(fitted="yes")), "not a valid skattn model file"),
        (lambda p: _rewrite(p, "manifest.json", _tokenizer_facts_a_list), "_tokenizer_in_fit is not an object"),
    ],
    ids=["weights", "tokenizer", "newer format", "unknown class", "truncated", "empty", "no versions",
         "versions a list", "params a list", "fitted a string", "tokenizer facts a list"],
)
def test_damaged_or_foreign_files_raise_model_file_error(fitted_classifier, tmp_path, damage, match):
    path = tmp_path / "model.skattn"
    fitted_classifier.save(path)
    damage(path)
    with pytest.raises(ModelFileError, match=match):
        skattn.load(path)


def test_a_stream_keeps_its_weight_scale_through_a_model_file(tmp_path):
    weights = np.full(len(TOPIC_TEXTS), 2.0)
    model = AttentionClassifier(**TINY).partial_fit(TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2], sample_weight=weights)
    model.save(tmp_path / "model.skattn")
    assert skattn.load(tmp_path / "model.skattn")._partial_weight_scale == 2.0


def test_a_stream_keeps_its_class_counts_through_a_model_file(tmp_path):
    # The logit adjustment of a partial_fit call reads the class counts of every call so far.
    first = AttentionClassifier(**TINY).partial_fit(TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2])
    first.save(tmp_path / "model.skattn")
    markets = [text for text, label in zip(TOPIC_TEXTS, TOPIC_LABELS) if label == 0]
    via_file = skattn.load(tmp_path / "model.skattn").partial_fit(markets, [0] * len(markets))
    via_pickle = pickle.loads(pickle.dumps(first)).partial_fit(markets, [0] * len(markets))
    assert via_file._partial_class_counts.tolist() == [12, 6, 6]
    np.testing.assert_array_equal(via_file.predict_proba(TOPIC_TEXTS), via_pickle.predict_proba(TOPIC_TEXTS))


@pytest.mark.parametrize("counts", [[6, 6], [6, -1, 6], [6, 6.5, 6], "666"], ids=["short", "negative", "float", "string"])
def test_damaged_class_counts_are_refused(tmp_path, counts):
    path = tmp_path / "model.skattn"
    AttentionClassifier(**TINY).partial_fit(TOPIC_TEXTS, TOPIC_LABELS, classes=[0, 1, 2]).save(path)

    def change(data):
        manifest = json.loads(data)
        manifest["fitted"]["_partial_class_counts"] = counts
        return json.dumps(manifest).encode()

    _rewrite(path, "manifest.json", change)
    with pytest.raises(ModelFileError, match="_partial_class_counts is not a list of 3 non-negative integers"):
        skattn.load(path)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float_labels_round_trip(tmp_path, dtype):
    labels = np.asarray([0.0, 3.0, 7.0], dtype=dtype)[TOPIC_LABELS]
    clf = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, labels)
    restored = _reload(clf, tmp_path)
    assert restored.classes_.dtype == clf.classes_.dtype and restored.classes_.tolist() == [0.0, 3.0, 7.0]
    np.testing.assert_array_equal(restored.predict(TOPIC_TEXTS), clf.predict(TOPIC_TEXTS))


def test_the_n_gram_path_keeps_its_fitted_lowercase_through_a_model_file(tmp_path):
    # The path lowercases as it was fitted to, whatever the parameter says later without a refit.
    clf = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    shouting = [text.upper() for text in TOPIC_TEXTS]
    scores = clf.decision_function(shouting)
    restored = _reload(clf.set_params(lowercase=False), tmp_path)
    np.testing.assert_array_equal(restored.decision_function(shouting), scores)


def test_loaded_and_unpickled_tokenizers_read_special_tokens_as_text(fitted_classifier, tmp_path):
    path = tmp_path / "model.skattn"
    fitted_classifier.save(path)
    for model in (skattn.load(path), pickle.loads(pickle.dumps(fitted_classifier))):
        assert model.tokenizer_.encode_special_tokens
        assert model.tokenizer_.encode("[PAD]", add_special_tokens=False).tokens != ["[PAD]"]


def test_a_pickle_is_not_a_model_file(fitted_classifier, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(fitted_classifier, path)
    with pytest.raises(ModelFileError, match="not a readable skattn model file"):
        skattn.load(path)
    with pytest.raises(FileNotFoundError):
        skattn.load(tmp_path / "missing.skattn")


def test_save_replaces_a_file_atomically(fitted_classifier, fitted_encoder, tmp_path):
    path = tmp_path / "model.skattn"
    fitted_encoder.save(path)
    fitted_classifier.save(path)
    assert isinstance(skattn.load(path), AttentionClassifier)
    assert os.listdir(tmp_path) == ["model.skattn"]


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX file permissions and umask")
def test_save_gives_the_permissions_open_would_and_keeps_those_of_a_replaced_file(fitted_classifier, tmp_path):
    umask = os.umask(0o027)
    try:
        fitted_classifier.save(tmp_path / "new.skattn")
    finally:
        os.umask(umask)
    assert oct(os.stat(tmp_path / "new.skattn").st_mode & 0o777) == oct(0o640)
    replaced = tmp_path / "replaced.skattn"
    replaced.write_bytes(b"an older file")
    os.chmod(replaced, 0o604)
    fitted_classifier.save(replaced)
    assert oct(os.stat(replaced).st_mode & 0o777) == oct(0o604)


@pytest.mark.skipif(not hasattr(os, "symlink") or os.name != "posix", reason="needs POSIX symbolic links")
def test_save_through_a_symbolic_link_replaces_its_target(fitted_classifier, fitted_encoder, tmp_path):
    target, link = tmp_path / "v1.skattn", tmp_path / "current.skattn"
    fitted_encoder.save(target)
    link.symlink_to(target.name)
    fitted_classifier.save(link)
    assert link.is_symlink() and isinstance(skattn.load(target), AttentionClassifier)
    assert sorted(os.listdir(tmp_path)) == ["current.skattn", "v1.skattn"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (os.mkfifo)")
def test_a_pipe_or_device_is_written_to_not_replaced(tmp_path):
    # What `skattn predict ... -o /dev/stdout` relies on. A named pipe stands in for a device:
    # run as root, a rename onto /dev/null would replace the device with a file.
    from skattn._files import atomic_file

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()), daemon=True)
    reader.start()
    with atomic_file(pipe) as file:
        file.write(b"data")
    reader.join(timeout=30)
    assert received == [b"data"] and stat.S_ISFIFO(os.stat(pipe).st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/stdout"), reason="needs /dev/stdout (POSIX systems)")
def test_dev_stdout_is_written_through_whether_a_pipe_or_a_file(tmp_path):
    code = "from skattn._files import atomic_file\nwith atomic_file('/dev/stdout') as file:\n    file.write(b'data')"
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert (piped.returncode, piped.stdout) == (0, b"data"), piped.stderr
    log = tmp_path / "log.txt"
    log.write_bytes(b"before;")
    with open(log, "ab") as redirected:
        subprocess.run([sys.executable, "-c", code], stdout=redirected, check=True, timeout=120)
    assert log.read_bytes() == b"before;data"  # written into the file, not a new file in its place


def test_a_save_that_cannot_be_made_names_the_path_given(fitted_classifier, tmp_path):
    cases = [
        (tmp_path, IsADirectoryError),
        (tmp_path / "no" / "model.skattn", FileNotFoundError),
        ("", FileNotFoundError),
    ]
    for path, error in cases:
        with pytest.raises(error) as info:
            fitted_classifier.save(path)
        assert info.value.filename == os.fspath(path)
    assert os.listdir(tmp_path) == []


def test_a_failed_save_keeps_the_earlier_file(fitted_classifier, fitted_encoder, tmp_path, monkeypatch):
    path = tmp_path / "model.skattn"
    fitted_encoder.save(path)
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        fitted_classifier.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.skattn"]


def test_a_bytes_path_loads(fitted_classifier, tmp_path):
    path = tmp_path / "model.skattn"
    fitted_classifier.save(os.fsencode(path))
    assert isinstance(skattn.load(os.fsencode(path)), AttentionClassifier)


def test_a_model_saved_on_cuda_loads_without_cuda(tmp_path):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    clf = AttentionClassifier(**TINY, device=device).fit(TOPIC_TEXTS, TOPIC_LABELS)
    path = tmp_path / "model.skattn"
    clf.save(path)
    # Loading in a process that sees no GPU, even where this one does.
    code = (
        "import sys, skattn; clf = skattn.load(sys.argv[1]); "
        "print(next(clf.model_.parameters()).device.type, clf.predict(sys.argv[2:]).tolist())"
    )
    output = subprocess.run(
        [sys.executable, "-c", code, str(path), *TOPIC_TEXTS[:3]],
        capture_output=True, text=True, check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    ).stdout.split(maxsplit=1)
    assert output[0] == "cpu"
    assert output[1].strip() == str(clf.predict(TOPIC_TEXTS[:3]).tolist())


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here: the fallback needs a machine without it")
def test_a_model_whose_device_is_cuda_predicts_on_the_cpu_without_it(fitted_classifier, tmp_path):
    path = tmp_path / "model.skattn"
    expected = fitted_classifier.predict_proba(TOPIC_TEXTS)
    fitted_classifier.set_params(device="cuda").save(path)
    fitted_classifier.set_params(device="auto")
    restored = skattn.load(path)
    assert restored.device == "cuda"
    with pytest.warns(UserWarning, match="Running on the CPU instead"):
        np.testing.assert_array_equal(restored.predict_proba(TOPIC_TEXTS), expected)
    pickled = tmp_path / "model.joblib"
    joblib.dump(restored, pickled)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_array_equal(joblib.load(pickled).predict_proba(TOPIC_TEXTS), expected)


def test_saved_device_parameter_is_kept_for_machines_that_have_it(tmp_path):
    clf = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    path = tmp_path / "model.skattn"
    clf.set_params(device="cuda").save(path)
    restored = skattn.load(path)
    assert restored.device == "cuda"
    # On the GPU where there is one, else on the CPU.
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(restored.model_.parameters()).device.type == expected


# -- versions -----------------------------------------------------------------------------


def _with_versions(path, versions):
    def change(data):
        manifest = json.loads(data)
        manifest["versions"].update(versions)
        return json.dumps(manifest).encode()

    _rewrite(path, "manifest.json", change)


def test_loading_under_other_versions_warns_once_naming_both(fitted_classifier, tmp_path):
    path = tmp_path / "model.skattn"
    fitted_classifier.save(path)
    _with_versions(path, {"torch": "2.4.0", "skattn": "0.0.1"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skattn.load(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, InconsistentVersionWarning)]
    assert len(messages) == 1
    assert f"skattn 0.0.1 (now {skattn.__version__})" in messages[0]
    assert "torch 2.4.0 (now " in messages[0]


@pytest.mark.parametrize("frozen", [False, True])
def test_unpickling_a_classifier_and_its_encoder_warns_once(monkeypatch, frozen):
    encoder = AttentionEncoder(**TINY).fit(TOPIC_TEXTS)
    clf = AttentionClassifier(**TINY, encoder=FrozenEstimator(encoder) if frozen else encoder)
    clf.fit(TOPIC_TEXTS, TOPIC_LABELS)
    current = skattn._base.library_versions()
    monkeypatch.setattr(skattn._base, "library_versions", lambda: dict(current, torch="2.4.0"))
    data = pickle.dumps(clf)
    monkeypatch.undo()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = pickle.loads(data)
    messages = [str(w.message) for w in caught if issubclass(w.category, InconsistentVersionWarning)]
    # The encoder is unpickled first and speaks for both.
    assert len(messages) == 1 and messages[0].startswith("This pickled AttentionEncoder was saved with torch 2.4.0")
    np.testing.assert_array_equal(restored.predict_proba(TOPIC_TEXTS), clf.predict_proba(TOPIC_TEXTS))


def test_a_shared_encoder_stays_shared_through_a_pickle():
    encoder = AttentionEncoder(**TINY).fit(TOPIC_TEXTS)
    frozen = FrozenEstimator(encoder)
    first = AttentionClassifier(**TINY, encoder=frozen).fit(TOPIC_TEXTS, TOPIC_LABELS)
    second = AttentionClassifier(**TINY, encoder=frozen).fit(TOPIC_TEXTS, TOPIC_LABELS)
    first_back, second_back, encoder_back = pickle.loads(pickle.dumps((first, second, encoder)))
    assert first_back.encoder is second_back.encoder and first_back.encoder.estimator is encoder_back


def test_joblib_records_versions_and_warns_when_they_differ(fitted_classifier):
    state = fitted_classifier.__getstate__()
    assert set(state["_saved_with"]) == {"skattn", "torch", "scikit-learn", "tokenizers"}
    state["_saved_with"] = dict(state["_saved_with"], **{"scikit-learn": "0.0.1"})
    restored = AttentionClassifier.__new__(AttentionClassifier)
    with pytest.warns(InconsistentVersionWarning, match=r"scikit-learn 0.0.1 \(now "):
        restored.__setstate__(state)
    assert "_saved_with" not in vars(restored)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        joblib.load(_dumped(fitted_classifier))  # same versions: silent


def _dumped(estimator):
    import io

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    buffer.seek(0)
    return buffer
