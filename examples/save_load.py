"""Save a fitted classifier and load it back: skattn's model file, or joblib.

``clf.save(path)`` writes parameters, tokenizer and weights as data only, and
``skattn.load(path)`` reads them without running code from the file, so it is
safe for files from others. ``joblib.dump`` / ``joblib.load`` (pickle) work as
for any scikit-learn estimator, but load only pickles you trust. Both give
back a classifier that predicts exactly as the original.

    python examples/save_load.py
    python examples/save_load.py --quick    # a few hundred documents, a tiny model (seconds)
"""

import sys
import tempfile
from pathlib import Path

import joblib
import numpy as np

import skattn
from skattn import AttentionClassifier
from skattn.datasets import load_r8

QUICK = "--quick" in sys.argv

X_train, y_train, X_test, y_test = load_r8()
params = dict(random_state=0)
if QUICK:  # a subset and a tiny model, to check that the script runs
    X_train, y_train, X_test, y_test = X_train[:300], y_train[:300], X_test[:200], y_test[:200]
    params.update(d_model=32, n_heads=2, d_ff=64, max_epochs=2, vocab_size=1000)

clf = AttentionClassifier(**params).fit(X_train, y_train)
expected = clf.predict(X_test)

with tempfile.TemporaryDirectory() as folder:  # use your own path to keep the files
    model_file = Path(folder) / "r8.skattn"
    clf.save(model_file)
    from_model_file = skattn.load(model_file)

    pickle_file = Path(folder) / "r8.joblib"
    joblib.dump(clf, pickle_file)
    from_pickle = joblib.load(pickle_file)

    for name, path, loaded in [("skattn.load", model_file, from_model_file), ("joblib.load", pickle_file, from_pickle)]:
        same = np.array_equal(loaded.predict(X_test), expected)
        same &= np.allclose(loaded.predict_proba(X_test), clf.predict_proba(X_test))
        print(f"{name}: identical predictions: {same} ({path.stat().st_size / 2**20:.1f} MiB file)")
