"""Validation accuracy of AttentionClassifier variants, appended to a CSV that accumulates across runs.

Each variant is ``NAME=PARAMS``, PARAMS a JSON object of AttentionClassifier
parameters. Every variant is fitted on the same training documents and scored
on a stratified 10% validation split carved out of the training split (the
test split is never read), each in a subprocess of its own. See
benchmarks/README.md.

Run from the repository root::

    python benchmarks/ablations.py --dataset r8 --variant base='{}' --variant bpe='{"tokenizer": "bpe"}'
    python benchmarks/ablations.py --quick --variant base='{}'          # smoke test
    python benchmarks/ablations.py --variant pre='{"encoder": {"max_epochs": 5}}'
"""

import argparse
import csv
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from _common import (
    DATASETS, METRIC_COLUMNS, add_common_arguments, common_options, emit, fit_skattn, format_table,
    hardware_lines, metric_cells, resolve_quick, scores, skattn_params, spawn, split_of,
)

DEFAULT_CSV = Path(__file__).resolve().parent / "results" / "ablations.csv"
CSV_FIELDS = (
    "timestamp", "commit", "dataset", "variant", "params", "seed", "train_docs", "eval_docs", "status",
    "accuracy", "macro_f1", "fit_s", "predict_docs_per_s", "peak_rss_mib", "n_iter", "not_converged",
)


# -- command line ---------------------------------------------------------------


def parse_variant(text):
    """``NAME=JSON`` as ``(name, params)``; ``argparse.ArgumentTypeError`` if malformed."""
    name, equals, params = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=JSON, got {text!r}")
    try:
        params = json.loads(params)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"variant {name!r}: PARAMS is not JSON ({error})") from None
    if not isinstance(params, dict):
        raise argparse.ArgumentTypeError(f"variant {name!r}: PARAMS must be a JSON object, got {params!r}")
    return name, params


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--dataset", default="r8", choices=DATASETS)
    add("--variant", dest="variants", action="append", type=parse_variant, metavar="NAME=JSON",
        help='a variant: its name and its AttentionClassifier parameters as a JSON object, e.g. '
             'bpe=\'{"tokenizer": "bpe"}\'; "encoder": {...} (or true) fine-tunes an AttentionEncoder with '
             'those parameters, pretrained on the training texts; repeat for more variants')
    add_common_arguments(parser)
    add("--csv", default=str(DEFAULT_CSV), help="CSV file to append one line per variant to (created with "
        "its folder if missing; default: benchmarks/results/ablations.csv)")
    add("--no-csv", action="store_true", help="do not write the CSV")
    add("--markdown", action="store_true", help="print a markdown table")
    # Internal: fit one variant in this process and print its result as JSON.
    add("--child", help=argparse.SUPPRESS)
    add("--params", type=json.loads, help=argparse.SUPPRESS)
    args = resolve_quick(parser.parse_args(argv))
    args.validation = True  # the only split ablations may look at
    if args.child is None:
        check_variants(parser, args.variants)
    return args


def check_variants(parser, variants):
    """Exit with a usage error for no variants, repeated names or unknown parameters."""
    from skattn import AttentionClassifier, AttentionEncoder

    if not variants:
        parser.error("give at least one --variant NAME=JSON")
    names = [name for name, _ in variants]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        parser.error(f"variant names must be unique; repeated: {', '.join(repeated)}")
    known = set(AttentionClassifier().get_params())
    known_encoder = set(AttentionEncoder().get_params())
    for name, params in variants:
        unknown = set(params) - known
        encoder = params.get("encoder")
        if isinstance(encoder, dict):
            unknown |= {f"encoder.{key}" for key in set(encoder) - known_encoder}
        elif encoder not in (None, True, False):
            parser.error(f"variant {name!r}: encoder must be a JSON object, true, false or null")
        if unknown:
            parser.error(f"variant {name!r}: unknown AttentionClassifier parameters {sorted(unknown)}")


def main(argv=None):
    args = parse_args(argv)
    if args.child is not None:
        run_child(args)
    else:
        sys.exit(run_parent(args))


# -- one variant per process -------------------------------------------------------------


def effective_params(params, args):
    """The variant's parameters over the run's seed and epochs; ``encoder`` stays a dict (or None)."""
    merged = {**skattn_params(args, args.max_epochs), **params}
    encoder = merged.get("encoder")
    if encoder is True:
        encoder = {}
    if isinstance(encoder, dict):
        merged["encoder"] = {**skattn_params(args, args.max_epochs), **encoder}
    else:
        merged["encoder"] = None
    return merged


