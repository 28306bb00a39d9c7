"""Training and inference throughput of skattn next to PyTorch and Hugging Face peers.

Every row trains the same architecture (4 layers, d_model 256, 4 heads, d_ff 1024,
up to 256 tokens, batches of 32) on the same token ids for one timed epoch, then
classifies the test split. Each row runs in a subprocess of its own so that its
peak resident memory is its own. See benchmarks/README.md for what each row and
column means.

Run from the repository root::

    python benchmarks/throughput.py --quick          # about a minute
    python benchmarks/throughput.py                  # full R8
    python benchmarks/throughput.py --dataset 20ng --markdown
"""

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext, redirect_stderr
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from torch.nn import functional as F

import skattn
from skattn import AttentionClassifier
from skattn._text import PAD_ID, encode, length_batches, train_tokenizer
from skattn._devices import cpu_has_native_bf16

from _common import cpu_model, load_tsv, peak_rss_mib

D_MODEL, N_LAYERS, N_HEADS, D_FF = 256, 4, 4, 1024
MAX_LENGTH = 256
BATCH_SIZE = 32
DROPOUT = 0.1
LEARNING_RATE = 1e-3
QUICK_TRAIN_DOCS, QUICK_TEST_DOCS = 300, 200
RESULT_PREFIX = "ROW-RESULT "


@dataclass(frozen=True)
class Row:
    """One benchmarked training and inference setup."""

    name: str
    framework: str  # "skattn", "bert" or "torch"
    precision: str  # "fp32" or "bf16"
    batching: str  # "bucketed", "random" (pad to longest) or "fixed" (pad to MAX_LENGTH)
    summary: str
    activation: str = None  # skattn rows: the feed-forward activation; None for skattn's default


ROWS = (
    Row("skattn-bf16", "skattn", "bf16", "bucketed", "AttentionClassifier(precision='bf16').fit, .predict"),
    Row(
        "skattn-bf16-gelu", "skattn", "bf16", "bucketed",
        "AttentionClassifier(precision='bf16', activation='gelu'): the peers' activation", activation="gelu",
    ),
    Row("skattn-fp32", "skattn", "fp32", "bucketed", "AttentionClassifier(precision='fp32').fit, .predict"),
    Row(
        "bert-typical", "bert", "fp32", "random",
        "BertForSequenceClassification, fp32, shuffled batches padded to their longest",
    ),
    Row(
        "bert-tricks", "bert", "bf16", "bucketed",
        "BertForSequenceClassification, bf16 autocast, skattn's length buckets, no attention dropout",
    ),
    Row("torch-padded", "torch", "fp32", "fixed", "nn.TransformerEncoder (pre-LN, GELU), fp32, pad to 256"),
)
ROW_NAMES = tuple(row.name for row in ROWS)


