"""Peak memory of ``AttentionEncoder.transform`` over 10k, 100k and 1M short texts.

``transform`` streams documents through the model in chunks of 4,096, so its
memory should grow with the output array (``N x d_model`` float32) only, plus
a bounded working set. This script fits one small encoder on the tweets
training split (synthetic sentences if it is missing), saves it with joblib,
then for each ``N`` starts a fresh worker process that loads the model, builds
``N`` short texts (the corpus cycled, each text suffixed with its index, so
every text is a distinct string), runs a warm-up ``transform`` on 1,000
texts, resets the peak RSS, and times ``encoder.transform(texts)``.

Columns (MiB = 2**20 bytes):

* ``input``: the texts, ``sum(sys.getsizeof(t))``, built before the measurement.
* ``before``: the worker's RSS just before ``transform`` (model, texts, libraries).
* ``peak``: the highest RSS during ``transform``, ``VmHWM`` from
  ``/proc/self/status`` after it was reset via ``/proc/self/clear_refs``
  (where that is refused, the process's peak so far, or ``ru_maxrss`` off Linux).
* ``growth``: ``peak - before``: what ``transform`` added at its worst.
* ``output``: ``nbytes`` of the returned array.
* ``extra``: ``growth - output``: the working set beside the output. It should
  stay roughly constant across ``N``; a value proportional to ``N`` means
  something per-document is held for the whole call.

The verdict lines compare each ``extra`` with the smallest ``N``'s and report
the difference per added document, next to the output's bytes per document.

    python benchmarks/transform_memory.py                          # N = 10k, 100k, 1M
    python benchmarks/transform_memory.py --sizes 10000 100000 --markdown

Workers run one at a time, with one PyTorch thread and one tokenizer thread.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

MIB = 2**20
WARMUP_DOCS = 1000


def status_kib(field):
    """``field`` (``VmRSS``, ``VmHWM``) of /proc/self/status in bytes, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss():
    peak = status_kib("VmHWM")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return peak


def reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def corpus(data_dir):
    try:
        from _data import load_tsv

        return load_tsv("tweets", "train", data_dir)[0]
    except FileNotFoundError:
        words = "the a model reads short texts fast and slow news from every city today".split()
        return [" ".join(words[(i * k) % len(words)] for k in range(1, 12)) for i in range(5000)]


def make_texts(base, n):
    return [f"{base[i % len(base)]} {i}" for i in range(n)]


def worker(model_file, n, data_dir):
    import gc

    import joblib
    import torch

    torch.set_num_threads(1)
    encoder = joblib.load(model_file)
    texts = make_texts(corpus(data_dir), n)
    input_bytes = sum(map(sys.getsizeof, texts)) + sys.getsizeof(texts)
    encoder.transform(texts[:WARMUP_DOCS])
    gc.collect()
    before = status_kib("VmRSS") or peak_rss()
    was_reset = reset_peak()
    started = time.perf_counter()
    output = encoder.transform(texts)
    seconds = time.perf_counter() - started
    peak = peak_rss()
    return dict(n=n, input=input_bytes, before=before, peak=peak, output=output.nbytes,
                seconds=seconds, reset=was_reset, threads=torch.get_num_threads())


def run_worker(model_file, n, data_dir):
    command = [sys.executable, __file__, "--worker", str(n), "--model-file", model_file]
    if data_dir:
        command += ["--data-dir", data_dir]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"worker for N={n} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit_model(model_file, data_dir):
    import joblib
    import torch
    from sklearn.exceptions import ConvergenceWarning

    from skattn import AttentionEncoder

    torch.set_num_threads(1)
    texts = corpus(data_dir)
    encoder = AttentionEncoder(d_model=64, n_layers=1, n_heads=2, d_ff=128, max_length=64,
                               max_epochs=1, random_state=0)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch is enough to measure memory
        encoder.fit(texts)
    joblib.dump(encoder, model_file)
    return len(texts), time.perf_counter() - started


def machine_line():
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread per worker"


def report(rows, markdown):
    head = ["N", "input MiB", "before MiB", "peak MiB", "growth MiB", "output MiB", "extra MiB", "docs/s"]
    lines = []
    for r in rows:
        growth = r["peak"] - r["before"]
        cells = [r["input"], r["before"], r["peak"], growth, r["output"], growth - r["output"]]
        lines.append([f"{r['n']:,}"] + [f"{c / MIB:,.1f}" for c in cells] + [f"{r['n'] / r['seconds']:,.0f}"])
    if markdown:
        print("| " + " | ".join(head) + " |\n|" + "---:|" * len(head))
        print("\n".join("| " + " | ".join(cells) + " |" for cells in lines))
    else:
        widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
        for cells in [head] + lines:
            print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))
    first = rows[0]
    extra0 = first["peak"] - first["before"] - first["output"]
    for r in rows:
        extra = r["peak"] - r["before"] - r["output"]
        line = f"N={r['n']:,}: extra {extra / MIB:,.1f} MiB"
        if r is not first:
            per_doc = (extra - extra0) / (r["n"] - first["n"])
            out_per_doc = r["output"] / r["n"]
            verdict = "bounded" if per_doc < 0.1 * out_per_doc else "GROWS WITH N"
            line += (f" ({(extra - extra0) / MIB:+,.1f} MiB vs N={first['n']:,}: {per_doc:+.1f} bytes per added doc, "
                     f"output {out_per_doc:.0f} bytes per doc) -> {verdict}")
        print(line)
    if not all(r["reset"] for r in rows):
        print("note: the peak could not be reset; 'peak' is the worker's peak since it started")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--data-dir", default=None, help="folder holding tweets/ (default ../shared/data)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS"):  # before torch and tokenizers load
        os.environ[name] = "1"
    if args.worker is not None:
        print(json.dumps(worker(args.model_file, args.worker, args.data_dir)))
        return
    print(machine_line())
    with tempfile.TemporaryDirectory() as folder:
        model_file = str(Path(folder) / "encoder.joblib")
        n_fit, fit_seconds = fit_model(model_file, args.data_dir)
        print(f"fitted AttentionEncoder(d_model=64, n_layers=1, max_length=64) on {n_fit:,} texts in {fit_seconds:.0f} s")
        rows = []
        for n in sorted(args.sizes):
            rows.append(run_worker(model_file, n, args.data_dir))
            print(f"  N={n:,} done in {rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    report(rows, args.markdown)


if __name__ == "__main__":
    main()
