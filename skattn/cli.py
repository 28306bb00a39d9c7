"""The ``skattn`` command: train, predict, evaluate, embed, inspect and serve models from a shell.

Every subcommand reads data files through :mod:`skattn._tables` and model
files through ``save`` and :func:`skattn.load`. PyTorch is imported only by
the subcommands that need it, so that ``skattn --help`` answers at once.
"""

import argparse
import codecs
import csv
import io
import json
import os
import sys
import time
import warnings
import zipfile
from contextlib import contextmanager

from . import __version__
from ._tables import TableError, read_table

DATA_HELP = "a .csv, .tsv, .jsonl or .ndjson file (each optionally .gz), or .parquet"

# Parameters that hold Python objects, which a command line cannot spell.
_NOT_FROM_COMMAND_LINE = ("encoder", "callbacks")


class CommandError(Exception):
    """An expected failure: reported as ``skattn: error: ...`` with exit status 1."""


class _UsageError(Exception):
    """Bad options found after parsing: reported by argparse with exit status 2."""


def main(argv=None):
    """Run the ``skattn`` command.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name; ``sys.argv[1:]`` if None.

    Returns
    -------
    status : int
        0 on success, 1 on an error in the data or model files. Usage errors
        exit with status 2 through argparse.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            status = args.handler(args)
        sys.stdout.flush()  # a full disk behind a redirect is reported now, not at exit
        return status
    except _UsageError as error:
        args.subparser.error(str(error))
    except (CommandError, TableError) as error:
        print(f"skattn: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("skattn: interrupted", file=sys.stderr)
        return 130
    except UnicodeEncodeError as error:  # a report with labels the console's encoding lacks
        print(
            f"skattn: error: this console's encoding ({error.encoding}) cannot show "
            f"{error.object[error.start:error.end]!r}; set PYTHONIOENCODING=utf-8 to print it",
            file=sys.stderr,
        )
        return 1
    except BrokenPipeError:  # stdout piped into a reader that stopped, such as head
        _silence_stdout()
        return 1
    except OSError as error:  # e.g. stdout redirected to a full disk
        print(f"skattn: error: {error}", file=sys.stderr)
        _silence_stdout()
        return 1


def _silence_stdout():
    # Python flushes stdout again at exit; pointing it at devnull keeps that from failing too.
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"skattn: warning: {message}", file=sys.stderr)


# -- the parser -----------------------------------------------------------------------


def _parser():
    parser = argparse.ArgumentParser(
        prog="skattn", description="Train and use skattn text classifiers and encoders from the command line."
    )
    parser.add_argument("--version", action="version", version=f"skattn {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")

    def command(name, handler, summary):
        subparser = commands.add_parser(name, help=summary, description=summary)
        subparser.set_defaults(handler=handler, subparser=subparser)
        return subparser

    train = command("train", _train, "Fit an AttentionClassifier on a data file and save it.")
    _data_arguments(train, labels=True)
    train.add_argument("-o", "--output", required=True, metavar="MODEL", help="the model file to write")
    train.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="an AttentionClassifier parameter, repeatable; VALUE is read as JSON when it parses "
        "(3, 1e-3, true, null, [1, 2]), else as a string",
    )
    train.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    predict = command("predict", _predict, "Write the predicted label of each row as CSV.")
    predict.add_argument("model", metavar="MODEL", help="a classifier's model file")
    _data_arguments(predict, labels=False)
    predict.add_argument("-o", "--output", metavar="OUT", help="the CSV file to write (default: stdout)")
    predict.add_argument("--proba", action="store_true", help="add one probability column per class")

    evaluate = command("evaluate", _evaluate, "Score a classifier: accuracy, macro-F1, report, confusion matrix.")
    evaluate.add_argument("model", metavar="MODEL", help="a classifier's model file")
    _data_arguments(evaluate, labels=True)
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")

    embed = command("embed", _embed, "Save the vectors of an AttentionEncoder as a .npy array.")
    embed.add_argument("model", metavar="MODEL", help="an encoder's model file")
    _data_arguments(embed, labels=False)
    embed.add_argument("-o", "--output", required=True, metavar="OUT", help="the .npy file to write")

    info = command("info", _info, "Describe a model file: class, classes, parameters, versions.")
    info.add_argument("model", metavar="MODEL", help="a model file")
    info.add_argument("--json", action="store_true", help="print the description as JSON")

    demo = command("demo", _demo, "Train and evaluate a classifier on the shipped Reuters R8 dataset.")
    demo.add_argument("--random-state", type=int, default=0, metavar="SEED", help="default: 0")
    demo.add_argument("--max-epochs", type=_positive_int, default=None, metavar="N", help="default: the estimator's")
    demo.add_argument("-o", "--output", metavar="MODEL", help="also save the fitted model there")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    serve = command("serve", _serve, "Serve a model's predictions over HTTP (needs skattn[serve]).")
    serve.add_argument("model", metavar="MODEL", help="a model file")
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000, help="default: 8000")
    serve.add_argument(
        "--max-texts", type=_positive_int, default=1000, metavar="N", help="most texts in one request (default: 1000)"
    )
    serve.add_argument(
        "--max-text-chars", type=_positive_int, default=100_000, metavar="N",
        help="most characters in one text (default: 100000)",
    )
    return parser


def _data_arguments(parser, *, labels):
    parser.add_argument("data", metavar="DATA", help=DATA_HELP)
    parser.add_argument("--text-col", default="text", metavar="COL", help="the column of the texts (default: text)")
    if labels:
        parser.add_argument("--label-col", default="label", metavar="COL", help="the column of the labels (default: label)")
    parser.add_argument(
        "--no-header", action="store_true",
        help="the CSV or TSV file has no header row: give columns as 0-based positions",
    )


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _port(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return value


# -- shared steps ---------------------------------------------------------------------


def _read(args, *, labels):
    """The texts (and labels) of ``args.data``, from the columns the options name."""
    columns = [args.text_col] + ([args.label_col] if labels else [])
    if args.no_header:
        bad = [column for column in columns if not column.isdecimal()]
        if bad:
            raise _UsageError(f"with --no-header, columns are 0-based positions such as 0 or 1; got {bad[0]!r}")
        columns = [int(column) for column in columns]
    texts, label_values = read_table(
        args.data, columns[0], columns[1] if labels else None, header=not args.no_header
    )
    return (texts, label_values) if labels else texts


def _load(path):
    if not os.path.isfile(path):
        raise CommandError(f"{path}: no such model file.")
    from ._persistence import ModelFileError, load

    try:
        return load(path)
    except (ModelFileError, OSError) as error:
        raise CommandError(str(error)) from None


def _load_classifier(path, command):
    from ._classifier import AttentionClassifier

    estimator = _load(path)
    if not isinstance(estimator, AttentionClassifier):
        raise CommandError(
            f"skattn {command} needs an AttentionClassifier model; {path} holds an {type(estimator).__name__}."
        )
    if not hasattr(estimator, "model_"):
        raise CommandError(f"{path} holds an unfitted AttentionClassifier.")
    if estimator._multilabel:
        raise CommandError(f"skattn {command} handles single-label classifiers; {path} is multilabel.")
    return estimator


def _save(estimator, path):
    try:
        estimator.save(path)
    except OSError as error:
        raise CommandError(f"cannot write the model file {path}: {error.strerror or error}") from None


@contextmanager
def _output(path, mode="w"):
    """``path`` opened for writing, or stdout when it is None.

    Text goes out as UTF-8 either way, so labels in any script survive a
    console or a redirect whose own encoding cannot hold them. A file is
    written atomically: if writing fails, an earlier file at ``path`` stays
    as it was.
    """
    if path is None:
        stdout_bytes = getattr(sys.stdout, "buffer", None)
        if stdout_bytes is None:  # a stream that only takes text (a notebook's)
            yield sys.stdout
            return
        # A failed write here (a full disk behind a redirect) reaches main's OSError branch.
        sys.stdout.flush()  # what was printed before comes first
        yield stdout_bytes if "b" in mode else codecs.getwriter("utf-8")(stdout_bytes)
        stdout_bytes.flush()
        return
    from ._files import atomic_file

    with _write_errors(path), atomic_file(path) as file:
        if "b" in mode:
            yield file
            return
        text = io.TextIOWrapper(file, encoding="utf-8", newline="")
        yield text
        text.flush()
        text.detach()  # atomic_file closes the file


class _Writable:
    """A file seen only through its ``write`` method: NumPy then writes it in order, without seeking."""

    def __init__(self, file):
        self.write = file.write


@contextmanager
def _write_errors(where):
    """Report a failed write (a full disk, a read-only folder) as a CommandError naming ``where``."""
    try:
        yield
    except OSError as error:
        raise CommandError(f"cannot write {where}: {error.strerror or error}") from None


def _check_output_path(path, what):
    """Refuse, before any work, a path that ``atomic_file`` could not write to."""
    from ._files import names_a_directory

    if path == "":
        raise CommandError(f"cannot write the {what}: the output path is empty.")
    if os.path.isdir(path) or names_a_directory(path):
        raise CommandError(f"cannot write the {what} {path}: it names a directory.")
    folder = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"cannot write the {what} {path}: no folder {folder}.")
    if os.path.exists(path) and not os.path.isfile(path):
        return  # a device or a pipe, written directly
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"cannot write the {what} {path}: the folder {folder} is not writable.")


# -- train ----------------------------------------------------------------------------


def _train(args):
    from ._classifier import AttentionClassifier

    params = _classifier_params(args.param)
    params.setdefault("verbose", 0 if args.quiet else 1)
    _check_output_path(args.output, "model file")  # found now rather than after training
    texts, labels = _read(args, labels=True)
    classifier = AttentionClassifier(**params)
    try:
        classifier.fit(texts, labels)
    except (ValueError, TypeError) as error:
        raise CommandError(f"cannot train on {args.data}: {error}") from None
    _save(classifier, args.output)
    if not args.quiet:
        print(
            f"skattn: trained on {len(texts):,} texts, {len(classifier.classes_)} classes, "
            f"{classifier.n_iter_} epoch{'s' if classifier.n_iter_ != 1 else ''}; saved {args.output}",
            file=sys.stderr,
        )
    return 0


def _classifier_params(pairs):
    """The ``--param NAME=VALUE`` options as AttentionClassifier parameters, each validated."""
    from ._classifier import AttentionClassifier

    names = [name for name in AttentionClassifier().get_params(deep=False) if name not in _NOT_FROM_COMMAND_LINE]
    params = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        name = name.strip()
        if not equals or not name:
            raise _UsageError(f"--param expects NAME=VALUE, got {pair!r}")
        if name not in names:
            raise _UsageError(
                f"--param {name}: unknown parameter; AttentionClassifier's parameters are {', '.join(sorted(names))}"
            )
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if name == "ngram_range" and isinstance(value, list):
            value = tuple(value)
        try:
            AttentionClassifier(**{name: value})._validate_params()
        except (ValueError, TypeError) as error:
            raise _UsageError(f"--param {name}={text}: {error}") from None
        params[name] = value
    try:
        AttentionClassifier(**params)._check_params()  # rules across parameters
    except (ValueError, TypeError) as error:
        raise _UsageError(f"--param: {error}") from None
    return params


# -- predict, evaluate, embed ---------------------------------------------------------


# Texts per call in predict, evaluate and embed: a progress bar advances per chunk.
_CHUNK = 2048


def _in_chunks(method, texts, what):
    """``method(texts)``, called on chunks of texts with a progress bar on a terminal's stderr."""
    import numpy as np
    from tqdm.auto import tqdm

    chunks = range(0, len(texts), _CHUNK)
    show = sys.stderr.isatty() and len(chunks) > 1
    with tqdm(total=len(texts), desc=what, unit="text", disable=not show, file=sys.stderr) as bar:
        parts = []
        for start in chunks:
            parts.append(method(texts[start : start + _CHUNK]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)


def _predict(args):
    classifier = _load_classifier(args.model, "predict")
    texts = _read(args, labels=False)
    classes = classifier.classes_
    if args.proba:
        proba = _in_chunks(classifier.predict_proba, texts, "predict")
        predictions = classes[proba.argmax(axis=1)]
    else:
        predictions = _in_chunks(classifier.predict, texts, "predict")
    with _output(args.output) as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["row", "label"] + ([f"proba_{label}" for label in classes] if args.proba else []))
        for row, label in enumerate(predictions.tolist()):
            writer.writerow([row, label] + ([f"{p:.7g}" for p in proba[row]] if args.proba else []))
    return 0