# -- command line ---------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--dataset", default="r8", choices=("r8", "20ng"))
    add("--data-dir", help="folder holding r8/ and 20ng/ (default: shared/data beside the repository)")
    add("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    add("--quick", action="store_true",
        help=f"{QUICK_TRAIN_DOCS} training and {QUICK_TEST_DOCS} test documents, short matmul timing")
    add("--max-docs", type=int, help="use at most this many training documents")
    add("--max-test-docs", type=int, help="use at most this many test documents")
    add("--warmup-batches", type=int, default=3, help="untimed training batches before each timed epoch")
    add("--rows", default=",".join(ROW_NAMES), help=f"comma-separated subset of {', '.join(ROW_NAMES)}")
    add("--seed", type=int, default=0)
    add("--repeats", type=int, default=1,
        help="run the rows this many times, in turn, and keep each row's best times")
    add("--markdown", action="store_true", help="print a markdown table")
    # Internal: run one row in this process and print its result as JSON.
    add("--row", help=argparse.SUPPRESS)
    add("--tokenizer-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.max_docs = args.max_docs or QUICK_TRAIN_DOCS
        args.max_test_docs = args.max_test_docs or QUICK_TEST_DOCS
    args.matmul_seconds = 0.3 if args.quick else 2.0
    unknown = set(args.rows.split(",")) - set(ROW_NAMES)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(ROW_NAMES)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.row is not None:
        run_child(args)
    else:
        sys.exit(run_parent(args))


# -- data -----------------------------------------------------------------------


@dataclass
class Workload:
    """The documents every row trains and predicts on."""

    train_texts: list
    train_labels: np.ndarray  # str labels, as given to AttentionClassifier.fit
    test_texts: list
    classes: np.ndarray

    @property
    def train_targets(self):
        """Training labels as class indices, for the peers."""
        return np.searchsorted(self.classes, self.train_labels).astype(np.int64)


def load_workload(args):
    """Load the dataset and keep a seeded random subset of ``--max-docs`` documents."""
    rng = np.random.default_rng(args.seed)
    train = _subset(*load_tsv(args.dataset, "train", args.data_dir), args.max_docs, rng)
    test = _subset(*load_tsv(args.dataset, "test", args.data_dir), args.max_test_docs, rng)
    (train_texts, train_labels), (test_texts, _) = train, test
    train_labels = np.asarray(train_labels)
    return Workload(train_texts, train_labels, test_texts, np.unique(train_labels))


def _subset(texts, labels, limit, rng):
    if limit is None or limit >= len(texts):
        return texts, labels
    keep = np.sort(rng.choice(len(texts), size=limit, replace=False))
    return [texts[i] for i in keep], [labels[i] for i in keep]


def fit_tokenizer(texts):
    """Train the tokenizer AttentionClassifier would train, with its default settings."""
    defaults = AttentionClassifier().get_params()
    return train_tokenizer(
        texts,
        kind=defaults["tokenizer"],
        vocab_size=defaults["vocab_size"],
        lowercase=defaults["lowercase"],
    )


def token_ids(tokenizer, texts):
    """One int32 array of token ids per text, truncated to ``MAX_LENGTH``.

    """
    return list(encode(tokenizer, texts, max_length=MAX_LENGTH).windows)


def lengths_of(ids):
    return np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))


# -- batching and FLOP accounting -------------------------------------------------


def make_batches(batching, lengths, *, rng=None):
    """Indices of each batch; random order with ``rng``, document order without."""
    if batching == "bucketed":
        return length_batches(lengths, BATCH_SIZE, shuffle=rng is not None, generator=rng)
    order = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
    return [order[i : i + BATCH_SIZE] for i in range(0, len(order), BATCH_SIZE)]


def batch_width(batching, lengths):
    """Padded length of a batch of sequences of ``lengths``."""
    return MAX_LENGTH if batching == "fixed" else int(max(lengths))


def padded_batch(ids, rows, width):
    """Token ids of ``rows`` right-padded to ``width``, as a (batch, width) tensor."""
    batch = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    for row, index in enumerate(rows):
        batch[row, : len(ids[index])] = ids[index]
    return torch.from_numpy(batch)


def non_embedding_parameters():
    """Weights of the transformer blocks' matrix multiplications (N in 6N)."""
    return N_LAYERS * (4 * D_MODEL * D_MODEL + 2 * D_MODEL * D_FF)


def training_flops_per_token(seq_len):
    """Forward plus backward FLOPs of one token in a sequence of ``seq_len``."""
    return 6 * non_embedding_parameters() + 12 * N_LAYERS * seq_len * D_MODEL


def epoch_flops(lengths, shapes):
    """Useful and executed training FLOPs of one epoch.

    Useful FLOPs count each document at its real length; executed FLOPs count
    every position of each padded ``(batch, width)`` batch in ``shapes``.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    useful = float(np.sum(lengths * training_flops_per_token(lengths)))
    executed = float(sum(n * width * training_flops_per_token(width) for n, width in shapes))
    return useful, executed


def epoch_result(lengths, batches, batching, epoch_s):
    """Training part of a row's result, from the batches of its timed epoch."""
    shapes = [(len(rows), batch_width(batching, lengths[rows])) for rows in batches]
    useful, executed = epoch_flops(lengths, shapes)
    return {
        "epoch_s": epoch_s,
        "real_tokens": int(lengths.sum()),
        "padded_tokens": int(sum(n * width for n, width in shapes)),
        "useful_flops": useful,
        "executed_flops": executed,
    }


def autocast_for(precision):
    if precision == "bf16":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return nullcontext()


# -- skattn rows -------------------------------------------------------------------

_EPOCH_LINE = re.compile(r"epoch 1/1 .*?([\d,]+) tokens/s")


def skattn_params(row, seed):
    activation = {} if row.activation is None else {"activation": row.activation}
    return dict(
        **activation,
        d_model=D_MODEL,
        n_layers=N_LAYERS,
        n_heads=N_HEADS,
        d_ff=D_FF,
        max_length=MAX_LENGTH,
        batch_size=BATCH_SIZE,
        dropout=DROPOUT,
        learning_rate=LEARNING_RATE,
        precision=row.precision,
        device="cpu",
        random_state=seed,
    )


