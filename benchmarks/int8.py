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

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from _common import add_per_dataset_arguments, best_seconds, format_table, run_per_dataset, skattn_params, split_of


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
    fp32_s, int8_s = best_seconds((fp32.predict, int8.predict), split.eval_texts, args.repeats)
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
    add_per_dataset_arguments(parser, "warm predict calls timed per precision")
    run_per_dataset(parser, measure, table, lambda args: f"best of {args.repeats} warm predicts")


if __name__ == "__main__":
    main()
