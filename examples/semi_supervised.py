"""Semi-supervised text classification: integer labels with -1 for unlabeled texts.

Encodes the R8 topics as integers with LabelEncoder, then hides 90% of the
training labels as -1 (scikit-learn's semi-supervised convention). Given an
unfitted ``encoder``, one ``fit`` call pretrains it on every text, labelled or
not, then fine-tunes it on the labelled ones. Compared with a classifier
trained on the labelled texts alone.

    python examples/semi_supervised.py
    python examples/semi_supervised.py --quick    # a few hundred texts, a tiny model (seconds)
"""

import sys

import numpy as np
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelEncoder

from skattn import AttentionClassifier, AttentionEncoder
from skattn.datasets import load_r8

QUICK = "--quick" in sys.argv

X_train, y_train, X_test, y_test = load_r8()
params = dict(random_state=0)
if QUICK:  # a subset and a tiny model, to check that the script runs
    X_train, y_train, X_test, y_test = X_train[:400], y_train[:400], X_test[:200], y_test[:200]
    params.update(d_model=32, n_heads=2, d_ff=64, max_epochs=2, vocab_size=1000)

labels = LabelEncoder().fit(y_train)
y = labels.transform(y_train)  # topics as integers 0..7
hidden = np.random.default_rng(0).random(len(y)) < 0.9
y[hidden] = -1  # -1: unlabeled
X_train = np.asarray(X_train, dtype=object)

semi = AttentionClassifier(encoder=AttentionEncoder(**params), **params).fit(X_train, y)
supervised = AttentionClassifier(**params).fit(X_train[~hidden], y[~hidden])

print(f"labelled: {np.sum(~hidden)} of {len(y)} training texts")
for name, clf in [("labelled texts only", supervised), ("with unlabeled texts", semi)]:
    y_pred = labels.inverse_transform(clf.predict(X_test))  # back to topic names
    print(f"accuracy {name}: {accuracy_score(y_test, y_pred):.4f}")
