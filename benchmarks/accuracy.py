"""Accuracy of skattn next to TF-IDF + logistic regression and fastText, on the same splits.

For each dataset, every row is fitted on the same training documents and scored
on the same evaluation documents: the test split, or with ``--validation`` a
stratified 10% of the training split (the one to tune defaults on). Each row
runs in a subprocess of its own, so that its peak resident memory is its own
and a crash leaves the other rows standing. See benchmarks/README.md for what
each row and column means.

Run from the repository root::

    python benchmarks/accuracy.py --quick --datasets r8     # a couple of minutes
    python benchmarks/accuracy.py                            # full R8 and 20 Newsgroups
    python benchmarks/accuracy.py --validation --markdown    # validation split, for tuning
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from _common import cpu_model, format_table, load_tsv, peak_rss_mib

DATASETS = ("r8", "20ng")
QUICK_TRAIN_DOCS, QUICK_EVAL_DOCS, QUICK_EPOCHS = 600, 300, 2
VALIDATION_FRACTION = 0.1
TFIDF_C_GRID = (1.0, 10.0, 100.0)
TFIDF_CV_FOLDS = 3
LOGISTIC_MAX_ITER = 1000
FASTTEXT_PARAMS = {"wordNgrams": 2, "epoch": 25, "lr": 1.0}
RESULT_PREFIX = "ROW-RESULT "


@dataclass(frozen=True)
class Row:
    """One model in the table."""

    key: str  # name on the command line (--rows, --row)
    label: str  # name in the table
    summary: str  # legend line


ROWS = (
    Row("skattn", "skattn default", "AttentionClassifier(random_state=seed), default parameters"),
    Row(
        "skattn-pretrain", "skattn pretrain+fine-tune",
        "AttentionClassifier(encoder=AttentionEncoder(random_state=seed), random_state=seed): "
        "masked-language-model pretraining on the training texts, then fine-tuning",
    ),
    Row(
        "tfidf-lr", "TF-IDF + LR (tuned)",
        f"TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2) + "
        f"LogisticRegression(max_iter={LOGISTIC_MAX_ITER}), C in {list(TFIDF_C_GRID)} by "
        f"{TFIDF_CV_FOLDS}-fold GridSearchCV on the training documents (vectorizer refitted per fold)",
    ),
    Row(
        "fasttext", "fastText (bigrams)",
        "fasttext.train_supervised(wordNgrams=2, epoch=25, lr=1.0) on the training documents in a "
        "seeded random order, lowercased, punctuation split off",
    ),
)
ROW_KEYS = tuple(row.key for row in ROWS)


# -- command line ---------------------------------------------------------------


def add_common_arguments(parser):
    """Options shared with ablations.py: data, subsets, epochs, seed, threads."""
    add = parser.add_argument
    add("--data-dir", help="folder holding r8/ and 20ng/ (default: shared/data beside the repository)")
    add("--quick", action="store_true",
        help=f"stratified subsets of {QUICK_TRAIN_DOCS} training and {QUICK_EVAL_DOCS} evaluation "
             f"documents, max_epochs={QUICK_EPOCHS} for skattn")
    add("--max-docs", type=int, help="stratified subset of at most this many training documents")
    add("--max-eval-docs", type=int, help="stratified subset of at most this many evaluation documents")
    add("--max-epochs", type=int, help="max_epochs of the skattn estimators (default: skattn's)")
    add("--seed", type=int, default=0, help="subsets, validation split and every model's random_state")
    add("--threads", type=int,
        help="threads per row: OMP/MKL/OpenBLAS thread variables, torch.set_num_threads and fastText's "
             "thread (default: the libraries' own defaults; fastText uses every usable core)")
    add("--verbose", action="count", default=0, help="pass verbose=1 (-vv: 2) to the skattn estimators")


def resolve_quick(args):
    """Fill in the subset sizes and epochs that ``--quick`` implies, unless given."""
    if args.quick:
        args.max_docs = args.max_docs or QUICK_TRAIN_DOCS
        args.max_eval_docs = args.max_eval_docs or QUICK_EVAL_DOCS
        args.max_epochs = args.max_epochs or QUICK_EPOCHS
    return args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS, help="datasets to run")
    add("--rows", default=",".join(ROW_KEYS), help=f"comma-separated subset of {', '.join(ROW_KEYS)}")
    add("--validation", action="store_true",
        help=f"score on a stratified {round(VALIDATION_FRACTION * 100)}%% of the training split instead of the test split")
    add("--pretrain-epochs", type=int,
        help="max_epochs of the AttentionEncoder pretraining (default: --max-epochs, else skattn's)")
    add_common_arguments(parser)
    add("--markdown", action="store_true", help="print markdown tables")
    add("--output", help="write the raw results as JSON to this file")
    # Internal: run one row in this process and print its result as JSON.
    add("--row", choices=ROW_KEYS + ("baseline",), help=argparse.SUPPRESS)
    add("--dataset", choices=DATASETS, help=argparse.SUPPRESS)
    args = resolve_quick(parser.parse_args(argv))
    unknown = set(args.rows.split(",")) - set(ROW_KEYS)
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


# -- data -----------------------------------------------------------------------


@dataclass
class Split:
    """Training and evaluation documents of one dataset."""

    dataset: str
    evaluation: str  # "test" or "validation"
    train_texts: list
    train_labels: np.ndarray
    eval_texts: list
    eval_labels: np.ndarray

    def describe(self):
        return (f"{self.dataset}: {len(self.train_texts):,} training docs, {len(self.eval_texts):,} "
                f"{self.evaluation} docs, {len(np.unique(self.train_labels))} classes")


def stratified_subset(texts, labels, size, seed):
    """A seeded subset of ``size`` documents with the class proportions of ``labels``."""
    if size is None or size >= len(texts):
        return texts, labels
    keep, _ = train_test_split(np.arange(len(texts)), train_size=size, random_state=seed, stratify=labels)
    keep = np.sort(keep)
    return [texts[i] for i in keep], labels[keep]


def load_split(dataset, *, data_dir=None, seed=0, validation=False, max_docs=None, max_eval_docs=None):
    """Training and evaluation documents of ``dataset``.

    The evaluation documents are the test split, or with ``validation`` a
    stratified :data:`VALIDATION_FRACTION` of the training split (which the
    training documents then exclude); the test split is not read at all then.
    ``max_docs`` and ``max_eval_docs`` take stratified subsets afterwards, so
    a quick run evaluates on part of the same held-out documents as a full one.
    """
    texts, labels = load_tsv(dataset, "train", data_dir)
    labels = np.asarray(labels)
    if validation:
        train_rows, eval_rows = train_test_split(
            np.arange(len(texts)), test_size=VALIDATION_FRACTION, random_state=seed, stratify=labels
        )
        train_rows, eval_rows = np.sort(train_rows), np.sort(eval_rows)
        train = [texts[i] for i in train_rows], labels[train_rows]
        held_out = [texts[i] for i in eval_rows], labels[eval_rows]
    else:
        train = texts, labels
        test_texts, test_labels = load_tsv(dataset, "test", data_dir)
        held_out = test_texts, np.asarray(test_labels)
    train = stratified_subset(*train, max_docs, seed)
    held_out = stratified_subset(*held_out, max_eval_docs, seed)
    return Split(dataset, "validation" if validation else "test", *train, *held_out)


def split_of(args, dataset=None):
    """The split the options describe, for ``dataset`` or ``args.dataset``."""
    return load_split(
        dataset or args.dataset,
        data_dir=args.data_dir,
        seed=args.seed,
        validation=args.validation,
        max_docs=args.max_docs,
        max_eval_docs=args.max_eval_docs,
    )


# -- rows -----------------------------------------------------------------------------


def skattn_params(args, max_epochs=None):
    """Parameters every skattn estimator of a run shares: seed, verbosity, epochs if set."""
    params = {"random_state": args.seed, "verbose": args.verbose}
    if max_epochs is not None:
        params["max_epochs"] = max_epochs
    return params


def skattn_device_note(estimator):
    """Device and autocast precision that a skattn estimator's settings pick here, e.g. "cpu fp32"."""
    import torch

    from skattn._devices import resolve_device, resolve_precision

    device = resolve_device(estimator.device)
    dtype = resolve_precision(estimator.precision, device)
    return f"{device.type} {'bf16' if dtype == torch.bfloat16 else 'fp32'}"


