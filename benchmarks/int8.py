"""int8 inference against float32 from the same fitted weights: accuracy, macro-F1 and predict speed.

For each dataset, one AttentionClassifier is trained in float32 (what
``precision="auto"`` trains in on a CPU without native bfloat16) and the
evaluation documents are predicted twice by the same weights: with
``precision="fp32"`` (the float32 model, or its fused copy where oneDNN runs
it) and with ``precision="int8"`` (linear layers in int8). Predict times are
the best of ``--repeats`` warm calls of each, taken in alternating turns so
that the machine's load drifts over both alike.

Run from the repository root::

    python benchmarks/int8.py --datasets r8,zh-reviews --markdown
    python benchmarks/int8.py --datasets all --validation      # tune on validation splits
    python benchmarks/int8.py --quick                          # smoke test

To see a CPU without AVX512 or AMX on one that has them, limit PyTorch's
kernels, oneDNN and MKL to AVX2 (a proxy, not the real machine)::

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/int8.py
"""

import argparse
import copy
import json
import time

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from _common import DATASETS, add_common_arguments, format_table, hardware_lines, resolve_quick, skattn_params, split_of


def best_predict_seconds(estimators, documents, repeats):
    """Best wall-clock seconds of ``predict(documents)`` per estimator, over alternating warm turns."""
    best = [float("inf")] * len(estimators)
    for estimator in estimators:
        estimator.predict(documents)  # warm: oneDNN and FBGEMM prepare kernels per shape on a first call
    for _ in range(repeats):
        for index, estimator in enumerate(estimators):
            started = time.perf_counter()
            estimator.predict(documents)
            best[index] = min(best[index], time.perf_counter() - started)
    return best


def measure(args, dataset):
    """One dataset's row: both precisions' scores and speeds, from one float32 fit."""
    import torch

    from skattn import AttentionClassifier

    if args.threads:
        torch.set_num_threads(args.threads)
    split = split_of(args, dataset)
    params = skattn_params(args, args.max_epochs)
    fp32 = AttentionClassifier(**params, precision="fp32").fit(split.train_texts, split.train_labels)
    int8 = copy.deepcopy(fp32).set_params(precision="int8")
    int8._prepare_inference()  # as after a fit with precision="int8": its replica, made once
    row = {"dataset": dataset, "train_docs": len(split.train_texts), "eval_docs": len(split.eval_texts)}
    predictions = {}
    for name, estimator in (("fp32", fp32), ("int8", int8)):
        predictions[name] = estimator.predict(split.eval_texts)
        row[f"{name}_accuracy"] = float(accuracy_score(split.eval_labels, predictions[name]))
        row[f"{name}_macro_f1"] = float(f1_score(split.eval_labels, predictions[name], average="macro", zero_division=0))
    row["changed"] = int(np.sum(predictions["fp32"] != predictions["int8"]))
    fp32_s, int8_s = best_predict_seconds((fp32, int8), split.eval_texts, args.repeats)
    row["fp32_docs_per_s"] = len(split.eval_texts) / fp32_s
    row["int8_docs_per_s"] = len(split.eval_texts) / int8_s
    return row


def table(rows, markdown):
    columns = ("dataset", "fp32 accuracy", "int8 accuracy", "fp32 macro-F1", "int8 macro-F1", "changed predictions",
               "fp32 docs/s", "int8 docs/s", "int8 speed-up")
    cells = [
        [
            row["dataset"],
            f"{100 * row['fp32_accuracy']:.2f}%", f"{100 * row['int8_accuracy']:.2f}%",
            f"{100 * row['fp32_macro_f1']:.2f}%", f"{100 * row['int8_macro_f1']:.2f}%",
            f"{row['changed']} of {row['eval_docs']:,}",
            f"{row['fp32_docs_per_s']:,.0f}", f"{row['int8_docs_per_s']:,.0f}",
            f"{row['int8_docs_per_s'] / row['fp32_docs_per_s']:.2f}x",
        ]
        for row in rows
    ]
    return format_table(columns, cells, markdown)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="r8",
                        help=f"comma-separated, from {', '.join(DATASETS)}; or 'all' (default: r8)")
    parser.add_argument("--validation", action="store_true",
                        help="score on a validation split of the training documents instead of the test split")
    parser.add_argument("--repeats", type=int, default=3, help="warm predict calls timed per precision (default: 3)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--output", help="also write the rows as JSON to this file")
    add_common_arguments(parser)
    args = resolve_quick(parser.parse_args())
    datasets = DATASETS if args.datasets == "all" else tuple(args.datasets.split(","))
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {', '.join(DATASETS)}")
    header = hardware_lines(args)  # the load average before the runs
    rows = []
    for dataset in datasets:
        rows.append(measure(args, dataset))
        print(f"{dataset}: done", flush=True)
    for line in header:
        print(line)
    print(f"{'validation' if args.validation else 'test'} split, seed {args.seed}, best of {args.repeats} warm predicts")
    print(table(rows, args.markdown))
    if args.output:
        with open(args.output, "w") as file:
            json.dump(rows, file, indent=2)


if __name__ == "__main__":
    main()
