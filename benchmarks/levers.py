"""Micro-benchmarks of the speed levers skattn uses, each against its alternative.

Every comparison runs both variants in this process, one after the other, on the
same tensors, and prints their times and the ratio. Run with::

    python benchmarks/levers.py [--threads N] [--only int8,fp32-fused] [--compile]
"""

import argparse
import subprocess
import sys
import time
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

from skattn._fast import (
    NumpyDropout, inference_replica, int8_linear_works, int8_replica, onednn_linear_works, speed_up_training,
)
from skattn._heads import SequenceClassifier
from skattn._model import EncoderConfig, TextEncoder, explicit_attention
from skattn._ngrams import WordNgrams, _word_pattern, fit_ngram_vectorizer, transform_ngrams
from skattn.datasets import load_r8

# skattn's defaults at the benchmark's size (4 layers), the ReLU included.
CONFIG = dict(
    vocab_size=8000, max_length=256, d_model=256, n_heads=4, n_layers=4, d_ff=1024, dropout=0.1, pooling="mean",
    activation="relu",
)


def paired(first, second, repeats=10, rounds=5):
    """Seconds per call of ``first`` and of ``second``, timed in alternating rounds.

    Alternating the two, and keeping each one's best round, cancels most of
    the drift of a shared machine's load between them.
    """
    functions = (first, second)
    for function in functions:
        for _ in range(3):
            function()
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for index, function in enumerate(functions):
            started = time.perf_counter()
            for _ in range(repeats):
                function()
            best[index] = min(best[index], (time.perf_counter() - started) / repeats)
    return best


def gelu_variants():
    x = torch.randn(32 * 96, 1024, dtype=torch.bfloat16, requires_grad=True)
    tanh, exact = paired(lambda: F.gelu(x, approximate="tanh").sum().backward(), lambda: F.gelu(x).sum().backward())
    return "GELU fwd+bwd, bf16 (32x96x1024)", "tanh approximation", tanh, "exact (erf)", exact


def dropout_variants():
    x = torch.randn(32, 128, 256, dtype=torch.bfloat16, requires_grad=True)
    ours = NumpyDropout(0.1).train()
    native, numpy_masks = paired(lambda: F.dropout(x, 0.1, True).sum().backward(), lambda: ours(x).sum().backward())
    return "dropout p=0.1 fwd+bwd, bf16 (32x128x256)", "torch bernoulli (nn.Dropout)", native, "NumPy PCG64 masks (skattn)", numpy_masks


def _attention_inputs(dtype=torch.bfloat16):
    q, k, v = (torch.randn(32, 4, 128, 64, dtype=dtype, requires_grad=True) for _ in range(3))
    keep = torch.ones(32, 1, 1, 128, dtype=torch.bool)
    keep[..., 118:] = False
    return q, k, v, keep


def attention_dtype_variants():
    q, k, v, keep = _attention_inputs()

    def bf16():
        F.scaled_dot_product_attention(q, k, v, attn_mask=keep).sum().backward()

    def fp32():
        F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=keep).sum().backward()

    bf16_s, fp32_s = paired(bf16, fp32)
    return "fused attention fwd+bwd (32x4 heads x128x64)", "bf16", bf16_s, "fp32 (the faster fused)", fp32_s


def attention_kernel_variants():
    q, k, v, keep = _attention_inputs()

    def fused_fp32():
        F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=keep).sum().backward()

    def unfused_bf16():
        explicit_attention(q, k, v, keep).sum().backward()

    fused_s, unfused_s = paired(fused_fp32, unfused_bf16)
    return (
        "training attention fwd+bwd (32x4x128x64)", "fused SDPA, fp32", fused_s,
        "matmul-softmax-matmul, bf16 (skattn)", unfused_s,
    )


def inference_variants():
    model = _model()
    ids = torch.randint(5, 8000, (32, 112))
    replica = inference_replica(model, torch.bfloat16, fuse=False)

    def autocast():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(ids)

    def cast_once():
        with torch.inference_mode():
            replica(ids)

    autocast_s, replica_s = paired(autocast, cast_once)
    return "inference batch (32x112 tokens)", "bf16 autocast", autocast_s, "bf16 replica", replica_s


