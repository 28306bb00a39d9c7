"""Pretrain an AttentionEncoder on unlabeled text, then fine-tune it on few labels.

Masked language modelling on all 5,485 R8 training texts (their labels unused)
gives an encoder; an AttentionClassifier then fine-tunes a copy of it on only
200 labelled documents. The same classifier trained on the 200 documents from
scratch shows what the pretraining adds.

    python examples/pretrain_finetune.py
    python examples/pretrain_finetune.py --quick    # a few hundred texts, a tiny model (seconds)
"""

import sys

from sklearn.metrics import accuracy_score

from skattn import AttentionClassifier, AttentionEncoder
from skattn.datasets import load_r8

QUICK = "--quick" in sys.argv

X_train, y_train, X_test, y_test = load_r8()
n_labelled = 200
params = dict(random_state=0)
if QUICK:  # a subset and a tiny model, to check that the script runs
    X_train, X_test, y_test, n_labelled = X_train[:400], X_test[:200], y_test[:200], 100
    params.update(d_model=32, n_heads=2, d_ff=64, max_epochs=2, vocab_size=1000)

# 1. Pretrain on texts alone. The encoder's parameters decide the tokenizer and
#    the architecture of every classifier that fine-tunes it.
encoder = AttentionEncoder(**params).fit(X_train)

# 2. Fine-tune on the few labelled documents. A fitted encoder is copied, so
#    `encoder` itself stays as it is and can serve several classifiers; wrap it
#    in sklearn.frozen.FrozenEstimator to keep its pretraining through clone()
#    (GridSearchCV, cross_val_score).
X_few, y_few = X_train[:n_labelled], y_train[:n_labelled]
finetuned = AttentionClassifier(encoder=encoder, **params).fit(X_few, y_few)
scratch = AttentionClassifier(**params).fit(X_few, y_few)

print(f"labelled training documents: {n_labelled} (pretrained on {len(X_train)} texts)")
for name, clf in [("without pretraining", scratch), ("with pretraining", finetuned)]:
    print(f"accuracy {name}: {accuracy_score(y_test, clf.predict(X_test)):.4f}")