def run_skattn(row, work, tokenizer, args):
    """Time one epoch of ``AttentionClassifier.fit`` and a ``predict`` on the test split.

    The epoch time comes from fit's own verbose line, which times exactly the
    epoch loop (tokenizer training and encoding excluded).
    """
    params = skattn_params(row, args.seed)
    warm = slice(0, args.warmup_batches * BATCH_SIZE)
    if args.warmup_batches and len(set(work.train_labels[warm])) > 1:
        AttentionClassifier(**params, max_epochs=1).fit(work.train_texts[warm], work.train_labels[warm])

    clf = AttentionClassifier(**params, max_epochs=1, verbose=1)
    log = io.StringIO()
    with redirect_stderr(log):
        clf.fit(work.train_texts, work.train_labels)
    if clf.tokenizer_.get_vocab() != tokenizer.get_vocab():
        raise RuntimeError("skattn trained a different tokenizer than the one the peers use.")
    lengths = lengths_of(token_ids(clf.tokenizer_, work.train_texts))
    match = _EPOCH_LINE.search(log.getvalue())
    if match is None:
        raise RuntimeError(f"No epoch line in AttentionClassifier's verbose output:\n{log.getvalue()}")
    # The line's tokens/s counts non-padding tokens over the epoch's perf_counter
    # time; dividing gives more digits than its rounded seconds field.
    epoch_s = lengths.sum() / float(match.group(1).replace(",", ""))
    # fit drew its batches from the generator _seeds() returns; replaying it
    # recovers their shapes for the padded-token and FLOP counts.
    rng, _ = clf._seeds()
    batches = make_batches(row.batching, lengths, rng=rng)
    result = epoch_result(lengths, batches, row.batching, epoch_s)

    result.update(time_inference(lambda: clf.predict(work.test_texts)))
    return result


def time_inference(predict):
    """Seconds of a first (cold) and a second (warm) call of ``predict``.

    The first call also pays one-time costs: oneDNN compiles kernels for
    each new matrix shape. (skattn builds its bfloat16 inference replica at
    the end of ``fit``, so the fit time includes it.)
    """
    times = []
    for _ in range(2):
        started = time.perf_counter()
        predict()
        times.append(time.perf_counter() - started)
    return {"first_infer_s": times[0], "infer_s": times[1]}


# -- peer rows -----------------------------------------------------------------------


class BertLogits(nn.Module):
    """``BertForSequenceClassification`` called on padded ids, returning logits."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, ids):
        return self.bert(input_ids=ids, attention_mask=(ids != PAD_ID).long()).logits


class PaddedTransformer(nn.Module):
    """Embeddings, ``nn.TransformerEncoder``, mean pooling over real tokens, linear head."""

    def __init__(self, vocab_size, n_classes):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, D_MODEL, padding_idx=PAD_ID)
        self.position_embedding = nn.Embedding(MAX_LENGTH, D_MODEL)
        layer = nn.TransformerEncoderLayer(
            D_MODEL, N_HEADS, D_FF, DROPOUT, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, N_LAYERS, norm=nn.LayerNorm(D_MODEL), enable_nested_tensor=False
        )
        self.head = nn.Linear(D_MODEL, n_classes)

    def forward(self, ids):
        keep = ids != PAD_ID  # (batch, seq)
        positions = torch.arange(ids.shape[1], device=ids.device)  # (seq,)
        x = self.token_embedding(ids) + self.position_embedding(positions)  # (batch, seq, d_model)
        hidden = self.encoder(x, src_key_padding_mask=~keep)  # (batch, seq, d_model)
        weights = keep.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)  # (batch, d_model)
        return self.head(pooled)  # (batch, n_classes)


def build_bert(row, vocab_size, n_classes):
    """A from-scratch BERT of the benchmark's size; the 'tricks' variant drops attention dropout."""
    from transformers import BertConfig, BertForSequenceClassification

    settings = dict(
        vocab_size=vocab_size,
        hidden_size=D_MODEL,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        intermediate_size=D_FF,
        max_position_embeddings=MAX_LENGTH,
        num_labels=n_classes,
        pad_token_id=PAD_ID,
        hidden_dropout_prob=DROPOUT,
        attention_probs_dropout_prob=0.0 if row.batching == "bucketed" else DROPOUT,
    )
    try:
        bert = BertForSequenceClassification(BertConfig(**settings, attn_implementation="sdpa"))
    except (TypeError, ValueError, ImportError):  # transformers without SDPA for BERT
        bert = BertForSequenceClassification(BertConfig(**settings))
    return BertLogits(bert), bert.config._attn_implementation


