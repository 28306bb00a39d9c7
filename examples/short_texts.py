"""Short texts: tell who wrote a tweet, Donald Trump or Hillary Clinton (2016).

Tweets are a few dozen tokens each, so training is quick even with the default
model. Trains on the sample bundled in ``examples/data/tweets`` (or any folder
holding a ``train.tsv.gz`` and a ``test.tsv.gz`` of ``label<TAB>text`` lines),
prints test accuracy and macro-F1, and the author probabilities of two new tweets.

    python examples/short_texts.py                          # the bundled sample
    python examples/short_texts.py ../shared/data/tweets    # the full corpus
    python examples/short_texts.py --quick                  # a tiny model (seconds)
"""

import argparse
import gzip
from pathlib import Path

from sklearn.metrics import accuracy_score, f1_score

from skattn import AttentionClassifier

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
sample = Path(__file__).parent / "data" / "tweets"  # bundled with the examples
parser.add_argument("data", nargs="?", type=Path, default=sample, help="folder with train.tsv.gz and test.tsv.gz")
parser.add_argument("--quick", action="store_true", help="a few hundred texts, a tiny model")
args = parser.parse_args()


def read_tsv(path):
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        labels, texts = zip(*(line.rstrip("\n").split("\t", 1) for line in lines))
    return list(texts), list(labels)


X_train, y_train = read_tsv(args.data / "train.tsv.gz")
X_test, y_test = read_tsv(args.data / "test.tsv.gz")
params = dict(random_state=0)
if args.quick:  # a subset and a tiny model, to check that the script runs
    X_train, y_train, X_test, y_test = X_train[:400], y_train[:400], X_test[:200], y_test[:200]
    params.update(d_model=32, n_heads=2, d_ff=64, max_epochs=2, vocab_size=1000)

clf = AttentionClassifier(**params).fit(X_train, y_train)
y_pred = clf.predict(X_test)
print(f"accuracy: {accuracy_score(y_test, y_pred):.4f}")
print(f"macro-F1: {f1_score(y_test, y_pred, average='macro'):.4f}")

new_tweets = [
    "Join me tomorrow in Ohio. We will make America great again!",
    "We need to invest in clean energy and make college debt-free. -H",
]
for tweet, proba in zip(new_tweets, clf.predict_proba(new_tweets)):
    print(", ".join(f"{author} {p:.2f}" for author, p in zip(clf.classes_, proba)), "|", tweet)
