"""The GPU measurement in one step: skattn against a plain Hugging Face loop, MFU, and the suite on CUDA.

Prepared so that a session lent a GPU runs it once (under 6 minutes on an H200)
and pastes the table into the README with the hardware named. A first small
fit and predict warms the process up (its time is printed), so that neither
side pays the one-off imports and first kernel calls:

* R8 and 20 Newsgroups: skattn's default ``fit`` end to end (tokenizer, n-grams,
  training) against ``BertForSequenceClassification`` of the same size, on
  skattn's token ids, for the same epochs, timing its training loop only, in
  each of the peer's usual settings (fp32 with shuffled batches, bf16 autocast,
  bf16 with skattn's length buckets); real (non-padding) tokens per second.
* R8 ``predict``: the first call after ``fit`` and the second (warm), and
  ``decision_function`` (both paths on every document, no n-gram shortcut);
  both again with inference batches of 128 and 512 documents instead of the
  default 32 (the peer's are 256), each after an untimed call at that size;
  against the peer's model-only inference; peak GPU memory of each fit.
* MFU at BERT-base size (d_model 768, 12 layers, 12 heads, d_ff 3072, 512
  tokens, batch 32): one epoch of ``AttentionClassifier`` (encoder only) on 20
  Newsgroups documents, useful training FLOP/s over the bf16 matmul rate
  measured in the same run (8192 x 8192 products).
* The test suite, run on CUDA (``python -m pytest -x -q``), its last lines.

Run from the repository root (the bench extra installed)::

    python benchmarks/gpu.py                           # on a CUDA machine
    python benchmarks/gpu.py --dry-run                 # on any machine: tiny sizes, no suite, to check the script
    python benchmarks/gpu.py --output gpu.json --markdown
"""

import argparse
import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _common import cpu_model, format_table, load_split, package_version

ROOT = Path(__file__).resolve().parents[1]
PEER_SETTINGS = (("fp32", "random"), ("bf16", "random"), ("bf16", "bucketed"))
INFERENCE_BATCH_SIZES = (128, 512)  # predict and decision_function again with these batch sizes, beside the default's
BERT_BASE = dict(d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_length=512, batch_size=32)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--data-dir", help="folder holding the dataset folders (default: shared/data beside the repository)")
    add("--dry-run", action="store_true",
        help="tiny subsets and model on whatever device there is; skips the suite: checks the script, not speed")
    add("--mfu-docs", type=int, default=3000, help="20 Newsgroups documents of the BERT-base-size epoch")
    add("--suite-timeout", type=int, default=240, help="seconds allowed to the test suite on CUDA")
    add("--skip-suite", action="store_true")
    add("--markdown", action="store_true")
    add("--output", help="write the raw results as JSON to this file")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.dry_run:
        sys.exit("No CUDA device: run on a GPU machine, or pass --dry-run to check the script here.")
    sizes = dict(max_docs=300, max_eval_docs=200) if args.dry_run else {}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    print(f"device: {name}; torch {torch.__version__}, skattn {package_version('skattn')}, "
          f"transformers {package_version('transformers')}")
    results = {"device": name, "datasets": {}}
    results["matmul_tflops"] = matmul_tflops(device, size=1024 if args.dry_run else 8192)
    print(f"bf16 matmul ceiling: {results['matmul_tflops']:.1f} TFLOP/s")
    results["warm_up_s"] = warm_up(device, args.data_dir)
    print(f"warm-up: a first small fit and predict took {results['warm_up_s']:.1f} s (one-off imports, e.g. "
          f"torch._dynamo by PyTorch's first optimizer, and first kernels); every row below is timed after it")
    for dataset in ("r8", "20ng"):
        split = load_split(dataset, data_dir=args.data_dir, **sizes)
        epochs = 1 if args.dry_run else None
        results["datasets"][dataset] = compare_on(split, device, epochs, with_predict=dataset == "r8")
    results["mfu"] = bert_base_mfu(args, device, results["matmul_tflops"])
    if not (args.dry_run or args.skip_suite):
        results["suite"] = run_suite(args.suite_timeout)
    report(results, args.markdown)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))


