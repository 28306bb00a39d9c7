"""Accuracy of skattn next to TF-IDF + logistic regression and fastText, on the same splits.

For each dataset, every row is fitted on the same training documents and scored
on the same evaluation documents: the test split, or with ``--validation`` a
stratified 10% of the training split (the one to tune defaults on). Each row
runs in a subprocess of its own, so that its peak resident memory is its own
and a crash leaves the other rows standing. ``--per-class`` adds each class's
recall and F1 per row below each dataset's table. See benchmarks/README.md for
what each row and column means.

Run from the repository root::

    python benchmarks/accuracy.py --quick --datasets r8     # a couple of minutes
    python benchmarks/accuracy.py                            # full R8 and 20 Newsgroups
    python benchmarks/accuracy.py --datasets all --per-class # every shared corpus, errors per class
    python benchmarks/accuracy.py --validation --markdown    # validation split, for tuning
"""

import argparse
import json
import os
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _common import (
    DATASETS, METRIC_COLUMNS, VALIDATION_FRACTION, add_common_arguments, common_options, emit, fit_skattn,
    format_table, hardware_lines, metric_cells, resolve_quick, scores, skattn_params, spawn, split_of,
    timed, timed_result,
)

DEFAULT_DATASETS = ("r8", "20ng")
TFIDF_WORD_PARAMS = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2}
TFIDF_CHAR_PARAMS = {"analyzer": "char", "ngram_range": (1, 3), "sublinear_tf": True, "min_df": 2}
TFIDF_C_GRID = (1.0, 10.0, 100.0)
TFIDF_CV_FOLDS = 3
LOGISTIC_MAX_ITER = 1000
FASTTEXT_PARAMS = {"wordNgrams": 2, "epoch": 25, "lr": 1.0}


@dataclass(frozen=True)
class Row:
    """One model in the table."""

    key: str  # name on the command line (--rows, --row)
    label: str  # name in the table
    summary: str  # legend line
    default_datasets: tuple = None  # the datasets it runs on when --rows is not given; None: every one


def tuned_lr_summary(vectorizer_params):
    """Legend line of a TF-IDF + tuned logistic regression row."""
    params = ", ".join(f"{name}={value!r}" for name, value in vectorizer_params.items())
    return (f"TfidfVectorizer({params}) + LogisticRegression(max_iter={LOGISTIC_MAX_ITER}), C in "
            f"{list(TFIDF_C_GRID)} by {TFIDF_CV_FOLDS}-fold GridSearchCV on the training documents "
            f"(vectorizer refitted per fold)")


ROWS = (
    Row("skattn", "skattn default", "AttentionClassifier(random_state=seed), default parameters"),
    Row(
        "skattn-pretrain", "skattn pretrain+fine-tune",
        "AttentionClassifier(encoder=AttentionEncoder(random_state=seed), random_state=seed): "
        "masked-language-model pretraining on the training texts, then fine-tuning",
    ),
    Row("tfidf-lr", "TF-IDF + LR (tuned)", tuned_lr_summary(TFIDF_WORD_PARAMS)),
    Row(
        "tfidf-char-lr", "TF-IDF char 1-3 + LR (tuned)", tuned_lr_summary(TFIDF_CHAR_PARAMS),
        default_datasets=("zh-reviews",),  # the reference there: unsegmented Chinese has no words
    ),
    Row(
        "fasttext", "fastText (bigrams)",
        "fasttext.train_supervised(wordNgrams=2, epoch=25, lr=1.0) on the training documents in a "
        "seeded random order, lowercased, punctuation split off",
    ),
)
ROW_KEYS = tuple(row.key for row in ROWS)


