"""What the benchmarks share: the datasets, the machine's description, peak memory, tables.

The datasets are gzipped TSV files of ``label<TAB>text`` lines outside the
repository, in ``<workspace>/shared/data/<name>/`` (one of :data:`DATASETS`,
each with ``train.tsv.gz`` and ``test.tsv.gz``).

accuracy.py and ablations.py also share their data options and splits, how they
fit and score a skattn estimator, and how a parent runs each row in a child
process that prints its result as one line of JSON.
"""

import gzip
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
# Reuters R8; 20 Newsgroups; 20 Newsgroups with long-tailed class sizes (560 down to 5 training docs);
# Chinese reviews, pos/neg; 2016 US election tweets by author; sitcom lines by speaker.
DATASETS = ("r8", "20ng", "20ng-longtail", "zh-reviews", "tweets", "friends")
QUICK_TRAIN_DOCS, QUICK_EVAL_DOCS, QUICK_EPOCHS = 600, 300, 2
VALIDATION_FRACTION = 0.1
RESULT_PREFIX = "ROW-RESULT "


# -- data -----------------------------------------------------------------------


def load_tsv(name, split, data_dir=None):
    """Read one split of a dataset.

    Parameters
    ----------
    name : str
        Dataset folder, e.g. ``"r8"`` or ``"20ng"``.
    split : {"train", "test"}
    data_dir : str or pathlib.Path, default=None
        Folder holding the dataset folders; :data:`DATA_DIR` if None.

    Returns
    -------
    texts : list of str
    labels : list of str
    """
    path = Path(data_dir if data_dir is not None else DATA_DIR) / name / f"{split}.tsv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"No dataset file at {path}; pass --data-dir to point elsewhere.")
    texts, labels = [], []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            label, tab, text = line.rstrip("\n").partition("\t")
            if not tab:
                raise ValueError(f"{path}, line {number}: expected 'label<TAB>text', got {line[:80]!r}.")
            labels.append(label)
            texts.append(text)
    return texts, labels


@dataclass
class Split:
    """Training and evaluation documents of one dataset."""

    dataset: str
    evaluation: str  # "test" or "validation"
    train_texts: list
    train_labels: np.ndarray
    eval_texts: list
    eval_labels: np.ndarray

    def describe(self):
        return (f"{self.dataset}: {len(self.train_texts):,} training docs, {len(self.eval_texts):,} "
                f"{self.evaluation} docs, {len(np.unique(self.train_labels))} classes")


def stratified_subset(texts, labels, size, seed):
    """A seeded subset of ``size`` documents with the class proportions of ``labels``."""
    if size is None or size >= len(texts):
        return texts, labels
    keep, _ = train_test_split(np.arange(len(texts)), train_size=size, random_state=seed, stratify=labels)
    keep = np.sort(keep)
    return [texts[i] for i in keep], labels[keep]


def load_split(dataset, *, data_dir=None, seed=0, validation=False, max_docs=None, max_eval_docs=None):
    """Training and evaluation documents of ``dataset``.

    The evaluation documents are the test split, or with ``validation`` a
    stratified :data:`VALIDATION_FRACTION` of the training split (which the
    training documents then exclude); the test split is not read at all then.
    ``max_docs`` and ``max_eval_docs`` take stratified subsets afterwards, so
    a quick run evaluates on part of the same held-out documents as a full one.
    """
    texts, labels = load_tsv(dataset, "train", data_dir)
    labels = np.asarray(labels)
    if validation:
        train_rows, eval_rows = train_test_split(
            np.arange(len(texts)), test_size=VALIDATION_FRACTION, random_state=seed, stratify=labels
        )
        train_rows, eval_rows = np.sort(train_rows), np.sort(eval_rows)
        train = [texts[i] for i in train_rows], labels[train_rows]
        held_out = [texts[i] for i in eval_rows], labels[eval_rows]
    else:
        train = texts, labels
        test_texts, test_labels = load_tsv(dataset, "test", data_dir)
        held_out = test_texts, np.asarray(test_labels)
    train = stratified_subset(*train, max_docs, seed)
    held_out = stratified_subset(*held_out, max_eval_docs, seed)
    return Split(dataset, "validation" if validation else "test", *train, *held_out)


# -- options of accuracy.py and ablations.py -------------------------------------


def add_common_arguments(parser):
    """Add the options of accuracy.py and ablations.py: data, subsets, epochs, seed, threads."""
    add = parser.add_argument
    add("--data-dir", help="folder holding the dataset folders (r8/, 20ng/, ...; default: shared/data "
                           "beside the repository)")
    add("--quick", action="store_true",
        help=f"stratified subsets of {QUICK_TRAIN_DOCS} training and {QUICK_EVAL_DOCS} evaluation "
             f"documents, max_epochs={QUICK_EPOCHS} for skattn")
    add("--max-docs", type=int, help="stratified subset of at most this many training documents")
    add("--max-eval-docs", type=int, help="stratified subset of at most this many evaluation documents")
    add("--max-epochs", type=int, help="max_epochs of the skattn estimators (default: skattn's)")
    add("--seed", type=int, default=0, help="subsets, validation split and every model's random_state")
    add("--threads", type=int,
        help="threads per row: OMP/MKL/OpenBLAS thread variables, torch.set_num_threads and fastText's "
             "thread (default: the libraries' own defaults; fastText uses every usable core)")
    add("--verbose", action="count", default=0, help="pass verbose=1 (-vv: 2) to the skattn estimators")


