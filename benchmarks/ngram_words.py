"""Which words the n-gram path should count, measured with a linear model alone.

The n-gram path of ``AttentionClassifier`` is a linear model over TF-IDF of
word n-grams; what counts as a word is ``skattn._ngrams.WordNgrams``'s rule.
This script compares the rule's variants the cheap way: TF-IDF of each
variant's n-grams (sublinear tf, ``min_df=2``) + logistic regression
(``C=10``), cross-validated on the training split only (stratified folds,
seeded), so that a variant can be judged in minutes before the full model is
trained with it (``ablations.py``). Each fold's accuracy is paired across
variants; the last column is the mean paired difference from the first
variant and its standard error over folds.

Run from the repository root::

    python benchmarks/ngram_words.py                          # every shared corpus
    python benchmarks/ngram_words.py --datasets zh-reviews tweets --folds 5 --markdown
"""

import argparse
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from skattn._ngrams import WordNgrams, resolve_ngram_range

from _common import DATASETS, format_table, hardware_lines, load_tsv

VARIANTS = {
    "words": dict(marks=False),
    "words and marks": dict(marks=True),
}
LOGISTIC_C = 10.0


def cross_validated(texts, labels, analyzer, folds, seed):
    """Accuracy of TF-IDF of ``analyzer``'s n-grams + logistic regression on each fold."""
    model = make_pipeline(
        TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, min_df=2),
        LogisticRegression(C=LOGISTIC_C, max_iter=1000),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cross_val_score(model, texts, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--data-dir", help="folder holding the datasets (default: shared/data beside the repository)")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    args.threads = None
    for line in hardware_lines(args):
        print(line)
    cells = []
    for dataset in args.datasets:
        texts, labels = load_tsv(dataset, "train", data_dir=args.data_dir)
        ngram_range = resolve_ngram_range("auto", texts)
        first = None
        for name, options in VARIANTS.items():
            scores = cross_validated(texts, labels, WordNgrams(ngram_range, True, **options), args.folds, args.seed)
            if first is None:
                first, difference = scores, "-"
            else:
                paired = scores - first
                difference = f"{paired.mean() * 100:+.2f} ± {paired.std(ddof=1) / np.sqrt(len(paired)) * 100:.2f}"
            cells.append([dataset, name, f"{ngram_range[0]}-{ngram_range[1]}", f"{scores.mean():.2%}", difference])
            print(f"{dataset}: {name}: {scores.mean():.2%}", flush=True)
    print()
    print(format_table(("dataset", "words", "n", "CV accuracy", "paired difference (points)"), cells, args.markdown, text_columns=(0, 1, 2)))


if __name__ == "__main__":
    main()
