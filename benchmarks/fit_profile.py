"""Where a default AttentionClassifier fit spends its time: the share outside the model.

Times one ``fit`` end to end and, inside it, each phase by wrapping the
functions that do it (wall time, ``time.perf_counter``): tokenizer training,
the n-gram features, encoding into token ids, and in the training loop the
batch preparation (padding, copies to the device), the forward pass (loss
included), the backward pass, the optimizer step, and what is left of the loop
(gradient clipping, the finite check, reading the loss, the schedule,
progress). "Model" is forward + backward + optimizer; everything else is
outside the model, the part a GPU cannot speed up. On a GPU, asynchronous
kernels blur the split between forward, backward and the host work that
waits for them: run it with ``CUDA_LAUNCH_BLOCKING=1`` there, or read only
the total. See benchmarks/README.md.

``--predict`` also times ``predict_proba`` on the evaluation documents and,
separately, its two host steps (encoding into token ids, the n-gram TF-IDF);
the rest is the model and its batching.

``--ops N`` fits once more under ``torch.profiler`` and splits the operators'
self CPU time into matrix products, fused attention and everything else, with
the ``N`` costliest operators: how much of training any change outside the
matrix products could win (on a CPU; on a GPU the profiler's CPU times are the
host's, not the kernels').

``--count-reads`` fits once more, untimed, counting the values the training
loop reads back from its tensors (``.item()``, ``float()``, ``bool()``: each is
an ``aten._local_scalar_dense`` call, and on a GPU each makes the host wait
for the device), per optimizer step. Run it with ``SKATTN_FAST_PATHS=0`` to
count on the code path a GPU takes (the CPU fast paths read CPU values of
their own).

Run from the repository root::

    python benchmarks/fit_profile.py                       # R8 (shipped), defaults
    python benchmarks/fit_profile.py --dataset 20ng --max-docs 3000 --markdown
    SKATTN_FAST_PATHS=0 python benchmarks/fit_profile.py --count-reads --max-docs 1000
    python benchmarks/fit_profile.py --predict --max-docs 1600 --max-eval-docs 1000 --max-epochs 1 --params '{"precision": "fp32"}'
    python benchmarks/fit_profile.py --ops 12 --max-docs 1600 --max-epochs 1 --params '{"precision": "fp32"}'
"""

import argparse
import json
import time
from collections import defaultdict
from contextlib import ExitStack
from unittest import mock

import torch

from _common import add_common_arguments, format_table, hardware_lines, load_split, resolve_quick

PHASES = (
    ("tokenizer training", "outside"),
    ("n-gram features (fit)", "outside"),
    ("encoding into token ids", "outside"),
    ("building the model and optimizer", "outside"),
    ("batch preparation", "outside"),
    ("forward and loss", "model"),
    ("backward", "model"),
    ("optimizer step", "model"),
    ("rest of the training loop", "outside"),
    ("inference replica", "outside"),
    ("rest of fit", "outside"),
)


def timer(seconds, phase, function):
    """``function``, adding its wall time to ``seconds[phase]`` (nested calls counted once)."""
    depth = [0]

    def timed(*args, **kwargs):
        depth[0] += 1
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                seconds[phase] += time.perf_counter() - started

    return timed


def profile_fit(X, y, params):
    """Fit once with every phase timed; return ``(seconds per phase, fitted classifier)``."""
    import skattn._base as base
    import skattn._classifier as classifier
    import skattn._heads as heads
    import skattn._loop as loop
    from skattn import AttentionClassifier

    seconds = defaultdict(float)
    # A phase named twice gets one timer per function; they never nest.
    patches = [
        (base, "train_tokenizer", "tokenizer training"),
        (classifier, "fit_ngram_vectorizer", "n-gram features (fit)"),
        (base, "encode", "encoding into token ids"),
        (base, "TextEncoder", "building the model and optimizer"),
        (classifier, "_classifier_module", "building the model and optimizer"),
        (base, "adamw", "building the model and optimizer"),
        (base, "train", "training loop"),
        (loop.TrainingData, "batch", "batch preparation"),
        (heads.SequenceClassifier, "path_logits", "forward and loss"),
        (torch.Tensor, "backward", "backward"),
        (torch.optim.AdamW, "step", "optimizer step"),
        (base._AttentionBase, "_prepare_inference", "inference replica"),
    ]
    with ExitStack() as stack:
        for owner, name, phase in patches:
            stack.enter_context(mock.patch.object(owner, name, timer(seconds, phase, getattr(owner, name))))
        started = time.perf_counter()
        clf = AttentionClassifier(**params).fit(X, y)
        seconds["fit"] = time.perf_counter() - started
    inside = sum(seconds[phase] for phase in ("batch preparation", "forward and loss", "backward", "optimizer step"))
    seconds["rest of the training loop"] = seconds["training loop"] - inside
    timed = sum(seconds[phase] for phase, _ in PHASES if phase != "rest of fit")
    seconds["rest of fit"] = seconds["fit"] - timed
    return seconds, clf


