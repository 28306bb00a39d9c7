"""Classify Chinese reviews as positive or negative: text without spaces.

AttentionClassifier needs no word segmentation: its tokenizer splits Chinese
characters, and ``ngram_range="auto"`` gives the linear path character 1- to
3-grams when most words of the training texts are single characters. Trains on
the sample bundled in ``examples/data/zh-reviews`` (or any folder holding a
``train.tsv.gz`` and a ``test.tsv.gz`` of ``label<TAB>text`` lines), prints the
test accuracy and labels three new reviews.

    python examples/chinese.py                              # the bundled sample
    python examples/chinese.py ../shared/data/zh-reviews    # a full corpus
    python examples/chinese.py --quick                      # a tiny model (seconds)
"""

import argparse
import gzip
from pathlib import Path

from sklearn.metrics import accuracy_score

from skattn import AttentionClassifier

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
sample = Path(__file__).parent / "data" / "zh-reviews"  # bundled with the examples
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
print(f"n-gram range chosen by 'auto': {clf.ngram_vectorizer_.analyzer.ngram_range}")
print(f"accuracy: {accuracy_score(y_test, clf.predict(X_test)):.4f}")

new_reviews = [
    "这本书写得非常好，值得一读。",  # "A very well written book, worth reading."
    "房间很脏，服务态度也很差。",  # "The room was dirty and the service was bad."
    "手机用了两天就坏了，太失望了。",  # "The phone broke after two days, so disappointing."
]
for review, label in zip(new_reviews, clf.predict(new_reviews)):
    print(f"{label}\t{review}")