def fit_skattn(classifier, split, threads):
    """Fit and predict with an AttentionClassifier; record epochs and convergence warnings."""
    import torch
    from sklearn.exceptions import ConvergenceWarning

    if threads:
        torch.set_num_threads(threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit_s = timed(classifier.fit, split.train_texts, split.train_labels)
    predictions, predict_s = timed_result(classifier.predict, split.eval_texts)
    not_converged = [
        str(w.message).split(":", 1)[0] for w in caught if issubclass(w.category, ConvergenceWarning)
    ]
    for w in caught:  # pass on anything else
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    device = skattn_device_note(classifier)
    notes = f"{device}, {classifier.n_iter_} epoch" + ("" if classifier.n_iter_ == 1 else "s")
    if not_converged:
        notes += "; not converged: " + ", ".join(not_converged)
    details = {
        "n_iter": classifier.n_iter_,
        "loss_curve": [float(loss) for loss in classifier.loss_curve_],
        "not_converged": not_converged,
        "device": device,
        "torch_threads": torch.get_num_threads(),
    }
    return predictions, fit_s, predict_s, notes, details


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
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
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
    "fasttext": run_fasttext,
}


# -- one row per process ----------------------------------------------------------------


def timed_result(function, *arguments):
    """``function(*arguments)`` and the wall-clock seconds it took."""
    started = time.perf_counter()
    result = function(*arguments)
    return result, time.perf_counter() - started


