"""predict with the n-gram path's shortcut against the full model, and against a same-size BERT.

``AttentionClassifier.predict`` skips the encoder for documents whose class the
n-gram path settles alone (``skattn/_shortcut.py``); ``decision_function`` still
runs both paths on every document. For each dataset this fits one classifier
with the defaults (plus ``--params``), then predicts the evaluation documents
two to five ways (below), best of ``--repeats`` warm calls each, in alternating turns
(``--models DIR`` keeps the fitted models, so that another run predicts with
the same weights, e.g. under other instruction sets, without training again):

- ``predict``: the shortcut, what users call;
- the full model: ``decision_function`` and the largest logit, the same
  computation ``predict`` made before the shortcut;
- with ``--peer``, a Hugging Face ``BertForSequenceClassification`` of the
  fitted encoder's size (float32, skattn's token ids, batches bucketed by
  length as skattn's; random weights, which do not change its speed), the
  ``bert-fp32-bucketed`` peer of ``throughput.py``. Its time includes encoding
  the texts, as skattn's does.

It also reports the share of documents the n-gram path settled and how many
predictions differ from the full model's (none should, beyond exact ties).
With ``--onnx`` (the ``onnx`` extra), the model is also exported with
``to_onnx`` and the ONNX predictor's ``predict`` (the same shortcut) is timed
against its full graph (``decision_function`` and the largest logit).

Run from the repository root::

    python benchmarks/predict_shortcut.py --datasets r8,tweets,zh-reviews --peer --markdown
    python benchmarks/predict_shortcut.py --quick

To see a CPU without bf16 on one that has it, pass ``--params
'{"precision": "int8"}'`` (what ``precision="auto"`` runs there) and limit the
instruction sets as in benchmarks/README.md ("CPUs without native bf16").
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from _common import add_per_dataset_arguments, best_seconds, format_table, run_per_dataset, skattn_params, split_of


class ModelCallCounter:
    """Counts the documents the model runs on, by wrapping ``skattn._base.infer``."""

    def __init__(self):
        import skattn._base

        self.module, self.infer, self.documents = skattn._base, skattn._base.infer, 0

    def __enter__(self):
        def counting_infer(forward, data, *args, **kwargs):
            self.documents += len(data)
            return self.infer(forward, data, *args, **kwargs)

        self.module.infer = counting_infer
        return self

    def __exit__(self, *exc):
        self.module.infer = self.infer


def full_model_predict(classifier, documents):
    """Labels from both paths run on every document: the largest logit of ``decision_function``."""
    scores = classifier.decision_function(documents)
    if scores.ndim == 1:
        return classifier.classes_[(scores > 0).astype(int)]
    return classifier.classes_[scores.argmax(axis=1)]


def bert_peer(classifier):
    """A predict function of a float32 BERT the size of ``classifier``'s encoder, on its token ids."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from skattn._text import PAD_ID, encode, length_batches

    config = classifier.config_
    settings = dict(
        vocab_size=config.vocab_size, hidden_size=config.d_model, num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads, intermediate_size=config.d_ff,
        max_position_embeddings=config.max_length, num_labels=len(classifier.classes_), pad_token_id=PAD_ID,
    )
    try:
        bert = BertForSequenceClassification(BertConfig(**settings, attn_implementation="sdpa"))
    except (TypeError, ValueError, ImportError):  # transformers without SDPA for BERT
        bert = BertForSequenceClassification(BertConfig(**settings))
    bert.eval()

    def predict(documents):
        windows = encode(classifier.tokenizer_, documents, max_length=config.max_length).windows
        lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
        labels = np.empty(len(windows), dtype=np.int64)
        with torch.inference_mode():
            for rows in length_batches(lengths, classifier.batch_size, shuffle=False):
                ids = np.full((len(rows), int(lengths[rows].max())), PAD_ID, dtype=np.int64)
                for slot, row in enumerate(rows):
                    ids[slot, : lengths[row]] = windows[row]
                ids = torch.from_numpy(ids)
                labels[rows] = bert(input_ids=ids, attention_mask=(ids != PAD_ID).long()).logits.argmax(dim=1).numpy()
        return classifier.classes_[labels]

    return predict