def resolve_quick(args):
    """Fill in the subset sizes and epochs that ``--quick`` implies, unless given."""
    if args.quick:
        args.max_docs = args.max_docs or QUICK_TRAIN_DOCS
        args.max_eval_docs = args.max_eval_docs or QUICK_EVAL_DOCS
        args.max_epochs = args.max_epochs or QUICK_EPOCHS
    return args


def common_options(args):
    """The shared options as command-line arguments for a child, ``--quick`` spelled out."""
    options = ["--seed", str(args.seed)] + ["--verbose"] * args.verbose
    for flag, value in {
        "--data-dir": args.data_dir,
        "--max-docs": args.max_docs,
        "--max-eval-docs": args.max_eval_docs,
        "--max-epochs": args.max_epochs,
        "--threads": args.threads,
    }.items():
        if value is not None:
            options += [flag, str(value)]
    return options


def split_of(args, dataset=None):
    """The split the options describe, for ``dataset`` or ``args.dataset``."""
    return load_split(
        dataset or args.dataset,
        data_dir=args.data_dir,
        seed=args.seed,
        validation=args.validation,
        max_docs=args.max_docs,
        max_eval_docs=args.max_eval_docs,
    )


# -- fitting and scoring --------------------------------------------------------------


def skattn_params(args, max_epochs=None):
    """Parameters every skattn estimator of a run shares: seed, verbosity, epochs if set."""
    params = {"random_state": args.seed, "verbose": args.verbose}
    if max_epochs is not None:
        params["max_epochs"] = max_epochs
    return params


def skattn_device_note(estimator):
    """Device and autocast precision that a skattn estimator's settings pick here, e.g. "cpu fp32, int8 predict"."""
    import torch

    from skattn._devices import resolve_device, resolve_inference_precision, resolve_precision

    device = resolve_device(estimator.device)
    dtype = resolve_precision(estimator.precision, device)
    int8 = resolve_inference_precision(estimator.precision, device) == torch.qint8
    return f"{device.type} {'bf16' if dtype == torch.bfloat16 else 'fp32'}" + (", int8 predict" if int8 else "")


def fit_skattn(classifier, split, threads):
    """Fit and predict with an AttentionClassifier; record epochs and convergence warnings."""
    import torch
    from sklearn.exceptions import ConvergenceWarning

    if threads:
        torch.set_num_threads(threads)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit_s = timed(classifier.fit, split.train_texts, split.train_labels)
    predictions, predict_s = timed_result(classifier.predict, split.eval_texts)
    not_converged = [
        str(w.message).split(":", 1)[0] for w in caught if issubclass(w.category, ConvergenceWarning)
    ]
    for w in caught:  # pass on anything else
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    device = skattn_device_note(classifier)
    notes = f"{device}, {classifier.n_iter_} epoch" + ("" if classifier.n_iter_ == 1 else "s")
    if not_converged:
        notes += "; not converged: " + ", ".join(not_converged)
    details = {
        "n_iter": classifier.n_iter_,
        "loss_curve": [float(loss) for loss in classifier.loss_curve_],
        "not_converged": not_converged,
        "device": device,
        "torch_threads": torch.get_num_threads(),
    }
    return predictions, fit_s, predict_s, notes, details


def timed_result(function, *arguments):
    """``function(*arguments)`` and the wall-clock seconds it took."""
    started = time.perf_counter()
    result = function(*arguments)
    return result, time.perf_counter() - started


def timed(function, *arguments):
    """Wall-clock seconds of ``function(*arguments)``."""
    return timed_result(function, *arguments)[1]


def scores(split, predictions, fit_s, predict_s):
    """The table's numbers for one fitted row."""
    return {
        "status": "ok",
        "accuracy": float(accuracy_score(split.eval_labels, predictions)),
        "macro_f1": float(f1_score(split.eval_labels, predictions, average="macro", zero_division=0)),
        "fit_s": fit_s,
        "predict_s": predict_s,
        "predict_docs_per_s": len(split.eval_texts) / predict_s,
        "train_docs": len(split.train_texts),
        "eval_docs": len(split.eval_texts),
    }


# -- one row per process ----------------------------------------------------------------


def emit(result):
    """Print a child's result where the parent looks for it, with the child's peak memory."""
    result["peak_rss_mib"] = peak_rss_mib()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def child_env(threads):
    """Environment of a child process, with thread counts capped when ``threads`` is set."""
    env = dict(os.environ)
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    return env


def spawn(command, threads=None):
    """Run ``command`` (a child that prints its result with :func:`emit`) and return its result dict.

    The child's stderr passes through. A child that dies, or prints no
    result, gives ``{"status": "failed", ...}``.
    """
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=child_env(threads), check=False)
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return {"status": "failed", "returncode": completed.returncode}