# -- command line ---------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--datasets", nargs="+", default=list(DEFAULT_DATASETS), choices=DATASETS + ("all",),
        help=f"datasets to run, or all of them (default: {' '.join(DEFAULT_DATASETS)})")
    add("--rows", help=f"comma-separated subset of {', '.join(ROW_KEYS)} (default: all but tfidf-char-lr, "
        "which runs by default on zh-reviews only)")
    add("--validation", action="store_true",
        help=f"score on a stratified {round(VALIDATION_FRACTION * 100)}%% of the training split instead of the test split")
    add("--pretrain-epochs", type=int,
        help="max_epochs of the AttentionEncoder pretraining (default: --max-epochs, else skattn's)")
    add_common_arguments(parser)
    add("--per-class", action="store_true",
        help="below each dataset's table, each class's recall and F1 per row, classes by training size")
    add("--markdown", action="store_true", help="print markdown tables")
    add("--output", help="write the raw results (per-class scores included) as JSON to this file")
    # Internal: run one row in this process and print its result as JSON.
    add("--row", choices=ROW_KEYS + ("baseline",), help=argparse.SUPPRESS)
    add("--dataset", choices=DATASETS, help=argparse.SUPPRESS)
    args = resolve_quick(parser.parse_args(argv))
    args.datasets = list(dict.fromkeys(
        dataset for name in args.datasets for dataset in (DATASETS if name == "all" else (name,))
    ))
    unknown = set(args.rows.split(",")) - set(ROW_KEYS) if args.rows is not None else set()
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(ROW_KEYS)}")
    if args.pretrain_epochs is None:
        args.pretrain_epochs = args.max_epochs
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.row is not None:
        run_child(args)
    else:
        sys.exit(run_parent(args))


# -- rows -----------------------------------------------------------------------------


def run_skattn(split, args):
    """``AttentionClassifier`` with its default parameters."""
    from skattn import AttentionClassifier

    classifier = AttentionClassifier(**skattn_params(args, args.max_epochs))
    return fit_skattn(classifier, split, args.threads)


def run_skattn_pretrain(split, args):
    """``AttentionClassifier`` fine-tuning an ``AttentionEncoder`` it pretrains on the training texts."""
    from skattn import AttentionClassifier, AttentionEncoder

    encoder = AttentionEncoder(**skattn_params(args, args.pretrain_epochs))
    classifier = AttentionClassifier(encoder=encoder, **skattn_params(args, args.max_epochs))
    return fit_skattn(classifier, split, args.threads)


def run_tfidf_lr(split, args):
    """TF-IDF of words and word bigrams, logistic regression with C chosen by cross-validation."""
    return run_tuned_lr(split, TFIDF_WORD_PARAMS)


def run_tfidf_char_lr(split, args):
    """TF-IDF of character 1- to 3-grams, logistic regression with C chosen by cross-validation."""
    return run_tuned_lr(split, TFIDF_CHAR_PARAMS)


def run_tuned_lr(split, vectorizer_params):
    """``TfidfVectorizer(**vectorizer_params)`` + logistic regression, C by grid search."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(
        TfidfVectorizer(**vectorizer_params),
        LogisticRegression(max_iter=LOGISTIC_MAX_ITER),
    )
    search = GridSearchCV(
        pipeline, {"logisticregression__C": list(TFIDF_C_GRID)}, cv=TFIDF_CV_FOLDS, n_jobs=1
    )
    fit_s = timed(search.fit, split.train_texts, split.train_labels)
    predictions, predict_s = timed_result(search.predict, split.eval_texts)
    best_c = search.best_params_["logisticregression__C"]
    n_features = len(search.best_estimator_[0].vocabulary_)
    details = {
        "best_C": best_c,
        "cv_accuracy": {str(c): float(s) for c, s in zip(TFIDF_C_GRID, search.cv_results_["mean_test_score"])},
        "refit_s": search.refit_time_,
        "n_features": n_features,
    }
    notes = f"C={best_c:g}; final fit {search.refit_time_:.1f} s; {n_features:,} features"
    return predictions, fit_s, predict_s, notes, details


def fasttext_line(text):
    """A document as fastText reads it: lowercased, punctuation split off, on one line.

    fastText splits on whitespace only, so without this "oil." and "oil" would be
    different words.
    """
    return " ".join(re.findall(r"\w+|[^\w\s]", text.lower()))


def run_fasttext(split, args):
    """fastText's supervised classifier with word bigrams, trained from a temporary file."""
    try:
        import fasttext
    except ImportError:
        return None
    classes, targets = np.unique(split.train_labels, return_inverse=True)
    majority = int(np.bincount(targets).argmax())
    threads = args.threads or len(os.sched_getaffinity(0))

    def fit():
        # fastText reads its file in order and does not shuffle; the 20ng files are
        # sorted by class, which plain SGD in file order cannot learn from.
        order = np.random.default_rng(args.seed).permutation(len(split.train_texts))
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "train.txt"
            with open(path, "w", encoding="utf-8") as lines:
                lines.writelines(
                    f"__label__{targets[i]} {fasttext_line(split.train_texts[i])}\n" for i in order
                )
            return fasttext.train_supervised(
                input=str(path), **FASTTEXT_PARAMS, thread=threads, seed=args.seed,
                verbose=2 if args.verbose else 0,
            )

    def predict(texts):
        # A list goes through fastText's multi-line path, which also works with NumPy 2.
        labels, _ = model.predict([fasttext_line(text) for text in texts])
        indices = [int(found[0].removeprefix("__label__")) if found else majority for found in labels]
        return classes[indices]

    model, fit_s = timed_result(fit)
    predictions, predict_s = timed_result(predict, split.eval_texts)
    notes = "1 thread" if threads == 1 else f"{threads} threads (training not repeatable)"
    details = {"threads": threads, "n_words": len(model.words)}
    return predictions, fit_s, predict_s, notes, details


