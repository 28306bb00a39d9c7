"""Draw the README's pictures: an explanation of an R8 prediction and a learning curve.

Fits AttentionClassifier with its defaults (and early stopping, so that the
curve shows validation scores) on the shipped R8 training split, explains a
short test document, and writes ``docs/images/explanation.png`` and
``docs/images/learning_curve.png``. Run from the repository root (minutes)::

    python docs/make_images.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from skattn import AttentionClassifier  # noqa: E402
from skattn.datasets import load_r8  # noqa: E402
from skattn.plot import plot_explanation, plot_learning_curve  # noqa: E402

IMAGES = Path(__file__).resolve().parent / "images"

X_train, y_train, X_test, y_test = load_r8()
clf = AttentionClassifier(early_stopping=True, random_state=0).fit(X_train, y_train)
print(clf.summary())
# A short test document the model classifies correctly, so the picture stays small.
document = next(x for x, y in sorted(zip(X_test, y_test), key=lambda pair: len(pair[0])) if len(x) > 300 and clf.predict([x])[0] == y)
explanation = clf.explain([document])[0]
print(explanation.target, explanation.top(8))
IMAGES.mkdir(exist_ok=True)
plot_explanation(explanation).figure.savefig(IMAGES / "explanation.png", dpi=110)
plot_learning_curve(clf).figure.savefig(IMAGES / "learning_curve.png", dpi=110)
print("wrote", *sorted(path.name for path in IMAGES.glob("*.png")))