# -- measurements ---------------------------------------------------------------------


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device, size):
    """bf16 ``size x size`` matrix products per second, in TFLOP/s."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    synchronize(device)
    count, started = 0, time.perf_counter()
    while count < 5 or time.perf_counter() - started < 1.0:
        a @ b
        count += 1
    synchronize(device)
    return 2 * size**3 * count / (time.perf_counter() - started) / 1e12


def warm_up(device, data_dir):
    """Seconds of a first small fit and predict, so that no row pays a process's one-off costs.

    Without it skattn's first fit, timed before the peer's loops, would pay
    them alone: importing ``torch._dynamo`` (PyTorch does so when the first
    optimizer of a process is built, about a second), and the first calls
    of each kernel.
    """
    from skattn import AttentionClassifier

    split = load_split("r8", data_dir=data_dir, max_docs=200, max_eval_docs=50)
    started = time.perf_counter()
    classifier = AttentionClassifier(max_epochs=1, device=str(device), random_state=0)
    classifier.fit(split.train_texts, split.train_labels).predict(split.eval_texts)
    synchronize(device)
    return time.perf_counter() - started


def compare_on(split, device, epochs, with_predict):
    """skattn's default fit (and predict) against the peer's loop on the same token ids."""
    from skattn import AttentionClassifier

    params = {"random_state": 0, "device": str(device)}
    if epochs:
        params["max_epochs"] = epochs
    classifier = AttentionClassifier(**params)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    classifier.fit(split.train_texts, split.train_labels)
    synchronize(device)
    fit_s = time.perf_counter() - started
    row = {
        "fit_s": fit_s,
        "tokens_per_s": classifier.n_tokens_seen_ / fit_s,
        "epochs": classifier.n_iter_,
        "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }
    if with_predict:
        for call in ("first", "warm"):
            started = time.perf_counter()
            predictions = classifier.predict(split.eval_texts)
            row[f"predict_{call}_docs_per_s"] = len(split.eval_texts) / (time.perf_counter() - started)
        row["accuracy"] = float(np.mean(predictions == split.eval_labels))
        # Both paths on every document, as predict ran before it skipped the encoder where the n-gram path settles.
        started = time.perf_counter()
        classifier.decision_function(split.eval_texts)
        row["full_model_docs_per_s"] = len(split.eval_texts) / (time.perf_counter() - started)
        # batch_size is also the inference batch: on a CPU the default beats larger ones; is it so on a GPU?
        default_batch_size = classifier.batch_size
        for batch_size in INFERENCE_BATCH_SIZES:
            classifier.set_params(batch_size=batch_size)
            for method in ("predict", "decision_function"):
                call = partial(getattr(classifier, method), split.eval_texts)
                call()  # untimed: the first call at a new size grows the allocator's pools
                started = time.perf_counter()
                call()
                row[f"{method}_warm_docs_per_s_batch_{batch_size}"] = len(split.eval_texts) / (time.perf_counter() - started)
        classifier.set_params(batch_size=default_batch_size)
    peers = {}
    for precision, batching in PEER_SETTINGS:
        peers[f"{precision}-{batching}"] = peer_run(classifier, split, device, precision, batching, with_predict)
    return {"skattn": row, "peer": peers, "train_docs": len(split.train_texts)}


def token_ids(classifier, texts):
    from skattn._text import encode

    encoded = encode(classifier.tokenizer_, list(texts), max_length=classifier.max_length)
    return list(encoded.windows)


def peer_batches(lengths, batch_size, batching, rng):
    from skattn._text import length_batches

    if batching == "bucketed":
        return length_batches(lengths, batch_size, shuffle=rng is not None, generator=rng)
    order = rng.permutation(len(lengths)) if rng is not None else np.argsort(lengths)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padded(ids, rows, device):
    width = max(len(ids[i]) for i in rows)
    batch = np.zeros((len(rows), width), dtype=np.int64)  # skattn's PAD_ID is 0
    for row, index in enumerate(rows):
        batch[row, : len(ids[index])] = ids[index]
    return torch.from_numpy(batch).to(device, non_blocking=True)


def peer_run(classifier, split, device, precision, batching, with_predict):
    """A same-size BERT trained from scratch on skattn's token ids: loop time and real tokens/s."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=classifier.config_.vocab_size, hidden_size=classifier.d_model,
        num_hidden_layers=classifier.n_layers, num_attention_heads=classifier.n_heads,
        intermediate_size=classifier.d_ff, max_position_embeddings=classifier.max_length,
        num_labels=len(classifier.classes_), pad_token_id=0, attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=classifier.learning_rate, fused=device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    ids = token_ids(classifier, split.train_texts)
    lengths = np.array([len(x) for x in ids])
    targets = torch.as_tensor(np.searchsorted(classifier.classes_, split.train_labels), device=device)
    rng = np.random.default_rng(0)
    model.train()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(classifier.n_iter_):
        for rows in peer_batches(lengths, classifier.batch_size, batching, rng):
            batch = padded(ids, rows, device)
            with autocast:
                logits = model(input_ids=batch, attention_mask=(batch != 0).long()).logits
            loss = F.cross_entropy(logits.float(), targets[torch.as_tensor(rows, device=device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    synchronize(device)
    loop_s = time.perf_counter() - started
    result = {"loop_s": loop_s, "tokens_per_s": classifier.n_iter_ * lengths.sum() / loop_s}
    if with_predict:
        model.eval()
        test_ids = token_ids(classifier, split.eval_texts)
        test_lengths = np.array([len(x) for x in test_ids])
        started = time.perf_counter()
        with torch.inference_mode(), autocast:
            for rows in peer_batches(test_lengths, 256, "bucketed", None):
                batch = padded(test_ids, rows, device)
                model(input_ids=batch, attention_mask=(batch != 0).long()).logits.argmax(1).cpu()
        result["predict_docs_per_s"] = len(test_ids) / (time.perf_counter() - started)
    del model, optimizer
    return result


def bert_base_mfu(args, device, ceiling_tflops):
    """One epoch at BERT-base size: useful FLOP/s over the bf16 matmul ceiling."""
    from skattn import AttentionClassifier

    shape = dict(BERT_BASE, d_model=64, n_layers=2, n_heads=2, d_ff=128, max_length=128) if args.dry_run else BERT_BASE
    split = load_split("20ng", data_dir=args.data_dir, max_docs=200 if args.dry_run else args.mfu_docs)
    epochs = []

    def record(event):
        if event.kind == "epoch":
            epochs.append((event.seconds, event.tokens))

    classifier = AttentionClassifier(**shape, max_epochs=1, ngram_range=None, precision="bf16",
                                     device=str(device), random_state=0, callbacks=[record])
    classifier.fit(split.train_texts, split.train_labels)
    seconds, tokens = epochs[-1]
    n_weights = shape["n_layers"] * (4 * shape["d_model"] ** 2 + 2 * shape["d_model"] * shape["d_ff"])
    mean_length = tokens / len(split.train_texts)
    flops_per_token = 6 * n_weights + 12 * shape["n_layers"] * mean_length * shape["d_model"]
    achieved = tokens * flops_per_token / seconds / 1e12
    return {"shape": shape, "epoch_s": seconds, "tokens": tokens, "tflops": achieved,
            "mfu": achieved / ceiling_tflops}


def run_suite(timeout):
    """The test suite on this machine (CUDA visible): return code and its last lines."""
    started = time.perf_counter()
    try:
        completed = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"],
                                   cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        tail, code = (completed.stdout + completed.stderr).strip().splitlines()[-15:], completed.returncode
    except subprocess.TimeoutExpired as expired:
        tail, code = [f"timed out after {timeout} s"] + (expired.stdout or b"").decode()[-2000:].splitlines(), None
    return {"returncode": code, "seconds": time.perf_counter() - started, "tail": tail}


# -- report ---------------------------------------------------------------------------


def rate(value):
    """A measured rate as a table cell; blank where that row measured none."""
    return "" if value is None else f"{value:,.0f}"


def report(results, markdown):
    cells = []
    for dataset, result in results["datasets"].items():
        own = result["skattn"]
        best_peer = max(result["peer"].values(), key=lambda peer: peer["tokens_per_s"])
        for label, peer in result["peer"].items():
            cells.append([dataset, f"BERT {label} (loop only)", f"{peer['loop_s']:.1f}", f"{peer['tokens_per_s']:,.0f}",
                          rate(peer.get("predict_docs_per_s")), "", ""])
        cells.append([dataset, f"skattn default ({own['epochs']} epochs, end to end)", f"{own['fit_s']:.1f}",
                      f"{own['tokens_per_s']:,.0f} ({own['tokens_per_s'] / best_peer['tokens_per_s']:.2f}x best peer)",
                      rate(own.get("predict_warm_docs_per_s")),
                      rate(own.get("predict_first_docs_per_s")),
                      "" if own["peak_mib"] is None else f"{own['peak_mib']:,.0f}"])
        if "full_model_docs_per_s" in own:
            cells.append([dataset, "skattn decision_function (both paths on every document, warm)", "", "",
                          f"{own['full_model_docs_per_s']:,.0f}", "", ""])
        for batch_size in INFERENCE_BATCH_SIZES:
            for method in ("predict", "decision_function"):
                key = f"{method}_warm_docs_per_s_batch_{batch_size}"
                if key in own:
                    cells.append([dataset, f"skattn {method}, inference batch_size={batch_size} (warm, after one untimed call)",
                                  "", "", f"{own[key]:,.0f}", "", ""])
    columns = ("dataset", "row", "train s", "real tokens/s", "predict docs/s (warm)", "first predict docs/s",
               "peak GPU MiB")
    print()
    print(format_table(columns, cells, markdown, text_columns=(0, 1)))
    mfu = results["mfu"]
    print(f"\nBERT-base-size epoch ({mfu['tokens']:,} tokens): {mfu['epoch_s']:.1f} s, {mfu['tflops']:.1f} TFLOP/s "
          f"useful, MFU {mfu['mfu']:.1%} of the {results['matmul_tflops']:.0f} TFLOP/s bf16 matmul ceiling")
    if "suite" in results:
        suite = results["suite"]
        print(f"\ntest suite on CUDA: return code {suite['returncode']} in {suite['seconds']:.0f} s")
        print("\n".join(suite["tail"][-3:]))


if __name__ == "__main__":
    main()