RUNNERS = {
    "skattn": run_skattn,
    "skattn-pretrain": run_skattn_pretrain,
    "tfidf-lr": run_tfidf_lr,
    "tfidf-char-lr": run_tfidf_char_lr,
    "fasttext": run_fasttext,
}


# -- scores per class -------------------------------------------------------------------


def class_counts(split):
    """``(class, training docs, evaluation docs)`` of every class, most training documents first."""
    train, held_out = Counter(split.train_labels.tolist()), Counter(split.eval_labels.tolist())
    classes = sorted(train.keys() | held_out.keys(), key=lambda name: (-train[name], name))
    return [(name, train[name], held_out[name]) for name in classes]


def per_class_scores(split, predictions):
    """Precision, recall and F1 of each class, with its training and evaluation counts."""
    from sklearn.metrics import precision_recall_fscore_support

    counts = class_counts(split)
    precision, recall, f1, _ = precision_recall_fscore_support(
        split.eval_labels, predictions, labels=[name for name, _, _ in counts], zero_division=0
    )
    return [
        {"class": name, "train_docs": train, "support": support,
         "precision": float(p), "recall": float(r), "f1": float(f)}
        for (name, train, support), p, r, f in zip(counts, precision, recall, f1)
    ]


# -- one row per process ----------------------------------------------------------------


def run_fitted(runner, split, args):
    """Run ``runner`` on ``split``; its scores, notes and details, or the 'not installed' status."""
    outcome = runner(split, args)
    if outcome is None:
        return {"status": "not installed"}
    predictions, fit_s, predict_s, notes, details = outcome
    return {
        **scores(split, predictions, fit_s, predict_s),
        "notes": notes,
        "details": details,
        "per_class": per_class_scores(split, predictions),
    }


def run_child(args):
    """Run the row ``args.row`` on ``args.dataset`` (``baseline``: only load the data)."""
    split = split_of(args)
    emit({} if args.row == "baseline" else run_fitted(RUNNERS[args.row], split, args))


def spawn_row(key, dataset, args):
    """Run one row of this script on ``dataset`` in a fresh interpreter."""
    command = [sys.executable, str(Path(__file__).resolve()), "--row", key, "--dataset", dataset]
    command += common_options(args)
    if args.pretrain_epochs is not None:
        command += ["--pretrain-epochs", str(args.pretrain_epochs)]
    if args.validation:
        command.append("--validation")
    return spawn(command, args.threads)


# -- tables -----------------------------------------------------------------------------


COLUMNS = ("row", *METRIC_COLUMNS, "notes")