def timed(function, *arguments):
    """Wall-clock seconds of ``function(*arguments)``."""
    return timed_result(function, *arguments)[1]


def scores(split, predictions, fit_s, predict_s):
    """The table's numbers for one fitted row."""
    return {
        "status": "ok",
        "accuracy": float(accuracy_score(split.eval_labels, predictions)),
        "macro_f1": float(f1_score(split.eval_labels, predictions, average="macro", zero_division=0)),
        "fit_s": fit_s,
        "predict_s": predict_s,
        "predict_docs_per_s": len(split.eval_texts) / predict_s,
        "train_docs": len(split.train_texts),
        "eval_docs": len(split.eval_texts),
    }


def run_fitted(runner, split, args):
    """Run ``runner`` on ``split``; its scores, notes and details, or the 'not installed' status."""
    outcome = runner(split, args)
    if outcome is None:
        return {"status": "not installed"}
    predictions, fit_s, predict_s, notes, details = outcome
    return {**scores(split, predictions, fit_s, predict_s), "notes": notes, "details": details}


def emit(result):
    """Print a child's result where the parent looks for it, with the child's peak memory."""
    result["peak_rss_mib"] = peak_rss_mib()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(args):
    """Run the row ``args.row`` on ``args.dataset`` (``baseline``: only load the data)."""
    split = split_of(args)
    emit({} if args.row == "baseline" else run_fitted(RUNNERS[args.row], split, args))


def child_env(threads):
    """Environment of a child process, with thread counts capped when ``threads`` is set."""
    env = dict(os.environ)
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    return env


def spawn(command, threads=None):
    """Run ``command`` (a child of this script or of ablations.py) and return its result dict.

    The child's stderr passes through. A child that dies, or prints no
    result, gives ``{"status": "failed", ...}``.
    """
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=child_env(threads), check=False)
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return {"status": "failed", "returncode": completed.returncode}


def common_options(args):
    """The shared options as command-line arguments for a child, ``--quick`` spelled out."""
    options = ["--seed", str(args.seed)] + ["--verbose"] * args.verbose
    for flag, value in {
        "--data-dir": args.data_dir,
        "--max-docs": args.max_docs,
        "--max-eval-docs": args.max_eval_docs,
        "--max-epochs": args.max_epochs,
        "--threads": args.threads,
    }.items():
        if value is not None:
            options += [flag, str(value)]
    return options


