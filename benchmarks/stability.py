"""Do default fits stay finite? Fits ``AttentionClassifier`` with its defaults on
short-text corpora, several seeds, in every precision and on every device the
machine has, and reports what would show a fit drifting towards divergence.

Columns: test accuracy and macro-F1; the largest gradient norm of the fit
(before clipping, from ``grad_norm_curve_``) and of its last epoch; the largest
absolute logit that ``decision_function`` gives on the training and the test
texts; the fit time. A fit that stops with ``FloatingPointError`` is reported as
diverged, with the epoch and batch from its message.

    python benchmarks/stability.py                                 # tweets and friends, seeds 0 1 2
    python benchmarks/stability.py --datasets tweets --seeds 0 --max-train-docs 2000
    python benchmarks/stability.py --markdown

Each fit runs in its own process, so one diverging or crashing fit does not
take the others with it.
"""

import argparse
import json
import multiprocessing
import sys
import time

import numpy as np

from _common import format_table, load_tsv

PRECISIONS = ("fp32", "bf16")


def available_settings():
    """``(device, precision)`` pairs this machine runs natively."""
    import torch

    from skattn._devices import cpu_has_native_bf16

    settings = [("cpu", "fp32")]
    if cpu_has_native_bf16():
        settings.append(("cpu", "bf16"))
    if torch.cuda.is_available():
        settings.append(("cuda", "fp32"))
        if torch.cuda.is_bf16_supported():
            settings.append(("cuda", "bf16"))
    return settings


def fit_one(dataset, device, precision, seed, max_train_docs, data_dir):
    """Fit the defaults once; return a result row (a dict)."""
    from sklearn.metrics import accuracy_score, f1_score

    from skattn import AttentionClassifier

    texts, labels = load_tsv(dataset, "train", data_dir)
    test_texts, test_labels = load_tsv(dataset, "test", data_dir)
    if max_train_docs is not None and max_train_docs < len(texts):
        keep = np.sort(np.random.default_rng(seed).choice(len(texts), max_train_docs, replace=False))
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    row = dict(dataset=dataset, device=device, precision=precision, seed=seed, n_train=len(texts))
    clf = AttentionClassifier(random_state=seed, device=device, precision=precision)
    started = time.perf_counter()
    try:
        clf.fit(texts, labels)
    except FloatingPointError as error:
        return dict(row, status="diverged", error=str(error), fit_s=time.perf_counter() - started)
    row["fit_s"] = time.perf_counter() - started
    predicted = clf.predict(test_texts)
    row.update(
        status="finite",
        accuracy=accuracy_score(test_labels, predicted),
        macro_f1=f1_score(test_labels, predicted, average="macro"),
        max_grad_norm=max(clf.grad_norm_curve_),
        last_epoch_grad_norm=clf.grad_norm_curve_[-1],
        max_train_logit=float(np.abs(clf.decision_function(texts)).max()),
        max_test_logit=float(np.abs(clf.decision_function(test_texts)).max()),
    )
    return row


def _child(queue, arguments):
    try:
        queue.put(fit_one(*arguments))
    except BaseException as error:  # reported as a row, never lost
        queue.put(dict(zip(("dataset", "device", "precision", "seed"), arguments[:4]), status="crashed", error=repr(error)))


def run_isolated(arguments):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, arguments))
    process.start()
    row = queue.get()
    process.join()
    return row


def table_cells(rows):
    """One row of strings per fit, for :func:`_common.format_table`."""
    cells = []
    for row in rows:
        finite = row["status"] == "finite"
        numbers = [
            f"{100 * row['accuracy']:.2f}%", f"{100 * row['macro_f1']:.2f}%", f"{row['max_grad_norm']:.1f}",
            f"{row['last_epoch_grad_norm']:.2f}", f"{row['max_train_logit']:.1f}", f"{row['max_test_logit']:.1f}",
        ] if finite else ["-"] * 6
        cells.append([row["dataset"], row["device"], row["precision"], str(row["seed"]), row["status"], *numbers,
                      f"{row.get('fit_s', float('nan')):.0f}"])
    return cells


COLUMNS = ["dataset", "device", "precision", "seed", "status", "accuracy", "macro-F1", "max grad norm",
           "last-epoch grad norm", "max abs logit, train", "max abs logit, test", "fit s"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["tweets", "friends"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=None,
                        help="device:precision pairs, e.g. cpu:bf16 cuda:bf16; default: all this machine runs natively")
    parser.add_argument("--max-train-docs", type=int, default=None, help="a seeded random subset of each training split")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    settings = [tuple(s.split(":")) for s in args.settings] if args.settings else available_settings()
    rows = []
    for dataset in args.datasets:
        for device, precision in settings:
            for seed in args.seeds:
                row = run_isolated((dataset, device, precision, seed, args.max_train_docs, args.data_dir))
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    print(format_table(COLUMNS, table_cells(rows), args.markdown, text_columns=range(5)))
    for row in rows:
        if row["status"] != "finite":
            print(f"{row['dataset']} {row['device']} {row['precision']} seed {row['seed']}: {row['error']}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)
    return 0 if all(row["status"] == "finite" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
