"""Scaling out: one fit data-parallel under torchrun, and batch inference on a Dask cluster.

Two tables, each measured in one run on this machine:

* ``fit``: the same AttentionClassifier fit on the same documents, in one process
  with every core, and under ``torchrun`` with 1 and N processes (N = the cores, each
  process one thread, gloo; on a machine with GPUs, one process per GPU over NCCL).
  Speed-up = the single process's fit time / the row's.
* ``predict``: ``predict`` of many short texts, in this process, then through
  ``skattn.dask.predict_partitions`` on a Dask LocalCluster of 1 and of N worker
  processes (one thread each). Throughput ratio = row's docs/s / this process's.

Run from the repository root (the dask extra installed)::

    python benchmarks/scale.py --quick                 # a couple of minutes
    python benchmarks/scale.py                          # R8, 2 epochs; 100,000 tweets
    python benchmarks/scale.py --parts predict --n-texts 1000000
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import format_table, hardware_lines, load_split

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--parts", nargs="+", default=["fit", "predict"], choices=["fit", "predict"])
    add("--data-dir", help="folder holding the dataset folders (default: shared/data beside the repository)")
    add("--fit-dataset", default="r8")
    add("--max-epochs", type=int, default=2, help="max_epochs of the fits (default: 2)")
    add("--max-docs", type=int, help="subset of the training documents for the fits")
    add("--processes", type=int, help="processes (or Dask workers) of the parallel rows (default: GPUs, else cores)")
    add("--n-texts", type=int, default=100_000, help="short texts to predict (default: 100,000)")
    add("--quick", action="store_true", help="1,500 training documents, 1 epoch, 20,000 texts")
    add("--markdown", action="store_true")
    add("--threads", type=int, help=argparse.SUPPRESS)  # for hardware_lines
    args = parser.parse_args(argv)
    if args.quick:
        args.max_docs, args.max_epochs, args.n_texts = args.max_docs or 1500, 1, 20_000
    if args.processes is None:
        import torch

        args.processes = torch.cuda.device_count() or len(os.sched_getaffinity(0))
    return args


# -- fit: torchrun -------------------------------------------------------------------


def fit_rows(args):
    split = load_split(args.fit_dataset, data_dir=args.data_dir, max_docs=args.max_docs)
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data.json"
        data.write_text(json.dumps({
            "train": [split.train_texts, split.train_labels.tolist()],
            "test": [split.eval_texts, split.eval_labels.tolist()],
            "params": {"max_epochs": args.max_epochs, "random_state": 0},
        }))
        rows = [("1 process, all cores", run_fit([sys.executable, __file__, "--fit-child", str(data)], folder))]
        for n in dict.fromkeys([1, args.processes]):
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                       __file__, "--fit-child", str(data)]
            rows.append((f"torchrun, {n} process(es)", run_fit(command, folder)))
    reference = rows[0][1]["fit_s"]
    cells = [[label, f"{r['threads']}", f"{r['fit_s']:.1f}", f"{r['tokens_per_s']:,.0f}", f"{r['accuracy']:.2%}",
              f"{reference / r['fit_s']:.2f}x"] for label, r in rows]
    print(f"\n### fit: {args.fit_dataset}, {len(split.train_texts):,} training documents, "
          f"{args.max_epochs} epoch(s), test accuracy on {len(split.eval_texts):,}\n")
    print(format_table(("row", "threads/process", "fit s", "tokens/s", "accuracy", "speed-up"), cells, args.markdown))


def run_fit(command, folder):
    output = Path(folder) / "result.json"
    output.unlink(missing_ok=True)
    subprocess.run(command + [str(output)], check=True, cwd=ROOT)
    return json.loads(output.read_text())


def fit_child(data_path, output):
    """One fit (one rank of it under torchrun); rank 0 writes the result."""
    import torch

    from skattn import AttentionClassifier

    distributed = "LOCAL_RANK" in os.environ
    if distributed:
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    data = json.loads(Path(data_path).read_text())
    classifier = AttentionClassifier(**data["params"])
    started = time.perf_counter()
    classifier.fit(*data["train"])
    fit_s = time.perf_counter() - started
    accuracy = classifier.score(*data["test"])
    if not distributed or torch.distributed.get_rank() == 0:
        Path(output).write_text(json.dumps({
            "fit_s": fit_s, "accuracy": accuracy, "threads": torch.get_num_threads(),
            "tokens_per_s": classifier.n_tokens_seen_ / fit_s,
        }))
    if distributed:
        torch.distributed.destroy_process_group()


# -- predict: Dask --------------------------------------------------------------------


def predict_rows(args):
    import logging

    import dask.dataframe as dd
    import pandas as pd
    import torch
    from distributed import Client, LocalCluster

    from skattn import AttentionClassifier
    from skattn.dask import predict_partitions

    split = load_split("tweets", data_dir=args.data_dir)
    texts = np.resize(np.asarray(split.train_texts + split.eval_texts, dtype=object), args.n_texts)
    classifier = AttentionClassifier(max_epochs=1, random_state=0).fit(split.train_texts, split.train_labels)
    series = pd.Series(texts, name="text")
    rows = []
    started = time.perf_counter()
    local = classifier.predict(texts)
    rows.append(("this process, predict", torch.get_num_threads(), time.perf_counter() - started, 1.0))
    for workers in dict.fromkeys([1, args.processes]):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            frame = dd.from_pandas(series.to_frame(), npartitions=4 * workers)
            frame = frame.persist()  # the texts on the workers, as if read there
            started = time.perf_counter()
            predicted = predict_partitions(classifier, frame["text"], client=client).compute()
            seconds = time.perf_counter() - started
            agreement = float(np.mean(predicted.to_numpy() == local))
            rows.append((f"Dask, {workers} worker(s)", 1, seconds, agreement))
    reference = rows[0][2]
    cells = [[label, str(threads), f"{seconds:.1f}", f"{len(texts) / seconds:,.0f}", f"{reference / seconds:.2f}x",
              f"{agreement:.2%}"] for label, threads, seconds, agreement in rows]
    print(f"\n### predict: {len(texts):,} tweets (the tweets corpus repeated), default model fitted 1 epoch\n")
    print(format_table(("row", "threads/process", "seconds", "docs/s", "throughput x", "same labels"), cells,
                       args.markdown))


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--fit-child":
        return fit_child(sys.argv[2], sys.argv[3])
    args = parse_args(argv)
    for line in hardware_lines(args):
        print(line)
    if "fit" in args.parts:
        fit_rows(args)
    if "predict" in args.parts:
        predict_rows(args)


if __name__ == "__main__":
    main()