def time_inference(predict):
    """Seconds of a first (cold) and a second (warm) call of ``predict``.

    The first call also pays one-time costs: oneDNN compiles kernels for
    each new matrix shape. (skattn builds its bfloat16 inference replica at
    the end of ``fit``, so the fit time includes it.) Imports nothing, so a
    child that must not import PyTorch can use it.
    """
    times = []
    for _ in range(2):
        started = time.perf_counter()
        predict()
        times.append(time.perf_counter() - started)
    return {"first_infer_s": times[0], "infer_s": times[1]}


def best_seconds(functions, documents, repeats):
    """Best wall-clock seconds of each ``function(documents)``, over alternating warm turns.

    A first untimed call of each prepares kernels per shape (oneDNN, FBGEMM);
    taking turns lets the machine's load drift over all of them alike.
    """
    for function in functions:
        function(documents)
    best = [float("inf")] * len(functions)
    for _ in range(repeats):
        for index, function in enumerate(functions):
            started = time.perf_counter()
            function(documents)
            best[index] = min(best[index], time.perf_counter() - started)
    return best


def add_per_dataset_arguments(parser, repeats_help):
    """Options of a script that measures one row per dataset: datasets, split, repeats, output."""
    add = parser.add_argument
    add("--datasets", default="r8", help=f"comma-separated, from {', '.join(DATASETS)}; or 'all' (default: r8)")
    add("--validation", action="store_true",
        help="use a validation split of the training documents instead of the test split")
    add("--repeats", type=int, default=3, help=f"{repeats_help} (default: 3)")
    add("--markdown", action="store_true", help="print a markdown table")
    add("--output", help="also write the rows as JSON to this file")
    add_common_arguments(parser)


def run_per_dataset(parser, measure, table, settings):
    """Parse the options, ``measure(args, dataset)`` each dataset, print the machine and ``table(rows, markdown)``.

    ``settings(args)`` describes the run on the line above the table; the rows
    also go to ``--output`` as JSON.
    """
    args = resolve_quick(parser.parse_args())
    datasets = DATASETS if args.datasets == "all" else tuple(args.datasets.split(","))
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {', '.join(DATASETS)}")
    header = hardware_lines(args)  # the load average before the runs
    rows = []
    for dataset in datasets:
        rows.append(measure(args, dataset))
        print(f"{dataset}: done", flush=True)
    for line in header:
        print(line)
    print(f"{'validation' if args.validation else 'test'} split, seed {args.seed}, {settings(args)}")
    print(table(rows, args.markdown))
    if args.output:
        with open(args.output, "w") as file:
            json.dump(rows, file, indent=2)


# -- the machine ------------------------------------------------------------------------


def peak_rss_mib():
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def cpu_model():
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def package_version(*names):
    """Installed version of the first of ``names`` that is installed."""
    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "not installed"


def hardware_lines(args):
    """CPU, cores, load and library versions, printed above the tables."""
    threads = args.threads if args.threads else "library defaults"
    cpu = (f"CPU: {cpu_model()}; {os.cpu_count()} logical cores, {len(os.sched_getaffinity(0))} usable; "
           f"load average at start {os.getloadavg()[0]:.1f}; threads per row: {threads}")
    libraries = (f"torch {package_version('torch')}, skattn {package_version('skattn')}, "
                 f"scikit-learn {package_version('scikit-learn')}, "
                 f"fastText {package_version('fasttext', 'fasttext-wheel')}, Python {platform.python_version()}")
    return [cpu, libraries]


# -- tables -----------------------------------------------------------------------------


METRIC_COLUMNS = ("accuracy", "macro-F1", "fit s", "predict docs/s", "peak RSS MiB")


def metric_cells(result):
    """Accuracy, macro-F1, fit seconds, predict docs/s and peak RSS of a result, as strings."""
    if result.get("status") != "ok":
        status = result.get("status", "failed")
        if status == "failed" and "returncode" in result:
            status = f"failed (exit {result['returncode']})"
        return [status] + ["-"] * 4
    return [
        f"{result['accuracy']:.2%}",
        f"{result['macro_f1']:.2%}",
        f"{result['fit_s']:,.1f}",
        f"{result['predict_docs_per_s']:,.0f}",
        f"{result['peak_rss_mib']:,.0f}",
    ]


def format_table(columns, cells, markdown, text_columns=(0,)):
    """Aligned plain-text table, or a markdown table; ``text_columns`` are left-aligned, the rest right."""
    left = {i % len(columns) for i in text_columns}
    if markdown:
        rule = [":---" if i in left else "---:" for i in range(len(columns))]
        return "\n".join("| " + " | ".join(values) + " |" for values in [columns, rule, *cells])
    widths = [max(len(values[i]) for values in [columns, *cells]) for i in range(len(columns))]

    def line(values):
        return "  ".join(
            value.ljust(width) if i in left else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths))
        ).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(values) for values in cells)])