def build_classifier(params):
    """An AttentionClassifier from :func:`effective_params` output."""
    from skattn import AttentionClassifier, AttentionEncoder

    encoder = params["encoder"]
    params = dict(params, encoder=None if encoder is None else AttentionEncoder(**encoder))
    if isinstance(params.get("ngram_range"), list):  # JSON has no tuples
        params["ngram_range"] = tuple(params["ngram_range"])
    return AttentionClassifier(**params)


def run_child(args):
    """Fit the variant ``args.child`` on the training part and score it on the validation part."""
    split = split_of(args)
    classifier = build_classifier(effective_params(args.params, args))
    predictions, fit_s, predict_s, notes, details = fit_skattn(classifier, split, args.threads)
    emit({**scores(split, predictions, fit_s, predict_s), "notes": notes, "details": details})


def spawn_variant(name, params, args):
    """Fit and score one variant in a fresh interpreter."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name,
               "--params", json.dumps(params), "--dataset", args.dataset]
    return spawn(command + common_options(args), args.threads)


# -- results ------------------------------------------------------------------------------


def git_commit():
    """Short commit of the repository, with ``+dirty`` for uncommitted changes; '' outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return commit + ("+dirty" if dirty else "")


def params_json(params):
    """Parameters as one line of JSON, without verbosity (it does not change the model) or a null encoder."""
    shown = {k: v for k, v in params.items() if k != "verbose" and not (k == "encoder" and v is None)}
    if isinstance(shown.get("encoder"), dict):
        shown["encoder"] = {k: v for k, v in shown["encoder"].items() if k != "verbose"}
    return json.dumps(shown, sort_keys=True)


def csv_record(name, params, result, args, split, stamp, commit):
    """One CSV line (a dict over :data:`CSV_FIELDS`) for a variant's result."""
    details = result.get("details", {})
    record = {
        "timestamp": stamp,
        "commit": commit,
        "dataset": args.dataset,
        "variant": name,
        "params": params_json(effective_params(params, args)),
        "seed": args.seed,
        "train_docs": len(split.train_texts),
        "eval_docs": len(split.eval_texts),
        "status": result.get("status", "failed"),
        "n_iter": details.get("n_iter", ""),
        "not_converged": "; ".join(details.get("not_converged", [])),
    }
    for field in ("accuracy", "macro_f1", "fit_s", "predict_docs_per_s", "peak_rss_mib"):
        value = result.get(field)
        record[field] = "" if value is None or record["status"] != "ok" else f"{value:.6g}"
    return record


def append_csv(path, records):
    """Append ``records`` to the CSV at ``path``, writing the header first if the file is new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, newline="", encoding="utf-8") as existing:
            header = next(csv.reader(existing), [])
        if header != list(CSV_FIELDS):
            raise SystemExit(f"{path} has other columns than this script writes; pass --csv NEW_FILE.")
    with open(path, "a", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(records)


# -- the parent ---------------------------------------------------------------------------------


def run_parent(args):
    """Run each variant in a subprocess, print the table and append the CSV."""
    split = split_of(args)
    stamp = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    bullet = "- " if args.markdown else ""
    for text in hardware_lines(args):
        print(bullet + text)
    if args.quick:
        print(f"{bullet}--quick: subsets for a smoke test, not numbers to quote")
    results = {}
    for name, params in args.variants:
        print(f"{args.dataset}: running variant {name} ...", file=sys.stderr, flush=True)
        results[name] = spawn_variant(name, params, args)

    columns = ("variant", *METRIC_COLUMNS, "notes", "params")
    cells = [[name, *metric_cells(results[name]), results[name].get("notes", ""),
              params_json(effective_params(params, args))] for name, params in args.variants]
    heading = split.describe()
    print()
    print(f"### {heading}" if args.markdown else heading)
    print()
    print(format_table(columns, cells, args.markdown, text_columns=(0, -2, -1)))
    if not args.no_csv:
        commit = git_commit()
        records = [csv_record(name, params, results[name], args, split, stamp, commit)
                   for name, params in args.variants]
        append_csv(args.csv, records)
        print(f"\nappended {len(records)} line(s) to {args.csv}")
    return 0 if all(result.get("status") == "ok" for result in results.values()) else 1


if __name__ == "__main__":
    main()