def _evaluate(args):
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    classifier = _load_classifier(args.model, "evaluate")
    texts, labels = _read(args, labels=True)
    # Compared as text: a CSV file gives "1" where the model may hold the class 1.
    y_true = [str(label) for label in labels]
    y_pred = [str(label) for label in _in_chunks(classifier.predict, texts, "evaluate").tolist()]
    known = [str(label) for label in classifier.classes_.tolist()]
    present = set(y_true) | set(y_pred)
    order = [label for label in known if label in present] + sorted(present - set(known))
    accuracy = accuracy_score(y_true, y_pred)
    macro_f1 = f1_score(y_true, y_pred, labels=order, average="macro", zero_division=0)
    with warnings.catch_warnings():
        # scikit-learn warns of a single label even when given the labels, as here.
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        matrix = confusion_matrix(y_true, y_pred, labels=order)
    if args.json:
        report = classification_report(y_true, y_pred, labels=order, output_dict=True, zero_division=0)
        result = {
            "n_samples": len(y_true), "accuracy": accuracy, "macro_f1": macro_f1, "report": report,
            "confusion_matrix": {"labels": order, "matrix": matrix.tolist()},
        }
        print(json.dumps(result, indent=2))
        return 0
    print(f"accuracy  {accuracy:.4f}")
    print(f"macro-F1  {macro_f1:.4f}")
    print(f"texts     {len(y_true):,}")
    print()
    print(classification_report(y_true, y_pred, labels=order, digits=4, zero_division=0))
    print("confusion matrix (rows: true label, columns: predicted label)")
    print(_matrix_table(order, matrix))
    return 0


