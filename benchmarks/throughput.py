"""Training and inference throughput of skattn next to PyTorch and Hugging Face peers.

Every row trains the same architecture (4 layers, d_model 256, 4 heads, d_ff 1024,
up to 256 tokens, batches of 32) on the same token ids for one timed epoch, then
classifies the test split. Each row runs in a subprocess of its own so that its
peak resident memory is its own. The inference rows (skattn-onnx and the
skattn-*-loaded rows) train nothing: they predict with skattn-fp32's model,
exported by ``to_onnx`` or written by ``save``, each in a fresh child (where
``import torch`` fails, for ONNX Runtime). See benchmarks/README.md for what
each row and column means.

Run from the repository root::

    python benchmarks/throughput.py --quick          # a few minutes
    python benchmarks/throughput.py                  # full R8
    python benchmarks/throughput.py --dataset 20ng --markdown
"""

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from torch.nn import functional as F

import skattn
from skattn import AttentionClassifier
from skattn._text import PAD_ID, encode, length_batches, train_tokenizer
from skattn._devices import cpu_has_native_bf16, int8_linear_works, int8_pays

from _common import cpu_model, emit, load_tsv, package_version, spawn, time_inference

D_MODEL, N_LAYERS, N_HEADS, D_FF = 256, 4, 4, 1024
MAX_LENGTH = 256
BATCH_SIZE = 32
DROPOUT = 0.1
LEARNING_RATE = 1e-3
QUICK_TRAIN_DOCS, QUICK_TEST_DOCS = 300, 200


@dataclass(frozen=True)
class Row:
    """One benchmarked training and inference setup."""

    name: str
    framework: str  # "skattn", "bert", "torch"; inference only: "onnxruntime" or "skattn.load"
    precision: str  # "fp32", "bf16" or (skattn, inference) "int8", which trains in fp32
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
        "skattn-int8", "skattn", "int8", "bucketed",
        "AttentionClassifier(precision='int8'): trains in fp32, predicts with int8 linear layers "
        "(what precision='auto' runs on x86 CPUs without native bf16)",
    ),
    Row(
        "bert-typical", "bert", "fp32", "random",
        "BertForSequenceClassification, fp32, shuffled batches padded to their longest",
    ),
    Row(
        "bert-tricks", "bert", "bf16", "bucketed",
        "BertForSequenceClassification, bf16 autocast, skattn's length buckets, no attention dropout",
    ),
    Row(
        "bert-fp32-bucketed", "bert", "fp32", "bucketed",
        "BertForSequenceClassification, fp32, skattn's length buckets, no attention dropout: the peer "
        "for CPUs without bf16",
    ),
    Row("torch-padded", "torch", "fp32", "fixed", "nn.TransformerEncoder (pre-LN, GELU), fp32, pad to 256"),
    Row(
        "skattn-onnx", "onnxruntime", "fp32", "bucketed",
        "skattn-fp32's model exported by to_onnx; skattn.onnx.load(path, threads).predict "
        "in a fresh child where import torch fails",
    ),
    Row(
        "skattn-fp32-loaded", "skattn.load", "fp32", "bucketed",
        "skattn-fp32's model written by save; skattn.load(path).predict in a fresh child (PyTorch)",
    ),
    Row(
        "skattn-bf16-loaded", "skattn.load", "bf16", "bucketed",
        "the same model saved after set_params(precision='bf16'): skattn.load builds its bf16 "
        "inference replica, then .predict in a fresh child (PyTorch)",
    ),
)
ROW_NAMES = tuple(row.name for row in ROWS)
# Rows that train nothing: they predict with the model of the skattn-fp32 row, fitted once per run.
INFERENCE_ONLY = ("onnxruntime", "skattn.load")
FITTED_ROW = "skattn-fp32"
# Distributions each inference path imports, for the install-size line. Both paths share the
# tokenizer, the n-gram TF-IDF (SciPy, scikit-learn) and the requirements scikit-learn imports.
# Optional imports (pandas and pyarrow, which scikit-learn imports when installed) are not counted.
SHARED_DISTRIBUTIONS = (
    "skattn", "tokenizers", "numpy", "scipy", "scikit-learn", "joblib", "threadpoolctl", "narwhals", "cloudpickle",
)
INSTALLS = {
    "ONNX Runtime": ("onnxruntime", *SHARED_DISTRIBUTIONS),
    "PyTorch": ("torch", "typing_extensions", "tqdm", "safetensors", *SHARED_DISTRIBUTIONS),
}


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
    add("--rows", help=f"comma-separated subset of {', '.join(ROW_NAMES)} (default: all that this "
        f"machine runs: skattn-bf16-loaded needs native bf16, skattn-onnx onnxruntime and onnxscript)")
    add("--reference", help="the skattn row the 'skattn faster' ratios divide by (default: the one "
        "precision='auto' picks on this CPU)")
    add("--seed", type=int, default=0)
    add("--repeats", type=int, default=1,
        help="run the rows this many times, in turn, and keep each row's best times")
    add("--markdown", action="store_true", help="print a markdown table")
    # Internal: run one row in this process and print its result as JSON.
    add("--row", help=argparse.SUPPRESS)
    add("--tokenizer-file", help=argparse.SUPPRESS)
    add("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.max_docs = args.max_docs or QUICK_TRAIN_DOCS
        args.max_test_docs = args.max_test_docs or QUICK_TEST_DOCS
    args.matmul_seconds = 0.3 if args.quick else 2.0
    if args.rows is None:
        args.rows = ",".join(default_rows(explain=args.row is None))  # a row's child says nothing
    unknown = set(args.rows.split(",")) - set(ROW_NAMES)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(ROW_NAMES)}")
    if args.reference is not None and args.reference not in args.rows.split(","):
        parser.error(f"--reference {args.reference} is not among the rows run ({args.rows})")
    return args


