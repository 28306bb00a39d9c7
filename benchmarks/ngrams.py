"""The n-gram path's TF-IDF features: skattn's counting against scikit-learn's TfidfVectorizer.

For each dataset, the same analyzer (skattn's word splitting, ``ngram_range="auto"``)
and the same settings (sublinear tf, the 2^18 most frequent n-grams, float32) go
through scikit-learn's ``TfidfVectorizer`` and through skattn's
``fit_ngram_vectorizer`` / ``transform_ngrams``, which count with integer arrays.
Fit is timed on the training split, transform on the evaluation split, each the
best of ``--repeats`` calls taken in alternating turns. The table also says how
many n-grams the two keep differently (only ties at the cut may differ) and the
largest difference between their rows of the evaluation split (where the
vocabularies differ, against scikit-learn's rows for skattn's vocabulary).
"first call after unpickling" is skattn's transform of one evaluation document
by a vectorizer just read back with pickle, which builds its lookup tables
then: what a cold ``predict`` of a loaded model pays once.

Run from the repository root::

    python benchmarks/ngrams.py --datasets all --markdown
    python benchmarks/ngrams.py --quick                  # smoke test
"""

import argparse
import pickle
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from _common import add_per_dataset_arguments, best_seconds, format_table, run_per_dataset, split_of


def measure(args, dataset):
    """One dataset's row: fit and transform times of both, and how far their results differ."""
    from skattn._ngrams import MAX_NGRAM_FEATURES, WordNgrams, fit_ngram_vectorizer, resolve_ngram_range, transform_ngrams

    split = split_of(args, dataset)
    analyzer = WordNgrams(resolve_ngram_range("auto", split.train_texts), lowercase=True)
    fitted = {}

    def sklearn_fit(documents):
        fitted["sklearn"] = TfidfVectorizer(
            analyzer=analyzer, sublinear_tf=True, max_features=MAX_NGRAM_FEATURES, dtype=np.float32
        )
        fitted["sklearn"].fit_transform(documents)  # what a fit needs: the vectorizer and the training rows

    def skattn_fit(documents):
        fitted["skattn"], _ = fit_ngram_vectorizer(documents, ngram_range="auto", lowercase=True)

    sklearn_fit_s, skattn_fit_s = best_seconds((sklearn_fit, skattn_fit), split.train_texts, args.repeats)
    sklearn, skattn = fitted["sklearn"], fitted["skattn"]
    sklearn_transform_s, skattn_transform_s = best_seconds(
        (sklearn.transform, lambda documents: transform_ngrams(skattn, documents)), split.eval_texts, args.repeats
    )
    unpickled = pickle.loads(pickle.dumps(skattn))
    started = time.perf_counter()
    transform_ngrams(unpickled, split.eval_texts[:1])
    first_s = time.perf_counter() - started

    same_vocabulary = sklearn.vocabulary_ == skattn.vocabulary_
    if same_vocabulary:
        difference = abs(sklearn.transform(split.eval_texts) - transform_ngrams(skattn, split.eval_texts)).max()
    else:
        # scikit-learn's rows for skattn's vocabulary: what the counting must reproduce.
        reference = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, dtype=np.float32,
                                    vocabulary=skattn.vocabulary_).fit(split.train_texts)
        difference = abs(reference.transform(split.eval_texts) - transform_ngrams(skattn, split.eval_texts)).max()
    return {
        "dataset": dataset, "ngram_range": list(analyzer.ngram_range),
        "train_docs": len(split.train_texts), "eval_docs": len(split.eval_texts),
        "ngrams_kept": len(skattn.vocabulary_),
        "kept_differently": len(set(skattn.vocabulary_) - set(sklearn.vocabulary_)),
        "largest_row_difference": float(difference),
        "sklearn_fit_s": sklearn_fit_s, "skattn_fit_s": skattn_fit_s,
        "sklearn_transform_docs_per_s": len(split.eval_texts) / sklearn_transform_s,
        "skattn_transform_docs_per_s": len(split.eval_texts) / skattn_transform_s,
        "skattn_first_call_after_unpickling_s": first_s,
    }


def table(rows, markdown):
    columns = (
        "dataset", "n-grams kept", "kept differently", "largest row difference", "scikit-learn fit s", "skattn fit s",
        "fit speed-up", "scikit-learn transform docs/s", "skattn transform docs/s", "transform speed-up",
        "skattn first call after unpickling s",
    )
    cells = [
        [
            row["dataset"], f"{row['ngrams_kept']:,}", f"{row['kept_differently']:,}",
            f"{row['largest_row_difference']:.1e}",
            f"{row['sklearn_fit_s']:.2f}", f"{row['skattn_fit_s']:.2f}",
            f"{row['sklearn_fit_s'] / row['skattn_fit_s']:.2f}x",
            f"{row['sklearn_transform_docs_per_s']:,.0f}", f"{row['skattn_transform_docs_per_s']:,.0f}",
            f"{row['skattn_transform_docs_per_s'] / row['sklearn_transform_docs_per_s']:.2f}x",
            f"{row['skattn_first_call_after_unpickling_s']:.2f}",
        ]
        for row in rows
    ]
    return format_table(columns, cells, markdown)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_per_dataset_arguments(parser, "calls timed per implementation, fit and transform each")
    run_per_dataset(parser, measure, table, lambda args: f"best of {args.repeats} calls each, one process")


if __name__ == "__main__":
    main()