def _matrix_table(labels, matrix):
    corner = "true \\ predicted"
    first = max(len(corner), *(len(label) for label in labels))
    widths = [max(len(label), len(str(column.max()))) for label, column in zip(labels, matrix.T)]
    lines = ["  ".join([corner.ljust(first)] + [label.rjust(width) for label, width in zip(labels, widths)])]
    for label, row in zip(labels, matrix):
        lines.append("  ".join([label.ljust(first)] + [str(count).rjust(width) for count, width in zip(row, widths)]))
    return "\n".join(lines)


def _embed(args):
    import numpy as np

    from ._encoder import AttentionEncoder

    encoder = _load(args.model)
    if not isinstance(encoder, AttentionEncoder):
        raise CommandError(f"skattn embed needs an AttentionEncoder model; {args.model} holds an {type(encoder).__name__}.")
    if not hasattr(encoder, "model_"):
        raise CommandError(f"{args.model} holds an unfitted AttentionEncoder.")
    vectors = _in_chunks(encoder.transform, _read(args, labels=False), "embed")
    with _output(args.output, "wb") as file:
        # NumPy writes a real file object with tofile(), which needs a seekable file: a pipe is not.
        np.save(_Writable(file), vectors)
    return 0


# -- info -----------------------------------------------------------------------------