def _model(activation="relu"):
    """A freshly initialised classifier of the benchmark's size, seeded, in eval mode."""
    torch.manual_seed(0)
    return SequenceClassifier(TextEncoder(EncoderConfig(**{**CONFIG, "activation": activation})), 8).eval()


def _replica(activation="relu", fuse_linear=False):
    """A bf16 inference replica of :func:`_model`."""
    return inference_replica(_model(activation), torch.bfloat16, fuse=fuse_linear)


def _paired_inference(first, second):
    """``paired`` timings of one batch of 32x112 tokens through two modules."""
    ids = torch.randint(5, 8000, (32, 112))

    def run(module):
        with torch.inference_mode():
            module(ids)

    return paired(lambda: run(first), lambda: run(second))


def fused_linear_variants():
    plain_s, fused_s = _paired_inference(_replica(), _replica(fuse_linear=True))
    return (
        "inference batch, bf16 replica (32x112)", "nn.Linear, separate ReLU", plain_s,
        "oneDNN linear, packed, ReLU fused (skattn)", fused_s,
    )


def float32_fused_variants():
    """The float32 model against its fused float32 replica (``precision="fp32"`` on the CPU)."""
    model = _model()
    plain_s, fused_s = _paired_inference(model, inference_replica(model, torch.float32, fuse=True))
    return (
        "inference batch, fp32 (32x112)", "the float32 model (nn.Linear, ReLU)", plain_s,
        "oneDNN linear, packed, fused (skattn)", fused_s,
    )


def int8_variants():
    """The fused float32 replica against the int8 one (what "auto" predicts with on x86 CPUs without bf16)."""
    model = _model()
    fused_s, int8_s = _paired_inference(inference_replica(model, torch.float32, fuse=True), int8_replica(model))
    return (
        "inference batch, fp32 or int8 (32x112)", "fp32 copy, fused oneDNN linear", fused_s,
        "int8 linear layers (int8_replica)", int8_s,
    )


def activation_variants():
    """The fused bf16 replica with the feed-forward GELU against the ReLU."""
    gelu_s, relu_s = _paired_inference(_replica("gelu", fuse_linear=True), _replica("relu", fuse_linear=True))
    return "inference batch, fused bf16 replica (32x112)", "exact GELU in the oneDNN matmul", gelu_s, "ReLU (skattn's default)", relu_s


def ngram_variants():
    """TF-IDF word 1-2 grams of 800 synthetic documents of 120 Zipf-distributed words."""
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(20000)])
    documents = [" ".join(words[np.minimum(rng.zipf(1.3, 120), 20000) - 1]) for _ in range(800)]
    vectorizer, _ = fit_ngram_vectorizer(documents, ngram_range=(1, 2), lowercase=True)
    sklearn_s, skattn_s = paired(
        lambda: vectorizer.transform(documents), lambda: transform_ngrams(vectorizer, documents), repeats=2
    )
    return "n-gram TF-IDF of 800 documents", "TfidfVectorizer.transform", sklearn_s, "transform_ngrams (skattn)", skattn_s


def word_variants():
    """The n-gram path's word splitting of R8's test split (shipped with skattn; all ASCII)."""
    documents = load_r8()[2]
    analyzer = WordNgrams((1, 2), lowercase=True)
    pattern = _word_pattern(marks=True)

    def unicode_patterns():
        return [pattern.findall(unicodedata.normalize("NFKC", document).lower()) for document in documents]

    unicode_s, ascii_s = paired(unicode_patterns, lambda: [analyzer.words(document) for document in documents], repeats=2)
    return (
        f"n-gram words of {len(documents):,} R8 documents", "the Unicode patterns on every text", unicode_s,
        "ASCII patterns on ASCII text (skattn)", ascii_s,
    )


