"""Model files, pickles and ONNX files written under one environment's libraries, read under another's.

``.ci/run`` runs it between the oldest and the newest environments, both ways::

    python .ci/model_files_across_versions.py write DIR   # in one environment
    python .ci/model_files_across_versions.py read DIR    # in the other

``write`` fits a small classifier on R8 in float32 and saves it three ways (``save``,
joblib, ``to_onnx``) beside its test probabilities and the library versions. ``read``
loads each file and exits non-zero unless it gives the writer's labels and probabilities
within 1e-4, and unless loading the model file and the pickle each warned once that the
versions differ (the two sides must run different torch versions).
"""

import json
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
from sklearn.exceptions import ConvergenceWarning

import skattn
from skattn import AttentionClassifier
from skattn._versions import library_versions
from skattn.datasets import load_r8

N_TEST = 300
TOLERANCE = 1e-4


def write(folder):
    """Fit a small float32 classifier on R8 and save it in ``folder`` three ways.

    Parameters
    ----------
    folder : pathlib.Path
        Receives ``model.skattn``, ``model.joblib``, ``model.onnx``, the test
        probabilities and labels, and the library versions.
    """
    X_train, y_train, X_test, _ = load_r8()
    classifier = AttentionClassifier(
        vocab_size=2000, d_model=32, n_heads=2, n_layers=1, d_ff=64, max_epochs=2, precision="fp32", random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # two epochs on purpose
        classifier.fit(X_train[:800], y_train[:800])
    classifier.save(folder / "model.skattn")
    joblib.dump(classifier, folder / "model.joblib")
    classifier.to_onnx(folder / "model.onnx")
    np.save(folder / "proba.npy", classifier.predict_proba(X_test[:N_TEST]))
    (folder / "labels.json").write_text(json.dumps([str(label) for label in classifier.predict(X_test[:N_TEST])]))
    (folder / "versions.json").write_text(json.dumps(library_versions()))


def _load_counting_version_warnings(load):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator = load()
    return estimator, sum(issubclass(w.category, skattn.InconsistentVersionWarning) for w in caught)


def _label_mismatches_off_ties(labels, expected_labels, expected_proba):
    """How many labels differ where the writer's two most probable classes were not tied."""
    top_two = np.sort(expected_proba, axis=1)[:, -2:]
    tied = top_two[:, 1] - top_two[:, 0] <= TOLERANCE
    return sum(got != want and not tie for got, want, tie in zip(labels, expected_labels, tied))


def read(folder):
    """Load what :func:`write` saved in ``folder`` and compare it with the writer's results.

    Parameters
    ----------
    folder : pathlib.Path

    Returns
    -------
    bool
        Whether every file gave the writer's labels (up to ties) and probabilities
        within ``TOLERANCE``, and the model file and the pickle each warned once about
        the versions; false too when both sides ran the same torch version.
    """
    import skattn.onnx

    _, _, X_test, _ = load_r8()
    X_test = X_test[:N_TEST]
    expected_proba = np.load(folder / "proba.npy")
    expected_labels = json.loads((folder / "labels.json").read_text())
    written_with = json.loads((folder / "versions.json").read_text())
    print(f"  written with {written_with}\n  read with    {library_versions()}")

    failures = []
    if written_with["torch"] == library_versions()["torch"]:
        failures.append(f"both sides run torch {written_with['torch']}: nothing crosses versions")
    loaders = {
        "model file": lambda: skattn.load(folder / "model.skattn"),
        "joblib pickle": lambda: joblib.load(folder / "model.joblib"),
        "ONNX file": lambda: skattn.onnx.load(folder / "model.onnx"),
    }
    for name, load in loaders.items():
        estimator, n_warnings = _load_counting_version_warnings(load)
        proba = estimator.predict_proba(X_test)
        labels = [str(label) for label in estimator.predict(X_test)]
        gap = float(np.abs(proba - expected_proba).max())
        print(f"  {name}: largest probability difference {gap:.1e}, {n_warnings} version warning(s)")
        if _label_mismatches_off_ties(labels, expected_labels, expected_proba):
            failures.append(f"{name}: other labels than the writer's")
        if gap > TOLERANCE:
            failures.append(f"{name}: probabilities differ by {gap:.1e} > {TOLERANCE:.0e}")
        expected_warnings = 0 if name == "ONNX file" else 1
        if n_warnings != expected_warnings:
            failures.append(f"{name}: {n_warnings} InconsistentVersionWarning(s), expected {expected_warnings}")
    for failure in failures:
        print(f"  FAILED {failure}")
    return not failures


def main(argv):
    if len(argv) != 3 or argv[1] not in ("write", "read"):
        sys.exit(f"usage: {argv[0]} write|read DIR")
    folder = Path(argv[2])
    if argv[1] == "write":
        folder.mkdir(parents=True, exist_ok=True)
        write(folder)
        return 0
    return 0 if read(folder) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
