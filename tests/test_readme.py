"""The README's Python examples run as written, so they cannot rot."""

import pathlib
import re

import skattn.datasets

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_examples_run(monkeypatch, tmp_path, capsys):
    blocks = _python_blocks()
    assert len(blocks) >= 3
    # The quickstart trains on R8 with default parameters; a slice of it keeps
    # this test short while running the very same code.
    X_train, y_train, X_test, y_test = skattn.datasets.load_r8()
    monkeypatch.setattr(skattn.datasets, "load_r8", lambda: (X_train[:300], y_train[:300], X_test[:100], y_test[:100]))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "best" not in printed or printed  # something was printed by each example
    assert (tmp_path / "r8.joblib").exists()
    assert 0.0 <= namespace["clf"].score(X_test[:100], y_test[:100]) <= 1.0