def default_rows(explain=True):
    """Every row, less those this machine cannot run as intended (said on stderr with ``explain``)."""
    left_out = {}
    if not cpu_has_native_bf16():
        left_out["skattn-bf16-loaded"] = "this CPU has no native bf16"
    if not int8_linear_works():
        left_out["skattn-int8"] = "this PyTorch build has no working dynamically quantized linear layer"
    if not all(importlib.util.find_spec(name) for name in ("onnxruntime", "onnxscript")):
        left_out["skattn-onnx"] = "needs onnxruntime and onnxscript (pip install 'skattn[onnx]')"
    for name, reason in left_out.items() if explain else ():
        print(f"leaving out {name}: {reason}; name it in --rows to run it anyway.", file=sys.stderr)
    return [name for name in ROW_NAMES if name not in left_out]


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


def batch_shapes(batching, lengths, batches):
    """``(rows, width)`` of each padded batch of ``batches`` (lists of document indices)."""
    return [(len(rows), batch_width(batching, lengths[rows])) for rows in batches]


def epoch_result(lengths, shapes, epoch_s):
    """Training part of a row's result, from the padded batch shapes of its timed epoch."""
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

class EpochRecorder:
    """A ``callbacks`` entry keeping the padded batch shapes and the wall time of an epoch."""

    def __init__(self):
        self.shapes, self.seconds = [], None

    def __call__(self, event):
        if event.kind == "step":
            self.shapes.extend(event.batch_shapes)
        else:
            self.seconds = event.seconds


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

    The epoch time and the padded batch shapes come from fit's ``callbacks``:
    the epoch loop alone is timed (tokenizer training and encoding excluded),
    and the shapes are those of the batches fit ran, padding included.
    """
    params = skattn_params(row, args.seed)
    warm = slice(0, args.warmup_batches * BATCH_SIZE)
    if args.warmup_batches and len(set(work.train_labels[warm])) > 1:
        AttentionClassifier(**params, max_epochs=1).fit(work.train_texts[warm], work.train_labels[warm])

    recorder = EpochRecorder()
    clf = AttentionClassifier(**params, max_epochs=1, callbacks=[recorder])
    clf.fit(work.train_texts, work.train_labels)
    if clf.tokenizer_.get_vocab() != tokenizer.get_vocab():
        raise RuntimeError("skattn trained a different tokenizer than the one the peers use.")
    lengths = lengths_of(token_ids(clf.tokenizer_, work.train_texts))
    result = epoch_result(lengths, recorder.shapes, recorder.seconds)

    result.update(time_inference(lambda: clf.predict(work.test_texts)))
    return result


# -- inference rows: skattn-fp32's model on ONNX Runtime and reloaded in PyTorch -------------


def model_file(row, folder):
    """Where the export child writes the model that ``row`` predicts with."""
    return Path(folder) / ("model.onnx" if row.framework == "onnxruntime" else f"{row.precision}.skattn")


def export_models(work, tokenizer, args):
    """Fit the skattn-fp32 row's model (one epoch) and write it for the inference rows in ``--rows``.

    ``to_onnx`` for skattn-onnx; ``save`` for skattn-fp32-loaded, and after
    ``set_params(precision="bf16")`` for skattn-bf16-loaded (the same weights;
    loading that file builds the bf16 inference replica).
    """
    started = time.perf_counter()
    clf = AttentionClassifier(**skattn_params(row_named(FITTED_ROW), args.seed), max_epochs=1)
    clf.fit(work.train_texts, work.train_labels)
    if clf.tokenizer_.get_vocab() != tokenizer.get_vocab():
        raise RuntimeError("skattn trained a different tokenizer than the one the peers use.")
    for row in (row_named(name) for name in args.rows.split(",")):
        if row.framework in INFERENCE_ONLY:
            clf.set_params(precision=row.precision)
        if row.framework == "onnxruntime":
            clf.to_onnx(model_file(row, args.model_dir))
        elif row.framework == "skattn.load":
            clf.save(model_file(row, args.model_dir))
    return {"fit_export_s": time.perf_counter() - started}


# The inference rows' child, run as ``python -c PREDICTOR_CHILD KIND MODEL TEXTS THREADS BENCHMARKS``.
# It cannot be this file, which imports torch. With KIND "onnx" any import of torch raises
# ImportError (as in tests/test_onnx.py), so the row shows what a process without PyTorch needs.
PREDICTOR_CHILD = """
import json, sys