def compile_variants():
    """A bf16 training step of the model, eager against ``torch.compile`` (one width)."""
    torch.manual_seed(0)
    model = speed_up_training(SequenceClassifier(TextEncoder(EncoderConfig(**CONFIG)), 8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    ids = torch.randint(5, 8000, (32, 128))
    ids[:, 112:] = 0
    targets = torch.randint(0, 8, (32,))

    def step(forward):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(forward(ids).float(), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    compiled = torch.compile(model)
    started = time.perf_counter()
    step(compiled)
    label = f"bf16 training step (32x128); compiling took {time.perf_counter() - started:.0f} s"
    compiled_s, eager_s = paired(lambda: step(compiled), lambda: step(model), repeats=5, rounds=3)
    return label, "torch.compile (inductor)", compiled_s, "eager (skattn)", eager_s


_PADDING_CHILD = """
import resource, sys, time, torch
import torch.nn.functional as F
from skattn._fast import speed_up_training
from skattn._heads import SequenceClassifier
from skattn._model import EncoderConfig, TextEncoder
multiple = int(sys.argv[1])
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
config = EncoderConfig(vocab_size=8000, max_length=256, d_model=256, n_heads=4, n_layers=2, d_ff=1024, dropout=0.1, pooling="mean", activation="relu")
model = speed_up_training(SequenceClassifier(TextEncoder(config), 8))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
lengths = torch.randint(20, 256, (150,), generator=torch.Generator().manual_seed(0))
started, tokens = time.perf_counter(), 0
for length in lengths.tolist():
    width = min(256, -(-length // multiple) * multiple)
    ids = torch.randint(5, 8000, (16, width))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(ids).float(), torch.randint(0, 8, (16,)))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    tokens += 16 * length
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def padding_variants(threads):
    """150 bf16 training steps on random lengths, each in a fresh process (peak memory)."""
    results = {}
    for multiple in (1, 16):
        out = subprocess.run(
            [sys.executable, "-c", _PADDING_CHILD, str(multiple), str(threads)],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        results[multiple] = (float(out[0]) / 150, int(out[1]))
    label = "bf16 training step, random widths 20-255"
    return label, f"exact width (peak {results[1][1]} MiB)", results[1][0], f"rounded to 16 (skattn; peak {results[16][1]} MiB)", results[16][0]


def levers():
    """Each lever's name, its timing function, and whether this CPU and PyTorch build can run it."""
    bf16_fused = onednn_linear_works(torch.bfloat16)  # oneDNN's bf16 linear op needs AVX512 or AVX-NE-CONVERT
    fp32_fused = onednn_linear_works(torch.float32)
    threads = torch.get_num_threads()
    return {
        "gelu": (gelu_variants, True),
        "dropout": (dropout_variants, True),
        "attention-dtype": (attention_dtype_variants, True),
        "attention-kernel": (attention_kernel_variants, True),
        "inference": (inference_variants, True),
        "fused-linear": (fused_linear_variants, bf16_fused),
        "fp32-fused": (float32_fused_variants, fp32_fused),
        "int8": (int8_variants, fp32_fused and int8_linear_works()),
        "activation": (activation_variants, bf16_fused),
        "ngrams": (ngram_variants, True),
        "words": (word_variants, True),
        "padding": (lambda: padding_variants(threads), bf16_fused),  # bf16 training
        "compile": (compile_variants, True),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (compiling takes about a minute)")
    parser.add_argument("--only", help="comma-separated levers to time (default: all but compile): " + ", ".join(levers()))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    available = levers()
    chosen = args.only.split(",") if args.only else [name for name in available if name != "compile"]
    chosen += ["compile"] if args.compile and "compile" not in chosen else []
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        parser.error(f"unknown levers {unknown}; choose from {', '.join(available)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = []
    for name in chosen:
        function, runs_here = available[name]
        if runs_here:
            rows.append(function())
        else:
            print(f"leaving out {name}: this CPU or PyTorch build lacks its kernels")
    print(f"{'operation':44s} {'alternative':38s} {'ms':>8s}   {'skattn uses':44s} {'ms':>8s} {'speed-up':>9s}")
    for label, name_a, seconds_a, name_b, seconds_b in rows:
        print(f"{label:44s} {name_a:38s} {seconds_a * 1e3:8.2f}   {name_b:44s} {seconds_b * 1e3:8.2f} {seconds_a / seconds_b:8.2f}x")


if __name__ == "__main__":
    main()