def _info(args):
    from ._persistence import parameters_as_json

    estimator = _load(args.model)
    with zipfile.ZipFile(args.model) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    fitted = hasattr(estimator, "model_")
    classes = estimator.classes_.tolist() if fitted and hasattr(estimator, "classes_") else None
    description = {
        "path": args.model,
        "class": type(estimator).__name__,
        "fitted": fitted,
        "classes": classes,
        "n_weights": sum(p.numel() for p in estimator.model_.parameters()) if fitted else 0,
        "file_size": os.path.getsize(args.model),
        "format_version": manifest.get("format_version"),
        "versions": manifest.get("versions", {}),
        "params": parameters_as_json(estimator.get_params(deep=False)),
    }
    if args.json:
        print(json.dumps(description, indent=2))
        return 0
    rows = [
        ("class", description["class"] + ("" if fitted else " (not fitted)")),
        ("classes", ", ".join(str(label) for label in classes) + f" ({len(classes)})" if classes is not None else "-"),
        ("weights", f"{description['n_weights']:,}"),
        ("file size", f"{_size(description['file_size'])} ({description['file_size']:,} bytes)"),
        ("format", f"{manifest.get('format')} version {description['format_version']}"),
        ("saved with", ", ".join(f"{name} {version}" for name, version in description["versions"].items())),
    ]
    for name, value in rows:
        print(f"{name:<12}{value}")
    print("parameters")
    params = estimator.get_params(deep=False)
    width = max(len(name) for name in params) + 2
    for name, value in params.items():
        print(f"  {name:<{width}}{value if isinstance(value, str) else repr(value)}")
    return 0