kind, model_path, texts_path, threads, benchmarks = sys.argv[1:]
if kind == "onnx":
    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("import torch is blocked in the ONNX Runtime row")

    sys.meta_path.insert(0, NoTorch())
sys.path.insert(0, benchmarks)
from _common import emit, time_inference

with open(texts_path, encoding="utf-8") as file:
    texts = json.load(file)
if kind == "onnx":
    import skattn.onnx
    predictor = skattn.onnx.load(model_path, threads=int(threads))
else:
    import torch
    import skattn
    torch.set_num_threads(int(threads))
    predictor = skattn.load(model_path)
predictions = []
result = time_inference(lambda: predictions.append(predictor.predict(texts)))
result.update(test_docs=len(texts), predictions=predictions[-1].tolist(), torch_imported="torch" in sys.modules)
emit(result)
"""


def spawn_predictor(row, args, model_dir, texts_file):
    """Run an inference row's child on the model in ``model_dir``; its result dict, or None."""
    kind = "onnx" if row.framework == "onnxruntime" else "torch"
    command = [
        sys.executable, "-c", PREDICTOR_CHILD,
        kind, str(model_file(row, model_dir)), str(texts_file), str(args.threads), str(Path(__file__).resolve().parent),
    ]
    return spawned(row.name, command)


