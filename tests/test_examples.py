"""The scripts in examples/ run as written, in their --quick mode, and print what they promise.

Every ``examples/*.py`` is picked up, so a new example is tested as soon as it is
added; it must stay under 60 lines, open with a docstring and accept ``--quick``.
"""

import ast
import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOT_HERE = {
    "distributed_fit.py",  # needs torchrun: tests/test_scale.py runs it
    "train_r8.py",  # the full-size ``skattn demo``: tests/test_cli.py covers the command
}
SCRIPTS = sorted(path for path in EXAMPLES.glob("*.py") if path.name not in NOT_HERE)
SAMPLES = sorted(path for path in (EXAMPLES / "data").iterdir() if path.is_dir())

SCORE = r"(-?\d+\.\d+)"  # one formatted number, captured
# Lines each script must print, as patterns whose only group, if any, is SCORE; the
# score of a quick run means little, so only its range is checked (the adjusted
# Rand index lies in [-1, 1], every other score in [0, 1]).
PRINTS = {
    "quickstart.py": [rf"^accuracy: {SCORE}$", rf"^macro-F1: {SCORE}$", r"^\s+macro avg(?: +\d\.\d\d){3} +200$"],
    "grid_search.py": [
        r"^best params: \{'clf__learning_rate': [\d.e-]+, 'clf__ngram_range': (?:'auto'|None)\}$",
        rf"^best cross-validation accuracy: {SCORE}$",
        rf"^test accuracy: {SCORE}$",
    ],
    "pretrain_finetune.py": [rf"^accuracy without pretraining: {SCORE}$", rf"^accuracy with pretraining: {SCORE}$"],
    "semi_supervised.py": [
        r"^labelled: \d+ of 400 training texts$",
        rf"^accuracy labelled texts only: {SCORE}$",
        rf"^accuracy with unlabeled texts: {SCORE}$",
    ],
    "chinese.py": [
        r"^n-gram range chosen by 'auto': \(1, 3\)$",  # characters, not words
        rf"^accuracy: {SCORE}$",
        *[rf"^(?:pos|neg)\t{review}" for review in ("这本书", "房间很脏", "手机用了")],
    ],
    "short_texts.py": [
        rf"^accuracy: {SCORE}$",
        rf"^macro-F1: {SCORE}$",
        *[rf"^HillaryClinton {SCORE}, realDonaldTrump \d\.\d\d \| {tweet}" for tweet in ("Join me", "We need")],
    ],
    "embeddings.py": [
        r"^embeddings: 32 dimensions$",
        rf"^linear probe accuracy: {SCORE}$",
        rf"^KMeans adjusted Rand index against topics: {SCORE}$",
    ],
    "explain.py": [
        r"^AttentionClassifier$",
        r"^  parameters +[\d,]+$",
        r"^predicted '\w+' \(true '\w+'\); the encoder carried \d+% of the decision, the n-grams \d+%$",
        r"^  [+-]\d\.\d{3}  (?:encoder|ngram) +\S",
    ],
    "save_load.py": [
        r"^skattn\.load: identical predictions: True \(\d+\.\d MiB file\)$",
        r"^joblib\.load: identical predictions: True \(\d+\.\d MiB file\)$",
    ],
}

PICTURES = {"explain.py": ["explanation.png", "learning_curve.png", "attention.png", "confusion_matrix.png"]}


def test_every_example_is_found():
    assert {path.name for path in SCRIPTS} >= set(PRINTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_example_is_short_and_documented(script):
    source = script.read_text(encoding="utf-8")
    assert len(source.splitlines()) < 60
    docstring = ast.get_docstring(ast.parse(source))
    assert docstring and f"examples/{script.name}" in docstring  # says how to run it


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_example_runs_quickly(script, tmp_path):
    # One thread: these tiny models gain nothing from more, and on a busy machine
    # a second thread that waits for a core slowed them down tenfold.
    # UTF-8 output whatever the shell's encoding: chinese.py prints Chinese reviews.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run(
        [sys.executable, str(script), "--quick"],
        cwd=tmp_path, env=env, capture_output=True, encoding="utf-8", timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for pattern in PRINTS.get(script.name, []):
        found = re.search(pattern, result.stdout, flags=re.M)
        assert found, f"{script.name} printed no line matching {pattern!r}:\n{result.stdout}"
        if found.re.groups:
            low = -1.0 if "Rand" in pattern else 0.0
            assert low <= float(found.group(1)) <= 1.0, found.group(0)
    # Nothing left behind but the pictures a script says it saves.
    pictures = {path.name: path.stat().st_size for path in tmp_path.iterdir()}
    assert set(pictures) == set(PICTURES.get(script.name, ()))
    assert all(size > 10_000 for size in pictures.values()), pictures


@pytest.mark.parametrize("folder", SAMPLES, ids=lambda path: path.name)
def test_sample_data_has_both_splits_and_several_classes(folder):
    for split, size in [("train", 1500), ("test", 500)]:
        path = folder / f"{split}.tsv.gz"
        assert path.stat().st_size < 150_000
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            rows = [line.rstrip("\n").split("\t", 1) for line in lines]
        assert len(rows) == size
        assert all(len(row) == 2 and row[1].strip() for row in rows)  # label<TAB>text
        assert len({label for label, _ in rows}) > 1