def train_peer(model, ids, targets, row, rng, warmup_batches):
    """Train ``model`` for one timed epoch after ``warmup_batches`` untimed steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    autocast = autocast_for(row.precision)
    lengths = lengths_of(ids)

    def step(rows):
        batch = padded_batch(ids, rows, batch_width(row.batching, lengths[rows]))
        with autocast:
            logits = model(batch)  # (batch, n_classes)
        loss = F.cross_entropy(logits.float(), torch.from_numpy(targets[rows]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    model.train()
    for rows in make_batches(row.batching, lengths, rng=rng)[:warmup_batches]:
        step(rows)
    batches = make_batches(row.batching, lengths, rng=rng)
    started = time.perf_counter()
    for rows in batches:
        step(rows)
    return epoch_result(lengths, batches, row.batching, time.perf_counter() - started)


def predict_peer(model, tokenizer, texts, row):
    """Encode and classify ``texts`` with the row's batching and precision."""
    model.eval()
    with torch.inference_mode(), autocast_for(row.precision):
        ids = token_ids(tokenizer, texts)
        lengths = lengths_of(ids)
        predictions = np.empty(len(ids), dtype=np.int64)
        for rows in make_batches(row.batching, lengths):
            batch = padded_batch(ids, rows, batch_width(row.batching, lengths[rows]))
            predictions[rows] = model(batch).argmax(dim=1).numpy()
    return predictions


def run_peer(row, work, tokenizer, args):
    """Train a peer model from scratch on skattn's token ids, then time its inference."""
    torch.manual_seed(args.seed)
    vocab_size, n_classes = tokenizer.get_vocab_size(), len(work.classes)
    if row.framework == "bert":
        model, attention = build_bert(row, vocab_size, n_classes)
    else:
        model, attention = PaddedTransformer(vocab_size, n_classes), "nn.MultiheadAttention"
    ids = token_ids(tokenizer, work.train_texts)
    rng = np.random.default_rng(args.seed)
    result = train_peer(model, ids, work.train_targets, row, rng, args.warmup_batches)

    result.update(time_inference(lambda: predict_peer(model, tokenizer, work.test_texts, row)))
    result["attention"] = attention
    return result


# -- one row per process ----------------------------------------------------------------


