"""Validation accuracy of each AttentionClassifier path, and of their sum at several encoder scales.

Each path of the classifier (encoder, n-gram) is trained on its own loss, so
``encoder_logit_scale`` does not change training: one fit scores every scale.
The model is fitted on the training part of a validation split carved from
the training set (the test split is never read). See benchmarks/README.md.

Run from the repository root::

    python benchmarks/logit_scale.py --dataset r8
    python benchmarks/logit_scale.py --dataset 20ng --scales 0 0.1 0.25 0.5 1
"""

import argparse
import time

import numpy as np
import torch

from accuracy import DATASETS, add_common_arguments, hardware_lines, resolve_quick, skattn_params, split_of

DEFAULT_SCALES = (0.0, 0.1, 0.2, 0.25, 0.3, 0.5, 1.0, 2.0)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="r8", choices=DATASETS)
    parser.add_argument("--scales", type=float, nargs="+", default=list(DEFAULT_SCALES),
                        help="values of encoder_logit_scale to score")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    args.validation = True
    return resolve_quick(args)


def path_logits(classifier, documents):
    """Float32 logits of the encoder path and of the n-gram path, one row per document."""
    from skattn._loop import infer

    model = classifier.model_.eval()
    inputs = classifier._inputs(documents)

    def path(index):
        return infer(
            lambda **batch: model.path_logits(**batch)[index],
            inputs,
            len(classifier.classes_),
            batch_size=classifier.batch_size,
            device=torch.device("cpu"),
            autocast_dtype=None,
        )

    return path(0), path(1)


def main(argv=None):
    from skattn import AttentionClassifier

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    split = split_of(args)
    for line in hardware_lines(args):
        print(line)
    started = time.perf_counter()
    classifier = AttentionClassifier(**skattn_params(args, args.max_epochs), device="cpu")
    classifier.fit(split.train_texts, split.train_labels)
    fit_s = time.perf_counter() - started
    encoder, ngrams = path_logits(classifier, split.eval_texts)
    truth = np.searchsorted(classifier.classes_, split.eval_labels)

    def accuracy(logits):
        return float(np.mean(logits.argmax(axis=1) == truth))

    print(f"\n{split.dataset}: {len(split.train_texts):,} training docs, {len(split.eval_texts):,} "
          f"validation docs; one fit of {fit_s:.0f} s with the default parameters, scored in fp32\n")
    print(f"{'logits':34s} {'accuracy':>9s}")
    print(f"{'encoder path alone':34s} {accuracy(encoder):9.2%}")
    print(f"{'n-gram path alone':34s} {accuracy(ngrams):9.2%}")
    for scale in args.scales:
        print(f"{f'{scale:g} x encoder + n-grams':34s} {accuracy(scale * encoder + ngrams):9.2%}")


if __name__ == "__main__":
    main()
