"""Explain predictions: which words decided, how training went, what the model holds.

Fits an AttentionClassifier on Reuters R8, prints its model card and, for one
test document, the tokens and n-grams that pushed hardest towards the
predicted topic. Saves four pictures in the current folder: the document
shaded by importance, the learning curve, an attention heatmap and the
confusion matrix. Needs matplotlib (``pip install 'skattn[plot]'``).

    python examples/explain.py            # full data, default model (minutes on a laptop CPU)
    python examples/explain.py --quick    # a few hundred documents, a tiny model (seconds)
"""

import sys

import matplotlib

matplotlib.use("Agg")  # files only, no window

from skattn import AttentionClassifier
from skattn.datasets import load_r8
from skattn.plot import plot_attention, plot_confusion_matrix, plot_explanation, plot_learning_curve

QUICK = "--quick" in sys.argv

X_train, y_train, X_test, y_test = load_r8()
params = dict(random_state=0, early_stopping=True)  # early stopping records validation scores
if QUICK:  # a subset and a tiny model, to check that the script runs
    X_train, y_train, X_test, y_test = X_train[:400], y_train[:400], X_test[:200], y_test[:200]
    params.update(d_model=32, n_heads=2, d_ff=64, max_epochs=2, vocab_size=1000)

clf = AttentionClassifier(**params).fit(X_train, y_train)
print(clf.summary())

document = X_test[0]
explanation = clf.explain([document])[0]
print(f"\npredicted {explanation.target!r} (true {y_test[0]!r}); the encoder carried "
      f"{explanation.encoder_share:.0%} of the decision, the n-grams {explanation.ngram_share:.0%}")
for feature, importance, path in explanation.top(8):
    print(f"  {importance:+.3f}  {path:<7}  {feature}")

plot_explanation(explanation).figure.savefig("explanation.png", dpi=120)
plot_learning_curve(clf).figure.savefig("learning_curve.png", dpi=120)
plot_attention(clf, document[:300]).figure.savefig("attention.png", dpi=120)
plot_confusion_matrix(clf, X_test, y_test, normalize="true").figure_.savefig("confusion_matrix.png", dpi=120)
print("\nsaved explanation.png, learning_curve.png, attention.png and confusion_matrix.png")
