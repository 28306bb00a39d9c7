"""Reuters R8, shipped with the package as the default example dataset."""

import gzip
from importlib import resources


def _read_tsv(name):
    path = resources.files(__package__).joinpath("data", name)
    labels, texts = [], []
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        for line in lines:
            label, text = line.rstrip("\n").split("\t", 1)
            labels.append(label)
            texts.append(text)
    return texts, labels


def load_r8():
    """Load the Reuters R8 topic classification dataset.

    R8 is the subset of the Reuters-21578 newswire collection (ModApté split)
    restricted to the eight most frequent topics whose documents have exactly
    one topic: acq, crude, earn, grain, interest, money-fx, ship and trade.
    Texts are lowercased, with digits and punctuation removed, as prepared
    by Cardoso-Cachopo (2007), "Improving Methods for Single-label Text
    Categorization", PhD thesis, Instituto Superior Técnico, and distributed
    with the benchmarks of Yao et al. (2019), "Graph Convolutional Networks for
    Text Classification".

    Returns
    -------
    X_train : list of str
        5,485 training documents.
    y_train : list of str
        Their topics.
    X_test : list of str
        2,189 test documents.
    y_test : list of str
        Their topics.

    Examples
    --------
    >>> from skattn.datasets import load_r8
    >>> X_train, y_train, X_test, y_test = load_r8()
    >>> len(X_train), len(X_test)
    (5485, 2189)
    >>> sorted(set(y_train))[:3]
    ['acq', 'crude', 'earn']
    """
    X_train, y_train = _read_tsv("r8_train.tsv.gz")
    X_test, y_test = _read_tsv("r8_test.tsv.gz")
    return X_train, y_train, X_test, y_test