def installed_mib(name):
    """On-disk MiB of an installed distribution: the files its RECORD lists that exist.

    An editable install (``pip install -e``) lists only its link to the source
    tree; then the files of its package folder count instead.
    """
    dist = distribution(name)
    paths = [file.locate() for file in dist.files or ()]
    if json.loads(dist.read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable"):
        spec = importlib.util.find_spec(name.replace("-", "_"))
        paths += [path for folder in spec.submodule_search_locations for path in Path(folder).rglob("*")]
    return sum(path.stat().st_size for path in map(Path, paths) if path.is_file()) / 2**20


def install_sizes():
    """``{path: (total MiB, [(distribution, MiB or None if not installed), ...])}`` for ``INSTALLS``."""
    sizes = {}
    for path, names in INSTALLS.items():
        parts = []
        for name in names:
            try:
                parts.append((name, installed_mib(name)))
            except PackageNotFoundError:
                parts.append((name, None))
        sizes[path] = (sum(mib for _, mib in parts if mib is not None), parts)
    return sizes


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
    return epoch_result(lengths, batch_shapes(row.batching, lengths, batches), time.perf_counter() - started)


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
    if args.row == "export":
        result = export_models(work, tokenizer, args)
    elif args.row != "baseline":
        row = row_named(args.row)
        runner = run_skattn if row.framework == "skattn" else run_peer
        result = runner(row, work, tokenizer, args)
        result["test_docs"] = len(work.test_texts)
    emit(result)


def row_named(name):
    return next(row for row in ROWS if row.name == name)


def spawn_row(name, args, tokenizer_file, *extra):
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
    return spawned(name, command + list(extra))


def spawned(name, command):
    """The result of a child that prints it with ``emit``, or None (said on stderr) if it failed."""
    result = spawn(command)
    if result.get("status") == "failed":
        print(f"row {name} failed (exit status {result['returncode']}); see its stderr above.", file=sys.stderr)
        return None
    return result


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
    needs_model = any(row.framework in INFERENCE_ONLY for row in rows)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_file = Path(scratch) / "tokenizer.json"
        tokenizer.save(str(tokenizer_file))
        baseline = spawn_row("baseline", args, tokenizer_file)
        exported = None
        if needs_model:
            print(f"fitting {FITTED_ROW}'s model for the inference rows ...", file=sys.stderr, flush=True)
            exported = spawn_row("export", args, tokenizer_file, "--model-dir", scratch, "--rows", args.rows)
            texts_file = Path(scratch) / "test_texts.json"
            texts_file.write_text(json.dumps(work.test_texts), encoding="utf-8")
        runs = {row.name: [] for row in rows}
        for repeat in range(args.repeats):
            for row in rows:
                print(f"running {row.name} ({repeat + 1}/{args.repeats}) ...", file=sys.stderr, flush=True)
                if row.framework not in INFERENCE_ONLY:
                    runs[row.name].append(spawn_row(row.name, args, tokenizer_file))
                elif exported is None:
                    runs[row.name].append(None)
                else:
                    runs[row.name].append(spawn_predictor(row, args, scratch, texts_file))
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
        "exported": exported,
        "installs": install_sizes() if needs_model else None,
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
        if key in best:  # the inference rows have no epoch
            best[key] = min(run[key] for run in runs)
    best["peak_rss_mib"] = max(run["peak_rss_mib"] for run in runs)
    return best


def reference_row(rows, results, name=None):
    """The row ``name``, else the skattn row that ``precision='auto'`` would pick here, else any skattn row that ran."""
    if name is not None:
        return next((r for r in rows if r.name == name and results.get(r.name)), None)
    auto = "bf16" if cpu_has_native_bf16() else "int8" if int8_pays(torch.device("cpu")) else "fp32"
    candidates = [r for r in rows if r.framework == "skattn" and results.get(r.name)]
    candidates.sort(key=lambda r: r.precision != auto)
    return candidates[0] if candidates else None


def header_lines(args, facts):
    """Hardware, software, data and model, printed above the table."""
    work, lengths, ceilings = facts["work"], facts["lengths"], facts["ceilings"]
    lines = [
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
    if facts["installs"]:
        lines.append(f"onnxruntime {package_version('onnxruntime')} (CPUExecutionProvider, "
                     f"intra-op threads {args.threads})")
        for path, (total, parts) in facts["installs"].items():
            sizes = ", ".join(f"{name} {'not installed' if mib is None else f'{mib:,.1f}'}" for name, mib in parts)
            lines.append(f"Install size of the {path} inference path: {total:,.0f} MiB ({sizes})")
    return lines


def table_rows(rows, results, ceilings, reference):
    """The table's cells, one list of strings per row."""
    ref = results[reference.name] if reference else None
    cells = []
    for row in rows:
        result = results.get(row.name)
        if result is None:
            cells.append([row.name, row.precision, row.batching] + ["failed"] + ["-"] * (len(COLUMNS) - 4))
            continue
        docs_per_s = result["test_docs"] / result["infer_s"]
        cold_docs_per_s = result["test_docs"] / result["first_infer_s"]
        train_ratio = infer_ratio = cold_ratio = "-"
        if ref:
            infer_ratio = f"{(ref['test_docs'] / ref['infer_s']) / docs_per_s:.2f}"
            cold_ratio = f"{(ref['test_docs'] / ref['first_infer_s']) / cold_docs_per_s:.2f}"
        if row.framework in INFERENCE_ONLY:  # no training of its own
            training, train_ratio = ["n/a"] * 6, "n/a"
        else:
            epoch_s, ceiling = result["epoch_s"], ceilings["fp32" if row.precision == "int8" else row.precision] * 1e9
            tokens_per_s = result["real_tokens"] / epoch_s
            if ref:
                train_ratio = f"{(ref['real_tokens'] / ref['epoch_s']) / tokens_per_s:.2f}"
            training = [
                f"{epoch_s:.2f}",
                f"{tokens_per_s:,.0f}",
                f"{result['padded_tokens'] / epoch_s:,.0f}",
                f"{1 - result['real_tokens'] / result['padded_tokens']:.0%}",
                f"{result['useful_flops'] / epoch_s / ceiling:.1%}",
                f"{result['executed_flops'] / epoch_s / ceiling:.1%}",
            ]
        cells.append([
            row.name,
            row.precision,
            row.batching,
            *training,
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
    reference = reference_row(rows, results, args.reference)
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
    for line in inference_notes(facts, results):
        print(bullet + line)


def inference_notes(facts, results):
    """What the inference rows measured, skattn-onnx's speed against the skattn rows, their agreement."""
    ran = [name for name in results if row_named(name).framework in INFERENCE_ONLY]
    if not ran:
        return []
    exported = facts["exported"]
    fitted = "failed" if exported is None else f"fitted and written once, in {exported['fit_export_s']:.1f} s"
    lines = [
        f"{', '.join(ran)}: no training of their own (n/a): the model is {FITTED_ROW}'s (same parameters "
        f"and seed, one epoch; {fitted}, by another child). Each row is a fresh child that reads the test "
        f"texts, loads the model and predicts twice; peak RSS is that child's.",
        "Install size: the on-disk size of the files that importlib.metadata's distribution(name).files "
        "lists, summed over the distributions each path imports (an editable install: its package folder).",
    ]
    onnx = results.get("skattn-onnx")
    if onnx:
        ratios = [
            f"{name} {onnx['infer_s'] / other['infer_s']:.2f} (1st call {onnx['first_infer_s'] / other['first_infer_s']:.2f})"
            for name, other in results.items()
            if other and name in ("skattn-fp32", "skattn-bf16", "skattn-fp32-loaded", "skattn-bf16-loaded")
        ]
        if ratios:
            lines.append("skattn-onnx's infer docs/s against the skattn rows (their docs/s divided by "
                         f"skattn-onnx's; below 1: ONNX Runtime is faster): {', '.join(ratios)}")
        torch_note = f"torch imported in skattn-onnx's child: {'yes' if onnx['torch_imported'] else 'no'}"
        loaded = results.get("skattn-fp32-loaded")
        if loaded:
            same = sum(a == b for a, b in zip(onnx["predictions"], loaded["predictions"]))
            torch_note += (f"; skattn-onnx predicts the label skattn-fp32-loaded predicts for {same:,} of "
                           f"{onnx['test_docs']:,} test documents")
        lines.append(torch_note)
    return lines


if __name__ == "__main__":
    main()
