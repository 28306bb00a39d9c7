"""Quickstart: train an AttentionClassifier on Reuters R8 and evaluate it.

Fits the classifier with its default parameters on the R8 topic dataset that
ships with skattn (8 topics, 5,485 training documents), then prints the test
accuracy, the macro-averaged F1 and a per-topic classification report.

    python examples/quickstart.py            # full data, default model (minutes on a laptop CPU)
    python examples/quickstart.py --quick    # a few hundred documents, a tiny model (seconds)
"""

import sys

from sklearn.metrics import accuracy_score, classification_report, f1_score

from skattn import AttentionClassifier
from skattn.datasets import load_r8

QUICK = "--quick" in sys.argv

X_train, y_train, X_test, y_test = load_r8()
params = dict(random_state=0)
if QUICK:  # a subset and a tiny model, to check that the script runs
    X_train, y_train, X_test, y_test = X_train[:400], y_train[:400], X_test[:200], y_test[:200]
    params.update(d_model=32, n_heads=2, d_ff=64, max_epochs=2, vocab_size=1000)

clf = AttentionClassifier(**params)
clf.fit(X_train, y_train)
y_pred = clf.predict(X_test)

print(f"accuracy: {accuracy_score(y_test, y_pred):.4f}")
print(f"macro-F1: {f1_score(y_test, y_pred, average='macro'):.4f}")
print(classification_report(y_test, y_pred, zero_division=0))