def dataset_report(split, rows, results, baseline, markdown):
    """Title line and table of one dataset."""
    title = split.describe()
    if baseline.get("status") != "failed":
        title += f"; peak RSS of a child that only loads the data: {baseline['peak_rss_mib']:,.0f} MiB"
    cells = [[row.label, *metric_cells(results[row.key]), results[row.key].get("notes", "")] for row in rows]
    heading = f"### {title}" if markdown else title
    return f"{heading}\n\n{format_table(COLUMNS, cells, markdown, text_columns=(0, -1))}"


def per_class_report(split, rows, results, markdown):
    """Each class's training and evaluation counts, and its recall and F1 in every row."""
    columns = ["class", "train docs", f"{split.evaluation} docs"]
    columns += [f"{row.key} {metric}" for row in rows for metric in ("recall", "F1")]
    found = {row.key: {item["class"]: item for item in results[row.key].get("per_class", [])} for row in rows}
    cells = []
    for name, train, support in class_counts(split):
        line = [name, f"{train:,}", f"{support:,}"]
        for row in rows:
            item = found[row.key].get(name)
            line += [f"{item['recall']:.1%}", f"{item['f1']:.1%}"] if item else ["-", "-"]
        cells.append(line)
    title = f"{split.dataset} per class (most training documents first): recall and F1 of each row"
    heading = f"#### {title}" if markdown else title
    return f"{heading}\n\n{format_table(columns, cells, markdown)}"


def legend_lines(rows, args):
    """What each row is and how each number is measured."""
    skattn_epochs = ""
    if args.max_epochs is not None:
        skattn_epochs = f" (here with max_epochs={args.max_epochs}"
        if args.pretrain_epochs != args.max_epochs:
            skattn_epochs += f", pretraining max_epochs={args.pretrain_epochs}"
        skattn_epochs += ")"
    lines = [f"{row.label}: {row.summary}" + (skattn_epochs if row.key.startswith("skattn") else "")
             for row in rows]
    lines.append("fit s: wall time of fit (skattn: tokenizer, pretraining and training; TF-IDF + LR: the "
                 "whole grid search and the final refit); predict docs/s: evaluation documents classified "
                 "per second, tokenization included; peak RSS: the row's own process.")
    return lines


# -- the parent: run every row on every dataset -----------------------------------------


def rows_for(dataset, args):
    """The rows ``--rows`` names, or the rows that run on ``dataset`` by default."""
    if args.rows is not None:
        return [row for row in ROWS if row.key in args.rows.split(",")]
    return [row for row in ROWS if row.default_datasets is None or dataset in row.default_datasets]


def run_parent(args):
    """Run each selected row on each dataset in a subprocess; print the tables; save JSON."""
    rows_of = {dataset: rows_for(dataset, args) for dataset in args.datasets}
    bullet = "- " if args.markdown else ""
    report = {"hardware": hardware_lines(args), "args": vars(args), "datasets": {}}
    for text in report["hardware"]:
        print(bullet + text)
    if args.quick:
        print(f"{bullet}--quick: subsets for a smoke test, not numbers to quote")
    all_ok = True
    for dataset, rows in rows_of.items():
        split = split_of(args, dataset)
        baseline = spawn_row("baseline", dataset, args)
        results = {}
        for row in rows:
            print(f"{dataset}: running {row.key} ...", file=sys.stderr, flush=True)
            results[row.key] = spawn_row(row.key, dataset, args)
            all_ok &= results[row.key]["status"] != "failed"
        print()
        print(dataset_report(split, rows, results, baseline, args.markdown), flush=True)
        if args.per_class:
            print()
            print(per_class_report(split, rows, results, args.markdown), flush=True)
        report["datasets"][dataset] = {
            "evaluation": split.evaluation,
            "train_docs": len(split.train_texts),
            "eval_docs": len(split.eval_texts),
            "baseline_peak_rss_mib": baseline.get("peak_rss_mib"),
            "rows": {row.key: {"label": row.label, **results[row.key]} for row in rows},
        }
    print()
    for text in legend_lines([row for row in ROWS if any(row in rows for rows in rows_of.values())], args):
        print(bullet + text)
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all_ok else 1


if __name__ == "__main__":
    main()
