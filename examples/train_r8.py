"""Train an AttentionClassifier on the shipped Reuters R8 dataset and evaluate it.

Run with ``python examples/train_r8.py``. Prints training progress, then test
accuracy, macro-F1 and timings.
"""

import argparse
import time

from sklearn.metrics import accuracy_score, f1_score

from skattn import AttentionClassifier
from skattn.datasets import load_r8


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=None, help="default: the estimator's")
    args = parser.parse_args()

    X_train, y_train, X_test, y_test = load_r8()
    print(f"R8: {len(X_train)} training and {len(X_test)} test documents, {len(set(y_train))} topics")

    params = {"random_state": args.random_state, "verbose": 1}
    if args.max_epochs is not None:
        params["max_epochs"] = args.max_epochs
    clf = AttentionClassifier(**params)

    started = time.perf_counter()
    clf.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - started

    started = time.perf_counter()
    y_pred = clf.predict(X_test)
    predict_seconds = time.perf_counter() - started

    print(f"test accuracy  {accuracy_score(y_test, y_pred):.4f}")
    print(f"test macro-F1  {f1_score(y_test, y_pred, average='macro'):.4f}")
    print(f"fit            {fit_seconds:.1f} s")
    print(f"predict        {predict_seconds:.1f} s ({len(X_test) / predict_seconds:,.0f} docs/s)")


if __name__ == "__main__":
    main()
