"""Text embeddings from a pretrained AttentionEncoder: a linear probe and clustering.

``AttentionEncoder.fit(texts)`` pretrains an encoder by masked language
modelling, without labels; ``transform`` turns each text into one vector. The
vectors then feed any scikit-learn estimator: here a LogisticRegression in a
Pipeline (a "linear probe" of what the encoder learned), and KMeans, whose
clusters are compared with the R8 topics by the adjusted Rand index.

    python examples/embeddings.py
    python examples/embeddings.py --quick    # a few hundred texts, a tiny model (seconds)
"""

import sys

from sklearn.cluster import KMeans
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skattn import AttentionEncoder
from skattn.datasets import load_r8

QUICK = "--quick" in sys.argv

X_train, y_train, X_test, y_test = load_r8()
params = dict(random_state=0)
if QUICK:  # a subset and a tiny model, to check that the script runs
    X_train, y_train, X_test, y_test = X_train[:400], y_train[:400], X_test[:200], y_test[:200]
    params.update(d_model=32, n_heads=2, d_ff=64, max_epochs=2, vocab_size=1000)

encoder = AttentionEncoder(**params).fit(X_train)  # labels unused
print(f"embeddings: {encoder.transform(X_test[:2]).shape[1]} dimensions")

# FrozenEstimator keeps the pretrained encoder as it is when the pipeline is
# fitted. (An unfrozen AttentionEncoder in a pipeline would be fitted with the
# labels, fit(X, y), and so trained on them instead of pretrained.)
probe = make_pipeline(FrozenEstimator(encoder), StandardScaler(), LogisticRegression(max_iter=1000))
probe.fit(X_train, y_train)
print(f"linear probe accuracy: {probe.score(X_test, y_test):.4f}")

clusters = KMeans(n_clusters=len(set(y_test)), n_init=10, random_state=0).fit_predict(encoder.transform(X_test))
print(f"KMeans adjusted Rand index against topics: {adjusted_rand_score(y_test, clusters):.4f}")