def _size(n_bytes):
    for unit in ("bytes", "kB", "MB"):
        if n_bytes < 1000:
            return f"{n_bytes:.3g} {unit}" if unit != "bytes" else f"{n_bytes} bytes"
        n_bytes /= 1000
    return f"{n_bytes:.3g} GB"


# -- demo -----------------------------------------------------------------------------


def _demo(args):
    """The shipped R8 job; ``examples/train_r8.py`` runs it too."""
    from sklearn.metrics import accuracy_score, f1_score

    from ._classifier import AttentionClassifier
    from .datasets import load_r8

    if args.output is not None:
        _check_output_path(args.output, "model file")  # found now rather than after training
    X_train, y_train, X_test, y_test = load_r8()
    print(f"R8: {len(X_train)} training and {len(X_test)} test documents, {len(set(y_train))} topics")

    params = {"random_state": args.random_state, "verbose": 0 if args.quiet else 1}
    if args.max_epochs is not None:
        params["max_epochs"] = args.max_epochs
    clf = AttentionClassifier(**params)

    started = time.perf_counter()
    clf.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - started

    started = time.perf_counter()
    y_pred = clf.predict(X_test)
    predict_seconds = time.perf_counter() - started

    print(f"test accuracy  {accuracy_score(y_test, y_pred):.4f}")
    print(f"test macro-F1  {f1_score(y_test, y_pred, average='macro'):.4f}")
    print(f"fit            {fit_seconds:.1f} s")
    print(f"predict        {predict_seconds:.1f} s ({len(X_test) / predict_seconds:,.0f} docs/s)")
    if args.output is not None:
        _save(clf, args.output)
        print(f"saved          {args.output}")
    return 0


# -- serve ----------------------------------------------------------------------------


_SERVE_EXTRA = "skattn serve needs the serve extra: pip install 'skattn[serve]'"


def _serve(args):
    try:
        from .serve import run
    except ImportError:
        raise CommandError(_SERVE_EXTRA) from None
    from sklearn.exceptions import NotFittedError

    from ._persistence import ModelFileError

    if not os.path.isfile(args.model):
        raise CommandError(f"{args.model}: no such model file.")
    try:
        run(args.model, host=args.host, port=args.port, max_texts=args.max_texts, max_text_chars=args.max_text_chars)
    except ModelFileError as error:
        raise CommandError(str(error)) from None
    except NotFittedError:
        raise CommandError(f"{args.model} holds an unfitted model; train it before serving it.") from None
    except ImportError as error:  # run imports uvicorn only when called
        raise CommandError(f"{_SERVE_EXTRA} ({error})") from None
    except SystemExit as stopped:  # uvicorn's way to report a server that could not start
        if stopped.code in (0, None):
            return 0
        raise CommandError(
            f"the server could not start on {args.host}:{args.port} (the address is in use or unknown; "
            f"uvicorn's line above says which)."
        ) from None
    return 0