def measure(args, dataset):
    """One dataset's row: settled share, agreement, accuracy and docs/s of each way to predict."""
    import torch

    import skattn
    from skattn import AttentionClassifier

    if args.threads:
        torch.set_num_threads(args.threads)
    split = split_of(args, dataset)
    params = {**skattn_params(args, args.max_epochs), **json.loads(args.params)}
    model_file = None if args.models is None else Path(args.models) / f"{dataset}-seed{args.seed}.skattn"
    fit_s = None
    if model_file is not None and model_file.exists():
        classifier = skattn.load(model_file).set_params(**json.loads(args.params))
        classifier._prepare_inference()  # the inference replica of the new precision, made once as after fit
    else:
        started = time.perf_counter()
        classifier = AttentionClassifier(**params).fit(split.train_texts, split.train_labels)
        fit_s = time.perf_counter() - started
        if model_file is not None:
            model_file.parent.mkdir(parents=True, exist_ok=True)
            classifier.save(model_file)
    documents = split.eval_texts
    with ModelCallCounter() as counter:
        started = time.perf_counter()
        predicted = classifier.predict(documents)
        first_s = time.perf_counter() - started
    full = full_model_predict(classifier, documents)
    functions = [classifier.predict, lambda texts: full_model_predict(classifier, texts)]
    if args.peer:
        functions.append(bert_peer(classifier))
    if args.onnx:
        folder = Path(args.models) if args.models else Path(tempfile.mkdtemp(prefix="skattn-onnx-"))
        functions += onnx_predicts(classifier, folder / f"{dataset}-seed{args.seed}.onnx", args.threads)
    seconds = best_seconds(functions, documents, args.repeats)
    row = {
        "dataset": dataset,
        "params": params,
        "eval_docs": len(documents),
        "fit_s": fit_s,
        "settled": 1 - counter.documents / len(documents),
        "changed": int(np.sum(predicted != full)),
        "accuracy": float(accuracy_score(split.eval_labels, predicted)),
        "macro_f1": float(f1_score(split.eval_labels, predicted, average="macro", zero_division=0)),
        "first_predict_docs_per_s": len(documents) / first_s,
        "predict_docs_per_s": len(documents) / seconds[0],
        "full_docs_per_s": len(documents) / seconds[1],
    }
    if args.peer:
        row["peer_docs_per_s"] = len(documents) / seconds[2]
    if args.onnx:
        row["onnx_predict_docs_per_s"] = len(documents) / seconds[-2]
        row["onnx_full_docs_per_s"] = len(documents) / seconds[-1]
        row["onnx_changed"] = int(np.sum(functions[-2](documents) != functions[-1](documents)))
    return row


def onnx_predicts(classifier, path, threads):
    """The ONNX predictor's ``predict`` and its full-graph labels, for ``classifier`` exported to ``path``."""
    import skattn.onnx

    classifier.to_onnx(path)
    predictor = skattn.onnx.load(path, threads=threads or None)
    return [predictor.predict, lambda texts: full_model_predict(predictor, texts)]


def table(rows, markdown):
    peer = all("peer_docs_per_s" in row for row in rows)
    columns = ["dataset", "settled by the n-gram path", "changed predictions", "accuracy", "macro-F1",
               "predict docs/s", "first predict docs/s", "full model docs/s", "predict / full model"]
    if peer:
        columns += ["BERT fp32 bucketed docs/s", "predict / BERT", "full model / BERT"]
    onnx = all("onnx_predict_docs_per_s" in row for row in rows)
    if onnx:
        columns += ["ONNX predict docs/s", "ONNX full graph docs/s", "ONNX predict / full graph",
                    "ONNX predictions changed by the shortcut"]
    cells = []
    for row in rows:
        cell = [
            row["dataset"], f"{row['settled']:.1%}", f"{row['changed']} of {row['eval_docs']:,}",
            f"{row['accuracy']:.2%}", f"{row['macro_f1']:.2%}",
            f"{row['predict_docs_per_s']:,.0f}", f"{row['first_predict_docs_per_s']:,.0f}",
            f"{row['full_docs_per_s']:,.0f}", f"{row['predict_docs_per_s'] / row['full_docs_per_s']:.2f}x",
        ]
        if peer:
            cell += [
                f"{row['peer_docs_per_s']:,.0f}",
                f"{row['predict_docs_per_s'] / row['peer_docs_per_s']:.2f}x",
                f"{row['full_docs_per_s'] / row['peer_docs_per_s']:.2f}x",
            ]
        if onnx:
            cell += [
                f"{row['onnx_predict_docs_per_s']:,.0f}", f"{row['onnx_full_docs_per_s']:,.0f}",
                f"{row['onnx_predict_docs_per_s'] / row['onnx_full_docs_per_s']:.2f}x", str(row["onnx_changed"]),
            ]
        cells.append(cell)
    return format_table(columns, cells, markdown)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="{}", help="JSON of further AttentionClassifier parameters")
    parser.add_argument("--peer", action="store_true",
                        help="also time a same-size Hugging Face BERT in float32 (needs transformers: .[bench])")
    parser.add_argument("--onnx", action="store_true",
                        help="also export the model and time the ONNX predictor, with and without the shortcut "
                             "(the onnx extra; the file goes to --models, else a temporary folder)")
    parser.add_argument("--models", metavar="DIR",
                        help="load each dataset's fitted model from DIR if saved there (with --params applied "
                             "to it, e.g. another precision), else fit it and save it there")
    add_per_dataset_arguments(parser, "warm calls timed per way to predict")
    run_per_dataset(parser, measure, table,
                    lambda args: f"params {args.params}, best of {args.repeats} warm calls")


if __name__ == "__main__":
    main()
