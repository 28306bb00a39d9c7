"""The README's Python examples run as written, so they cannot rot."""

import pathlib
import re

import numpy as np

import skattn.datasets

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_examples_run_and_keep_their_promises(monkeypatch, tmp_path, capsys):
    blocks = _python_blocks()
    assert len(blocks) == 4
    quickstart, with_sklearn, frozen, saving = blocks
    # The quickstart trains on R8 with default parameters; a slice of it keeps
    # this test short while running the very same code.
    X_train, y_train, X_test, y_test = skattn.datasets.load_r8()
    monkeypatch.setattr(skattn.datasets, "load_r8", lambda: (X_train[:300], y_train[:300], X_test[:100], y_test[:100]))
    monkeypatch.chdir(tmp_path)
    namespace = {}

    exec(compile(quickstart, str(README), "exec"), namespace)
    score, predicted = capsys.readouterr().out.splitlines()
    assert float(score) > 0.6  # 8 topics: chance is far below
    assert predicted.strip("[]'") in set(y_train)  # one of the training labels, as given
    clf = namespace["clf"]

    exec(compile(with_sklearn, str(README), "exec"), namespace)
    scores, best_params = capsys.readouterr().out.splitlines()
    assert len(scores.strip("[]").split()) == 3  # one score per fold
    assert set(eval(best_params)) == {"learning_rate", "encoder__n_layers"}

    exec(compile(frozen, str(README), "exec"), namespace)
    best = namespace["search"].best_estimator_
    # Fine-tuned copies of the one pretrained encoder, which stays as it was.
    assert best.tokenizer_.to_str() == namespace["encoder"].tokenizer_.to_str()

    exec(compile(saving, str(README), "exec"), namespace)
    assert (tmp_path / "r8.joblib").exists()
    np.testing.assert_array_equal(namespace["clf"].predict_proba(X_test[:20]), clf.predict_proba(X_test[:20]))
