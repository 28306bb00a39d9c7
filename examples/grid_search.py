"""Tune AttentionClassifier inside a scikit-learn Pipeline with GridSearchCV.

Searches the learning rate and whether to keep the word n-gram path beside the
encoder (``ngram_range``) by 3-fold cross-validation on 2,000 R8 training
documents, then scores the best pipeline, refitted on them, on the test split.
The full run fits 13 models: expect tens of minutes on a CPU.

    python examples/grid_search.py
    python examples/grid_search.py --quick    # 300 documents, 2 folds, a tiny model (seconds)
"""

import sys

from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skattn import AttentionClassifier
from skattn.datasets import load_r8

QUICK = "--quick" in sys.argv

X_train, y_train, X_test, y_test = load_r8()
X_train, y_train = X_train[:2000], y_train[:2000]
params = dict(random_state=0)
if QUICK:  # a subset and a tiny model, to check that the script runs
    X_train, y_train, X_test, y_test = X_train[:300], y_train[:300], X_test[:200], y_test[:200]
    params.update(d_model=32, n_heads=2, d_ff=64, max_epochs=2, vocab_size=1000)

# Any text preprocessing steps would go before "clf"; parameters of a step are
# addressed as "<step>__<parameter>".
pipe = Pipeline([("clf", AttentionClassifier(**params))])
grid = {
    "clf__learning_rate": [1e-3, 3e-3],
    "clf__ngram_range": ["auto", None],  # None: the encoder alone
}
search = GridSearchCV(pipe, grid, cv=2 if QUICK else 3, scoring="accuracy")
search.fit(X_train, y_train)

print(f"best params: {search.best_params_}")
print(f"best cross-validation accuracy: {search.best_score_:.4f}")
print(f"test accuracy: {search.score(X_test, y_test):.4f}")