def count_reads(X, y, params):
    """Fit once counting value reads inside the training loop; return ``(reads, optimizer steps)``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    import skattn._base as base
    from skattn import AttentionClassifier

    counts = {"reads": 0, "steps": 0}

    class CountReads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                counts["reads"] += 1
            return func(*args, **(kwargs or {}))

    def counted_train(*args, **kwargs):
        with CountReads():
            return train(*args, **kwargs)

    def counted_step(self, *args, **kwargs):
        counts["steps"] += 1
        return step(self, *args, **kwargs)

    train, step = base.train, torch.optim.AdamW.step
    with mock.patch.object(base, "train", counted_train), mock.patch.object(torch.optim.AdamW, "step", counted_step):
        AttentionClassifier(**params).fit(X, y)
    return counts["reads"], counts["steps"]


# Operators that are matrix products, as torch.profiler names them on the CPU.
MATRIX_PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation"}


def operator_kind(name):
    """Which of three groups a profiled operator belongs to."""
    if name in MATRIX_PRODUCTS or name.startswith(("mkldnn::_linear", "quantized::linear")):
        return "matrix products"
    if "scaled_dot_product" in name:
        return "fused attention"
    return "everything else"


def operator_shares(X, y, params, top):
    """Fit once more under ``torch.profiler``.

    Returns the fit's wall seconds (profiler included; the process's one-off
    imports were paid by the first fit), self CPU seconds per operator group,
    and the ``top`` operators.
    """
    from torch.profiler import ProfilerActivity, profile

    from skattn import AttentionClassifier

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        started = time.perf_counter()
        AttentionClassifier(**params).fit(X, y)
        wall = time.perf_counter() - started
    operators = [(event.key, event.self_cpu_time_total / 1e6) for event in profiler.key_averages()]
    groups = defaultdict(float)
    for name, seconds in operators:
        groups[operator_kind(name)] += seconds
    return wall, dict(groups), sorted(operators, key=lambda operator: -operator[1])[:top]


def profile_predict(clf, texts, repeats=3):
    """Seconds of ``predict_proba(texts)`` and of its host steps, each the best of ``repeats`` calls."""
    from skattn._ngrams import transform_ngrams

    def best(function):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
        return min(times)

    total = best(lambda: clf.predict_proba(texts))
    encoding = best(lambda: clf._encode(clf.tokenizer_, clf.config_, texts))
    ngrams = best(lambda: transform_ngrams(clf.ngram_vectorizer_, texts)) if clf.ngram_vectorizer_ is not None else 0.0
    return {"encoding into token ids": encoding, "n-gram TF-IDF": ngrams,
            "model and batching (the rest)": total - encoding - ngrams, "predict_proba, end to end": total}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="r8")
    add_common_arguments(parser)
    parser.add_argument("--params", default="{}", help="AttentionClassifier parameters as JSON (default: none)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--count-reads", action="store_true", help="also count value reads per optimizer step (a second, untimed fit)")
    parser.add_argument("--predict", action="store_true", help="also split predict_proba on the evaluation documents into host steps and the model")
    parser.add_argument("--ops", type=int, metavar="N", default=0,
                        help="also fit once more under torch.profiler and print the self CPU time of matrix products, "
                             "fused attention and everything else, and the N costliest operators (CPU only)")
    args = resolve_quick(parser.parse_args())
    split = load_split(args.dataset, data_dir=args.data_dir, seed=args.seed, max_docs=args.max_docs, max_eval_docs=args.max_eval_docs)
    params = {"random_state": args.seed, **json.loads(args.params)}
    if args.max_epochs is not None:
        params["max_epochs"] = args.max_epochs
    if args.threads:
        torch.set_num_threads(args.threads)
    seconds, clf = profile_fit(split.train_texts, split.train_labels, params)
    for line in hardware_lines(args):
        print(line)
    print(f"{args.dataset}: {len(split.train_texts):,} training documents, {clf.n_iter_} epochs, "
          f"{clf.n_tokens_seen_:,} tokens, on {clf.fit_device_} in {clf.fit_precision_}; "
          f"test accuracy {clf.score(split.eval_texts, split.eval_labels):.2%}\n")
    total = seconds["fit"]
    rows = [[phase, where, f"{seconds[phase]:,.2f}", f"{seconds[phase] / total:.1%}"] for phase, where in PHASES]
    for where in ("model", "outside"):
        share = sum(seconds[phase] for phase, part in PHASES if part == where)
        rows.append([f"all {where} the model" if where == "outside" else "all model", "", f"{share:,.2f}", f"{share / total:.1%}"])
    rows.append(["fit, end to end", "", f"{total:,.2f}", "100.0%"])
    print(format_table(("phase", "part", "seconds", "share of fit"), rows, args.markdown, text_columns=(0, 1)))
    if args.predict:
        seconds = profile_predict(clf, split.eval_texts)
        total = seconds["predict_proba, end to end"]
        print(f"\npredict_proba on {len(split.eval_texts):,} documents (best of 3 calls each)")
        rows = [[step, f"{value:,.3f}", f"{value / total:.1%}"] for step, value in seconds.items()]
        print(format_table(("step", "seconds", "share of predict"), rows, args.markdown, text_columns=(0,)))
    if args.ops:
        wall, groups, operators = operator_shares(split.train_texts, split.train_labels, params, args.ops)
        total = sum(groups.values())
        print(f"\na second fit under torch.profiler: {wall:,.2f} s wall time, {total:,.2f} s of PyTorch operators "
              f"(self CPU time; the rest of the wall time is outside PyTorch's operators)")
        rows = [[group, f"{groups.get(group, 0.0):,.2f}", f"{groups.get(group, 0.0) / total:.1%}",
                 f"{groups.get(group, 0.0) / wall:.1%}"]
                for group in ("matrix products", "fused attention", "everything else")]
        print(format_table(("group", "seconds", "share of the operators", "share of the fit"), rows, args.markdown,
                           text_columns=(0,)))
        rows = [[name, operator_kind(name), f"{seconds:,.3f}", f"{seconds / total:.1%}"] for name, seconds in operators]
        print(format_table(("operator", "group", "seconds", "share"), rows, args.markdown, text_columns=(0, 1)))
    if args.count_reads:
        reads, steps = count_reads(split.train_texts, split.train_labels, params)
        print(f"\nvalue reads in the training loop (each waits for a GPU): {reads:,} in {steps:,} optimizer steps "
              f"({reads / max(steps, 1):.2f} per step)")


if __name__ == "__main__":
    main()