def run_child(args):
    """Run the row ``args.row`` (or just load the data for ``baseline``) and print JSON."""
    work = load_workload(args)
    tokenizer = Tokenizer.from_file(args.tokenizer_file)
    result = {}
    if args.row != "baseline":
        row = next(r for r in ROWS if r.name == args.row)
        runner = run_skattn if row.framework == "skattn" else run_peer
        result = runner(row, work, tokenizer, args)
        result["test_docs"] = len(work.test_texts)
    result["peak_rss_mib"] = peak_rss_mib()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def spawn_row(name, args, tokenizer_file):
    """Run one row in a fresh interpreter; return its result dict, or None if it failed."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--row", name,
        "--tokenizer-file", str(tokenizer_file),
        "--dataset", args.dataset,
        "--threads", str(args.threads),
        "--warmup-batches", str(args.warmup_batches),
        "--seed", str(args.seed),
    ]
    optional = {
        "--data-dir": args.data_dir,
        "--max-docs": args.max_docs,
        "--max-test-docs": args.max_test_docs,
    }
    for flag, value in optional.items():
        if value is not None:
            command += [flag, str(value)]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    print(f"row {name} failed (exit status {completed.returncode}); see its stderr above.", file=sys.stderr)
    return None


# -- hardware ---------------------------------------------------------------------------


def matmul_gflops(dtype, seconds, shape=(2048, 2048, 2048)):
    """Measured GFLOP/s of ``(m, k) @ (k, n)`` matrix products in ``dtype``."""
    m, k, n = shape
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    count, started = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - started) / 1e9


# The feed-forward's first product for a batch of 32 documents of 128 tokens.
MODEL_SHAPE = (BATCH_SIZE * 128, D_MODEL, D_FF)


# -- the parent: run every row and print the table ----------------------------------------


def run_parent(args):
    load_average = os.getloadavg()[0]
    work = load_workload(args)
    started = time.perf_counter()
    tokenizer = fit_tokenizer(work.train_texts)
    tokenizer_s = time.perf_counter() - started
    lengths = lengths_of(token_ids(tokenizer, work.train_texts))
    ceilings = {
        "fp32": matmul_gflops(torch.float32, args.matmul_seconds),
        "bf16": matmul_gflops(torch.bfloat16, args.matmul_seconds),
    }
    model_shaped = {
        precision: matmul_gflops(dtype, args.matmul_seconds / 2, MODEL_SHAPE)
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }

    rows = [row for row in ROWS if row.name in args.rows.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_file = Path(scratch) / "tokenizer.json"
        tokenizer.save(str(tokenizer_file))
        baseline = spawn_row("baseline", args, tokenizer_file)
        runs = {row.name: [] for row in rows}
        for repeat in range(args.repeats):
            for row in rows:
                print(f"running {row.name} ({repeat + 1}/{args.repeats}) ...", file=sys.stderr, flush=True)
                runs[row.name].append(spawn_row(row.name, args, tokenizer_file))
        results = {name: best_of(row_runs) for name, row_runs in runs.items()}

    facts = {
        "work": work,
        "load_average": load_average,
        "vocab_size": tokenizer.get_vocab_size(),
        "lengths": lengths,
        "tokenizer_s": tokenizer_s,
        "ceilings": ceilings,
        "model_shaped": model_shaped,
        "baseline_mib": baseline["peak_rss_mib"] if baseline else float("nan"),
    }
    print_report(args, facts, rows, results)
    return 0 if all(results.values()) else 1


def best_of(runs):
    """One result from repeated runs of a row: the least time of each kind, the largest peak RSS.

    Runs of a row differ only in timing (same seed, same batches), and on a
    shared machine noise only ever adds time. None if any run failed.
    """
    if not runs or any(run is None for run in runs):
        return None
    best = dict(runs[0])
    for key in ("epoch_s", "infer_s", "first_infer_s"):
        best[key] = min(run[key] for run in runs)
    best["peak_rss_mib"] = max(run["peak_rss_mib"] for run in runs)
    return best


def reference_row(rows, results):
    """The skattn row that ``precision='auto'`` would pick here, else any skattn row that ran."""
    auto = "bf16" if cpu_has_native_bf16() else "fp32"
    candidates = [r for r in rows if r.framework == "skattn" and results.get(r.name)]
    candidates.sort(key=lambda r: r.precision != auto)
    return candidates[0] if candidates else None


def package_version(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def header_lines(args, facts):
    """Hardware, software, data and model, printed above the table."""
    work, lengths, ceilings = facts["work"], facts["lengths"], facts["ceilings"]
    return [
        f"CPU: {cpu_model()}; {os.cpu_count()} logical cores, {len(os.sched_getaffinity(0))} usable; "
        f"native bf16 (AVX512-BF16/AMX): {'yes' if cpu_has_native_bf16() else 'no'}; "
        f"load average at start {facts['load_average']:.1f}",
        f"torch {torch.__version__}, transformers {package_version('transformers')}, "
        f"skattn {skattn.__version__}; torch threads {args.threads}",
        f"Matmul ceiling (2048x2048): fp32 {ceilings['fp32']:,.0f} GFLOP/s, "
        f"bf16 {ceilings['bf16']:,.0f} GFLOP/s; at the model's feed-forward shape "
        f"({'x'.join(map(str, MODEL_SHAPE))}): fp32 {facts['model_shaped']['fp32']:,.0f}, "
        f"bf16 {facts['model_shaped']['bf16']:,.0f} GFLOP/s",
        f"Data: {args.dataset}, {len(work.train_texts)} training docs ({lengths.sum():,} tokens, "
        f"mean {lengths.mean():.0f}, {np.mean(lengths == MAX_LENGTH):.0%} truncated at {MAX_LENGTH}), "
        f"{len(work.test_texts)} test docs, {len(work.classes)} classes; vocab {facts['vocab_size']:,} "
        f"(tokenizer trained in {facts['tokenizer_s']:.1f} s)",
        f"Model: d_model {D_MODEL}, {N_LAYERS} layers, {N_HEADS} heads, d_ff {D_FF}, batch {BATCH_SIZE}, "
        f"dropout {DROPOUT}; N = {non_embedding_parameters() / 1e6:.2f} M block weights; "
        f"training FLOPs/token = 6N + 12*layers*seq*d_model",
        f"One timed epoch per row after {args.warmup_batches} warm-up batches; "
        f"best of {args.repeats} run(s) per row, rows taking turns; peak RSS of a child "
        f"that only loads the data: {facts['baseline_mib']:,.0f} MiB",
    ]


def table_rows(rows, results, ceilings, reference):
    """The table's cells, one list of strings per row."""
    ref = results[reference.name] if reference else None
    cells = []
    for row in rows:
        result = results.get(row.name)
        if result is None:
            cells.append([row.name, row.precision, row.batching] + ["failed"] + ["-"] * (len(COLUMNS) - 4))
            continue
        epoch_s, ceiling = result["epoch_s"], ceilings[row.precision] * 1e9
        tokens_per_s = result["real_tokens"] / epoch_s
        docs_per_s = result["test_docs"] / result["infer_s"]
        cold_docs_per_s = result["test_docs"] / result["first_infer_s"]
        train_ratio = infer_ratio = cold_ratio = "-"
        if ref:
            train_ratio = f"{(ref['real_tokens'] / ref['epoch_s']) / tokens_per_s:.2f}"
            infer_ratio = f"{(ref['test_docs'] / ref['infer_s']) / docs_per_s:.2f}"
            cold_ratio = f"{(ref['test_docs'] / ref['first_infer_s']) / cold_docs_per_s:.2f}"
        cells.append([
            row.name,
            row.precision,
            row.batching,
            f"{epoch_s:.2f}",
            f"{tokens_per_s:,.0f}",
            f"{result['padded_tokens'] / epoch_s:,.0f}",
            f"{1 - result['real_tokens'] / result['padded_tokens']:.0%}",
            f"{result['useful_flops'] / epoch_s / ceiling:.1%}",
            f"{result['executed_flops'] / epoch_s / ceiling:.1%}",
            f"{docs_per_s:,.0f}",
            f"{cold_docs_per_s:,.0f}",
            f"{result['peak_rss_mib']:,.0f}",
            train_ratio,
            infer_ratio,
            cold_ratio,
        ])
    return cells