def spawn_row(key, dataset, args):
    """Run one row of this script on ``dataset`` in a fresh interpreter."""
    command = [sys.executable, str(Path(__file__).resolve()), "--row", key, "--dataset", dataset]
    command += common_options(args)
    if args.pretrain_epochs is not None:
        command += ["--pretrain-epochs", str(args.pretrain_epochs)]
    if args.validation:
        command.append("--validation")
    return spawn(command, args.threads)


# -- hardware and versions -------------------------------------------------------------


def package_version(*names):
    """Installed version of the first of ``names`` that is installed."""
    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "not installed"


def hardware_lines(args):
    """CPU, cores, load and library versions, printed above the tables."""
    threads = args.threads if args.threads else "library defaults"
    cpu = (f"CPU: {cpu_model()}; {os.cpu_count()} logical cores, {len(os.sched_getaffinity(0))} usable; "
           f"load average at start {os.getloadavg()[0]:.1f}; threads per row: {threads}")
    libraries = (f"torch {package_version('torch')}, skattn {package_version('skattn')}, "
                 f"scikit-learn {package_version('scikit-learn')}, "
                 f"fastText {package_version('fasttext', 'fasttext-wheel')}, Python {platform.python_version()}")
    return [cpu, libraries]


# -- tables -----------------------------------------------------------------------------


def metric_cells(result):
    """Accuracy, macro-F1, fit seconds, predict docs/s and peak RSS of a result, as strings."""
    if result.get("status") != "ok":
        status = result.get("status", "failed")
        if status == "failed" and "returncode" in result:
            status = f"failed (exit {result['returncode']})"
        return [status] + ["-"] * 4
    return [
        f"{result['accuracy']:.2%}",
        f"{result['macro_f1']:.2%}",
        f"{result['fit_s']:,.1f}",
        f"{result['predict_docs_per_s']:,.0f}",
        f"{result['peak_rss_mib']:,.0f}",
    ]


METRIC_COLUMNS = ("accuracy", "macro-F1", "fit s", "predict docs/s", "peak RSS MiB")
COLUMNS = ("row", *METRIC_COLUMNS, "notes")


def dataset_report(split, rows, results, baseline, markdown):
    """Title line and table of one dataset."""
    title = split.describe()
    if baseline.get("status") != "failed":
        title += f"; peak RSS of a child that only loads the data: {baseline['peak_rss_mib']:,.0f} MiB"
    cells = [[row.label, *metric_cells(results[row.key]), results[row.key].get("notes", "")] for row in rows]
    heading = f"### {title}" if markdown else title
    return f"{heading}\n\n{format_table(COLUMNS, cells, markdown, text_columns=(0, -1))}"


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


def run_parent(args):
    """Run each selected row on each dataset in a subprocess; print the tables; save JSON."""
    rows = [row for row in ROWS if row.key in args.rows.split(",")]
    bullet = "- " if args.markdown else ""
    report = {"hardware": hardware_lines(args), "args": vars(args), "datasets": {}}
    for text in report["hardware"]:
        print(bullet + text)
    if args.quick:
        print(f"{bullet}--quick: subsets for a smoke test, not numbers to quote")
    all_ok = True
    for dataset in args.datasets:
        split = split_of(args, dataset)
        baseline = spawn_row("baseline", dataset, args)
        results = {}
        for row in rows:
            print(f"{dataset}: running {row.key} ...", file=sys.stderr, flush=True)
            results[row.key] = spawn_row(row.key, dataset, args)
            all_ok &= results[row.key]["status"] != "failed"
        print()
        print(dataset_report(split, rows, results, baseline, args.markdown), flush=True)
        report["datasets"][dataset] = {
            "evaluation": split.evaluation,
            "train_docs": len(split.train_texts),
            "eval_docs": len(split.eval_texts),
            "baseline_peak_rss_mib": baseline.get("peak_rss_mib"),
            "rows": {row.key: {"label": row.label, **results[row.key]} for row in rows},
        }
    print()
    for text in legend_lines(rows, args):
        print(bullet + text)
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all_ok else 1


if __name__ == "__main__":
    main()
