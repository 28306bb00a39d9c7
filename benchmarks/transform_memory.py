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

* ``input``: the texts, ``sum(sys.getsizeof(t))`` plus the list, before ``transform``.
* ``before``: the worker's RSS just before ``transform`` (model, texts, libraries).
* ``peak``: the highest RSS during ``transform``, ``VmHWM`` from
  ``/proc/self/status`` after it was reset via ``/proc/self/clear_refs``
  (where that is refused, the process's peak so far, or ``ru_maxrss`` off Linux).
* ``growth``: ``peak - before``: what ``transform`` added at its worst.
* ``output``: ``nbytes`` of the returned array.
* ``extra``: ``growth - output``: the working set beside the output. It should
  stay roughly constant across ``N``; a value proportional to ``N`` means
  something per-document is held for the whole call.
* ``utf8``: how much ``sum(sys.getsizeof(t))`` of the caller's texts grew
  during ``transform``. CPython caches a UTF-8 copy inside a non-ASCII ``str``
  the first time C code asks for one (``PyUnicode_AsUTF8AndSize``), as the
  Rust tokenizer does; the copy lives as long as the string, so it is part of
  ``extra`` and stays after ``transform`` returns. ASCII strings need none.

The verdict lines compare each ``extra`` with the previous ``N``'s, with and
without ``utf8``, per added document next to the output's bytes per document:
"bounded" when it grew by less than 8 MiB (run-to-run noise) or less than a
tenth of what the output grew. ``--ascii`` strips non-ASCII characters from the
corpus, a control in which ``utf8`` is zero. Expect a further 8 bytes per
document that no column names: ``transform`` copies the list of texts.

    python benchmarks/transform_memory.py                          # N = 10k, 100k, 1M
    python benchmarks/transform_memory.py --sizes 10000 100000 --markdown
    python benchmarks/transform_memory.py --ascii

Workers run one at a time, with one PyTorch thread and one tokenizer thread.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

MIB = 2**20
NOISE = 8 * MIB  # RSS differences this small are run-to-run noise
WARMUP_DOCS = 1000


def status_bytes(field):
    """``field`` (``VmRSS``, ``VmHWM``) of /proc/self/status in bytes, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss():
    peak = status_bytes("VmHWM")
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
        from _common import load_tsv

        return load_tsv("tweets", "train", data_dir)[0]
    except FileNotFoundError:
        words = "the a model reads short texts fast and slow news from every city today".split()
        return [" ".join(words[(i * k) % len(words)] for k in range(1, 12)) for i in range(5000)]


def make_texts(base, n):
    return [f"{base[i % len(base)]} {i}" for i in range(n)]


def worker(model_file, n, data_dir, ascii_only):
    import gc

    import joblib
    import torch

    torch.set_num_threads(1)
    encoder = joblib.load(model_file)
    base = corpus(data_dir)
    if ascii_only:
        base = [text.encode("ascii", "ignore").decode() for text in base]
    texts = make_texts(base, n)
    encoder.transform(texts[:WARMUP_DOCS])
    gc.collect()
    input_bytes = sum(map(sys.getsizeof, texts)) + sys.getsizeof(texts)
    before = status_bytes("VmRSS") or peak_rss()
    was_reset = reset_peak()
    started = time.perf_counter()
    output = encoder.transform(texts)
    seconds = time.perf_counter() - started
    peak = peak_rss()
    utf8 = sum(map(sys.getsizeof, texts)) + sys.getsizeof(texts) - input_bytes
    return dict(n=n, input=input_bytes, before=before, peak=peak, output=output.nbytes, utf8=utf8,
                seconds=seconds, reset=was_reset, threads=torch.get_num_threads())


def run_worker(model_file, n, data_dir, ascii_only):
    command = [sys.executable, __file__, "--worker", str(n), "--model-file", model_file]
    if data_dir:
        command += ["--data-dir", data_dir]
    if ascii_only:
        command.append("--ascii")
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

    from _common import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread per worker"


def report(rows, markdown):
    head = ["N", "input MiB", "before MiB", "peak MiB", "growth MiB", "output MiB", "extra MiB", "utf8 MiB", "docs/s"]
    lines = []
    for r in rows:
        growth = r["peak"] - r["before"]
        cells = [r["input"], r["before"], r["peak"], growth, r["output"], growth - r["output"], r["utf8"]]
        lines.append([f"{r['n']:,}"] + [f"{c / MIB:,.1f}" for c in cells] + [f"{r['n'] / r['seconds']:,.0f}"])
    if markdown:
        print("| " + " | ".join(head) + " |\n|" + "---:|" * len(head))
        print("\n".join("| " + " | ".join(cells) + " |" for cells in lines))
    else:
        widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
        for cells in [head] + lines:
            print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))
    def extra(r):
        return r["peak"] - r["before"] - r["output"]

    def verdict(more, more_output):
        return "bounded" if more < max(NOISE, 0.1 * more_output) else "GROWS WITH N"

    print(f"N={rows[0]['n']:,}: extra {extra(rows[0]) / MIB:,.1f} MiB")
    for previous, r in zip(rows, rows[1:]):
        added, more = r["n"] - previous["n"], extra(r) - extra(previous)
        without, more_output = more - (r["utf8"] - previous["utf8"]), r["output"] - previous["output"]
        print(f"N={r['n']:,}: extra {extra(r) / MIB:,.1f} MiB, {more / MIB:+,.1f} MiB on N={previous['n']:,} "
              f"({more / added:+.0f} bytes per added doc; output {more_output / added:.0f}) -> "
              f"{verdict(more, more_output)}; without utf8 {without / MIB:+,.1f} MiB "
              f"({without / added:+.0f} bytes per added doc) -> {verdict(without, more_output)}")
    if not all(r["reset"] for r in rows):
        print("note: the peak could not be reset; 'peak' is the worker's peak since it started")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--data-dir", default=None, help="folder holding tweets/ (default ../shared/data)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--ascii", action="store_true", help="strip non-ASCII characters from the corpus")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS"):  # before torch and tokenizers load
        os.environ[name] = "1"
    if args.worker is not None:
        print(json.dumps(worker(args.model_file, args.worker, args.data_dir, args.ascii)))
        return
    print(machine_line())
    with tempfile.TemporaryDirectory() as folder:
        model_file = str(Path(folder) / "encoder.joblib")
        n_fit, fit_seconds = fit_model(model_file, args.data_dir)
        print(f"fitted AttentionEncoder(d_model=64, n_layers=1, max_length=64) on {n_fit:,} texts in {fit_seconds:.0f} s")
        rows = []
        for n in sorted(args.sizes):
            rows.append(run_worker(model_file, n, args.data_dir, args.ascii))
            print(f"  N={n:,} done in {rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    report(rows, args.markdown)


if __name__ == "__main__":
    main()