COLUMNS = (
    "row", "prec", "batches", "s/epoch", "real tok/s", "padded tok/s", "pad",
    "MFU", "MFU(pad)", "infer docs/s", "1st infer docs/s", "peak RSS MiB", "train x", "infer x", "1st infer x",
)


def format_table(cells, markdown):
    """Aligned plain-text table, or a markdown table."""
    n_text = 3  # left-aligned leading columns; the rest are numbers
    if markdown:
        rule = ["---"] * n_text + ["---:"] * (len(COLUMNS) - n_text)
        return "\n".join("| " + " | ".join(values) + " |" for values in [COLUMNS, rule, *cells])
    widths = [max(len(values[i]) for values in [COLUMNS, *cells]) for i in range(len(COLUMNS))]

    def line(values):
        return "  ".join(
            value.ljust(width) if i < n_text else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths))
        )

    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *(line(values) for values in cells)])


def print_report(args, facts, rows, results):
    """Print the header, the table and a legend of the rows."""
    reference = reference_row(rows, results)
    bullet = "- " if args.markdown else ""
    print()
    for text in header_lines(args, facts):
        print(bullet + text)
    print()
    print(format_table(table_rows(rows, results, facts["ceilings"], reference), args.markdown))
    print()
    for row in rows:
        result = results.get(row.name) or {}
        attention = f" (attention: {result['attention']})" if "attention" in result else ""
        print(f"{bullet}{row.name}: {row.summary}{attention}")
    if reference:
        print(f"{bullet}train x, infer x, 1st infer x: {reference.name}'s real tok/s and docs/s divided "
              f"by the row's; above 1 means skattn is faster.")
    print(f"{bullet}infer docs/s: a second predict over the test split; 1st infer docs/s: the first, "
          f"which also compiles oneDNN kernels for each new matrix shape (skattn builds its "
          f"bf16 inference replica at the end of fit).")
    print(f"{bullet}MFU: useful FLOP/s (real tokens) / matmul ceiling of the row's precision; "
          f"MFU(pad): the same counting every padded position computed.")


if __name__ == "__main__":
    main()
