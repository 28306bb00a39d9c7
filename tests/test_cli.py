"""The ``skattn`` command line, run in-process through ``main`` (and once as the installed script).

``skattn demo`` trains a full-size model on R8 (minutes, even for one epoch),
so only its ``--help`` is run here.
"""

import csv
import errno
import gzip
import io
import json
import os
import re
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

import skattn
from skattn import AttentionClassifier, AttentionEncoder
from skattn._tables import read_table
from skattn.cli import main

from .conftest import TINY, TOPIC_LABELS, TOPIC_TEXTS

TEXTS = TOPIC_TEXTS * 2
LABELS = [f"topic{label}" for label in TOPIC_LABELS * 2]
TINY_PARAMS = [option for name, value in TINY.items() for option in ("--param", f"{name}={value}")]
COMMANDS = ["train", "predict", "evaluate", "embed", "info", "demo", "serve"]


def write_csv(path, rows, header=("label", "text")):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def write_tsv(path, rows):
    with gzip.open(path, "wt", encoding="utf-8") as file:
        file.writelines(f"{label}\t{text}\n" for label, text in rows)
    return str(path)


def write_jsonl(path, rows):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as file:
        file.writelines(json.dumps({"label": label, "text": text, "id": i}) + "\n" for i, (label, text) in enumerate(rows))
    return str(path)


def write_parquet(path, rows):
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pandas.DataFrame({"label": [r[0] for r in rows], "text": [r[1] for r in rows]}).to_parquet(path)
    return str(path)


def run(argv, capsys):
    """``(exit status, stdout, stderr)`` of ``skattn argv``, usage errors included."""
    try:
        status = main(argv)
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    rows = list(zip(LABELS, TEXTS))
    return {
        "csv": write_csv(folder / "topics.csv", rows),
        "tsv": write_tsv(folder / "topics.tsv.gz", rows),  # the shipped datasets' format
        "jsonl": write_jsonl(folder / "topics.ndjson.gz", rows),
    }


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("models") / "topics.skattn")
    argv = ["train", data["tsv"], "--no-header", "--text-col", "1", "--label-col", "0", "-o", path, "--quiet"]
    assert main(argv + TINY_PARAMS + ["--param", "ngram_range=[1,1]", "--param", "learning_rate=3e-3"]) == 0
    return path


@pytest.fixture(scope="module")
def encoder_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "encoder.skattn"
    AttentionEncoder(**TINY).fit(TEXTS).save(path)
    return str(path)


# -- train, predict, evaluate, embed, info ----------------------------------------------


def test_train_parses_param_values_as_json(model):
    classifier = skattn.load(model)
    assert classifier.ngram_range == (1, 1)
    assert classifier.learning_rate == 3e-3 and classifier.d_model == 16 and classifier.tokenizer == "wordpiece"
    assert classifier.classes_.tolist() == ["topic0", "topic1", "topic2"]


def test_train_saves_a_model_of_float_labels(tmp_path, capsys):
    # A pandas column of labels with a missing value is written as floats: 0.0, 1.0, 2.0.
    rows = [(float(label), text) for label, text in zip(TOPIC_LABELS, TOPIC_TEXTS)]
    path = tmp_path / "m.skattn"
    status, _, err = run(["train", write_jsonl(tmp_path / "f.jsonl", rows), "-o", str(path), "-q", *TINY_PARAMS], capsys)
    assert status == 0, err
    assert skattn.load(path).classes_.tolist() == [0.0, 1.0, 2.0]


def test_train_shows_progress_unless_quiet(data, tmp_path, capsys):
    status, out, err = run(["train", data["jsonl"], "-o", str(tmp_path / "m.skattn"), *TINY_PARAMS], capsys)
    assert status == 0 and (tmp_path / "m.skattn").is_file()
    assert "epoch 1/2" in err and "trained on 36 texts" in err and out == ""


def test_predict_gives_the_labels_of_the_loaded_model(model, data, capsys):
    status, out, err = run(["predict", model, data["csv"]], capsys)
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["row"] for row in rows] == [str(i) for i in range(len(TEXTS))]
    assert [row["label"] for row in rows] == skattn.load(model).predict(TEXTS).tolist()


def test_long_work_shows_a_progress_bar_on_a_terminal(model, tmp_path, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    many = (TEXTS * 120)[:4100]  # more than two chunks of texts
    path = write_csv(tmp_path / "many.csv", [("", text) for text in many])
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    status, out, _ = run(["predict", model, path], capsys)
    assert status == 0
    assert "predict" in terminal.getvalue() and "4100/4100" in terminal.getvalue()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["label"] for row in rows] == skattn.load(model).predict(many).tolist()


def test_predict_proba_writes_one_column_per_class(model, data, tmp_path, capsys):
    out_path = tmp_path / "predictions.csv"
    status, out, _ = run(["predict", model, data["csv"], "--proba", "-o", str(out_path)], capsys)
    assert status == 0 and out == ""
    with open(out_path, newline="") as file:
        rows = list(csv.DictReader(file))
    classes = ["topic0", "topic1", "topic2"]
    assert list(rows[0]) == ["row", "label"] + [f"proba_{c}" for c in classes]
    proba = np.array([[float(row[f"proba_{c}"]) for c in classes] for row in rows])
    np.testing.assert_allclose(proba, skattn.load(model).predict_proba(TEXTS), atol=1e-6)
    assert [row["label"] for row in rows] == [classes[i] for i in proba.argmax(axis=1)]


def test_predict_reads_a_field_larger_than_the_csv_default_limit(model, tmp_path, capsys):
    path = write_csv(tmp_path / "long.csv", [("x", "the team won " * 20_000)])  # 260 kB in one field
    status, out, err = run(["predict", model, path], capsys)
    assert status == 0, err
    assert len(out.splitlines()) == 2


CHINESE_LABELS = {"topic0": "经济", "topic1": "体育", "topic2": "天气"}


@pytest.fixture(scope="module")
def chinese_labels_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "chinese.skattn"
    AttentionClassifier(**TINY).fit(TEXTS, [CHINESE_LABELS[label] for label in LABELS]).save(path)
    return str(path)


def latin1_stdout(monkeypatch):
    """A stdout whose encoding holds no Chinese, as a console or redirect on some systems has."""
    stream = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    monkeypatch.setattr(sys, "stdout", stream)
    return stream


def test_predict_writes_utf8_whatever_the_console_encoding(chinese_labels_model, data, monkeypatch):
    stdout = latin1_stdout(monkeypatch)
    assert main(["predict", chinese_labels_model, data["csv"]]) == 0
    rows = list(csv.DictReader(io.StringIO(stdout.buffer.getvalue().decode("utf-8"))))
    assert [row["label"] for row in rows] == skattn.load(chinese_labels_model).predict(TEXTS).tolist()
    assert {row["label"] for row in rows} <= set(CHINESE_LABELS.values())


def test_a_report_the_console_cannot_encode_is_a_clear_error(chinese_labels_model, tmp_path, monkeypatch, capsys):
    path = write_csv(tmp_path / "labelled.csv", [(CHINESE_LABELS[label], text) for label, text in zip(LABELS, TEXTS)])
    latin1_stdout(monkeypatch)
    assert main(["evaluate", chinese_labels_model, path]) == 1
    err = capsys.readouterr().err
    assert "skattn: error: this console's encoding (latin-1) cannot show" in err
    assert "set PYTHONIOENCODING=utf-8" in err and "Traceback" not in err


def test_evaluate_prints_sklearn_accuracy_and_a_labelled_confusion_matrix(model, data, capsys):
    expected = accuracy_score(LABELS, skattn.load(model).predict(TEXTS))
    status, out, _ = run(["evaluate", model, data["csv"]], capsys)
    assert status == 0
    assert f"accuracy  {expected:.4f}" in out
    assert "macro-F1" in out and "precision" in out and "confusion matrix" in out
    assert "true \\ predicted  topic0  topic1  topic2" in out

    status, out, _ = run(["evaluate", model, data["jsonl"], "--json"], capsys)
    result = json.loads(out)
    assert status == 0 and result["accuracy"] == expected and result["n_samples"] == len(TEXTS)
    assert result["confusion_matrix"]["labels"] == ["topic0", "topic1", "topic2"]
    assert np.sum(result["confusion_matrix"]["matrix"]) == len(TEXTS)
    assert set(result["report"]) >= {"topic0", "macro avg"}


def test_embed_writes_one_vector_per_row(encoder_model, data, tmp_path, capsys):
    out_path = tmp_path / "vectors.npy"
    status, _, err = run(["embed", encoder_model, data["csv"], "-o", str(out_path)], capsys)
    assert status == 0, err
    vectors = np.load(out_path)
    assert vectors.shape == (len(TEXTS), TINY["d_model"])
    np.testing.assert_allclose(vectors, skattn.load(encoder_model).transform(TEXTS), atol=1e-6)


def test_embed_refuses_a_classifier_and_predict_an_encoder(model, encoder_model, data, tmp_path, capsys):
    status, _, err = run(["embed", model, data["csv"], "-o", str(tmp_path / "v.npy")], capsys)
    assert status == 1 and "embed needs an AttentionEncoder model" in err
    status, _, err = run(["predict", encoder_model, data["csv"]], capsys)
    assert status == 1 and "predict needs an AttentionClassifier model" in err


def test_info_shows_classes_parameters_and_versions(model, encoder_model, capsys):
    with zipfile.ZipFile(model) as archive:
        versions = json.loads(archive.read("manifest.json"))["versions"]
    status, out, _ = run(["info", model], capsys)
    assert status == 0
    assert "AttentionClassifier" in out and "topic0, topic1, topic2 (3)" in out
    assert f"torch {versions['torch']}" in out and "ngram_range" in out

    status, out, _ = run(["info", model, "--json"], capsys)
    info = json.loads(out)
    assert info["classes"] == ["topic0", "topic1", "topic2"] and info["versions"] == versions
    assert info["format_version"] == 2 and info["params"]["ngram_range"] == [1, 1]
    assert info["n_weights"] == sum(p.numel() for p in skattn.load(model).model_.parameters())

    status, out, _ = run(["info", encoder_model, "--json"], capsys)
    assert status == 0 and json.loads(out)["classes"] is None


# -- data files --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.tsv.gz", "t.jsonl", "t.ndjson.gz", "t.parquet"])
def test_every_format_reads_the_same_rows(tmp_path, name):
    rows = [("b", 'a "quoted" text, with a comma'), ("a", "ünïcode ✓ 中文")]
    path = tmp_path / name
    if ".csv" in name:
        write_csv(path, rows)
    elif ".tsv" in name:
        write_tsv(path, rows)
    elif ".parquet" in name:
        write_parquet(path, rows)
    else:
        write_jsonl(path, rows)
    header = ".tsv" not in name
    columns = ("text", "label") if header else (1, 0)
    assert read_table(path, *columns, header=header) == ([r[1] for r in rows], [r[0] for r in rows])


def test_trailing_separators_and_a_first_text_with_nul_are_read(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\nhello,a,\nworld,b\n")
    (tmp_path / "t.tsv").write_text("text\tlabel\nhello\ta\t\nworld\tb\n")
    for name in ("t.csv", "t.tsv"):
        assert read_table(tmp_path / name, "text", "label") == (["hello", "world"], ["a", "b"])
    (tmp_path / "nul.tsv").write_text("a\0b\tx\nc\ty\n")  # NUL is valid text; UTF-16 is refused by its pattern
    assert read_table(tmp_path / "nul.tsv", 0, 1, header=False) == (["a\0b", "c"], ["x", "y"])


def test_parquet_without_the_extra_names_it(tmp_path, monkeypatch, capsys):
    path = write_parquet(tmp_path / "t.parquet", [("a", "text")])
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    status, _, err = run(["train", path, "-o", str(tmp_path / "m.skattn"), "--quiet"], capsys)
    assert status == 1 and "skattn[parquet]" in err


# name: (content, what the message must name besides the file)
BAD_FILES = {
    "empty.csv": ("", ["no rows"]),
    "header_only.csv": ("label,text\n", ["no rows"]),
    "no_text_column.csv": ("label,body\na,b\n", ["'text'", "'label', 'body'"]),
    "latin1.csv": ("label,text\na,fine\nb,caf\xe9 cr\xe8me\n".encode("latin-1"), ["line 3", "UTF-8"]),
    "bad.jsonl": ('{"label": "a", "text": "x"}\n{"label": "b", "text": \n', ["line 2", "JSON"]),
    "empty_text.csv": ("label,text\na,x\nb,\n", ["line 3", "empty"]),
    "short_row.csv": ("label,text\na,x\nb\n", ["line 3", "'text'"]),
    "null_text.jsonl": ('{"label": "a", "text": null}\n', ["line 1", "empty"]),
    "nan_label.jsonl": ('{"label": NaN, "text": "x"}\n', ["line 1", "label", "empty or missing"]),
    "infinite_label.jsonl": ('{"label": Infinity, "text": "x"}\n', ["line 1", "not a finite number"]),
    "stray_quote.csv": ('label,text\na,x\nb,"y\nc,z\n', ["line 4", "begins on line 3", "quote"]),
    "text_after_quote.csv": ('label,text\na,"x"y\n', ["line 2", "closing quote"]),
    "unknown.txt": ("a,b\n", [".csv"]),
    "wide_row.csv": ("label,text\na,x\nb,bank, price and stock\n", ["line 3", "3 fields and the header 2", "comma"]),
    "wide_row.tsv": ("label\ttext\na\tfootball\tgoal\n", ["line 2", "3 fields and the header 2", "tab"]),
    "empty_quoted_text.csv": ('label,text\na,x\nb,""\n', ["line 3", "empty"]),
    "utf16_without_bom.csv": ("label,text\na,x\n".encode("utf-16-le"), ["line 1", "UTF-16"]),
    "utf16_short_first_line.tsv": ("a\nhello world\n".encode("utf-16-le"), ["line 1", "UTF-16"]),
    "two_text_columns.csv": ("text,label,text\na,x,b\n", ["2 columns are named 'text'"]),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_data_file_is_an_error_naming_file_and_line(name, tmp_path, capsys):
    content, named = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    status, _, err = run(["train", str(path), "-o", str(tmp_path / "m.skattn"), *TINY_PARAMS], capsys)
    assert status == 1
    assert err.startswith(f"skattn: error: {path}") and "Traceback" not in err
    for part in named:
        assert part in err
    assert not (tmp_path / "m.skattn").exists()


def test_an_empty_quoted_text_in_a_one_column_file_is_an_error(encoder_model, tmp_path, capsys):
    path = tmp_path / "texts.csv"
    path.write_text('text\nfootball goal\n""\nbank price\n')
    status, _, err = run(["embed", encoder_model, str(path), "-o", str(tmp_path / "v.npy")], capsys)
    assert status == 1 and f"{path}, line 3: the text in column 'text' is empty or missing" in err


def test_a_text_column_named_by_a_unicode_digit_is_a_usage_error(model, data, capsys):
    status, _, err = run(["predict", model, data["tsv"], "--no-header", "--text-col", "²"], capsys)
    assert status == 2 and "columns are 0-based positions" in err and "Traceback" not in err


def test_parquet_columns_of_one_name_are_an_error(model, tmp_path, capsys):
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    path = tmp_path / "twice.parquet"
    parquet.write_table(pyarrow.table([["a"], ["x"], ["b"]], names=["text", "label", "text"]), path)
    status, _, err = run(["predict", model, str(path)], capsys)
    assert (status, err) == (1, f"skattn: error: {path}: 2 columns are named 'text'; which one is meant?\n")


def test_embed_writes_to_a_pipe(encoder_model, data, tmp_path):
    command = [sys.executable, "-m", "skattn", "embed", encoder_model, data["csv"], "-o", "/dev/stdout"]
    if not os.path.exists("/dev/stdout"):
        pytest.skip("no /dev/stdout on this platform")
    completed = subprocess.run(command, capture_output=True, timeout=120)  # stdout is a pipe here
    assert completed.returncode == 0, completed.stderr.decode()
    vectors = np.load(io.BytesIO(completed.stdout))
    assert vectors.shape == (len(TEXTS), TINY["d_model"])


@pytest.mark.parametrize("command", ["predict", "train"])
def test_an_output_path_ending_in_a_separator_is_a_directory(command, model, data, tmp_path, capsys):
    output = str(tmp_path / "results") + os.sep
    argv = [command, model, data["csv"], "-o", output] if command == "predict" else [command, data["csv"], "-o", output, *TINY_PARAMS]
    status, _, err = run(argv, capsys)
    assert status == 1 and "a directory" in err.lower() and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_serve_that_cannot_start_is_a_one_line_error(model, monkeypatch, capsys):
    fake = types.ModuleType("skattn.serve")

    def run_that_cannot_bind(path, **options):
        raise SystemExit(3)  # what uvicorn.run does when it cannot bind

    fake.run = run_that_cannot_bind
    monkeypatch.setitem(sys.modules, "skattn.serve", fake)
    status, _, err = run(["serve", model, "--port", "9001"], capsys)
    assert status == 1
    assert err == (
        "skattn: error: the server could not start on 127.0.0.1:9001 (the address is in use or unknown; "
        "uvicorn's line above says which).\n"
    )


def test_a_model_path_in_a_missing_folder_is_an_error_before_training(data, tmp_path, capsys):
    status, _, err = run(["train", data["csv"], "-o", str(tmp_path / "no" / "m.skattn"), *TINY_PARAMS], capsys)
    assert status == 1 and "cannot write the model file" in err and "epoch" not in err


@pytest.mark.parametrize(
    "output, message",
    [("", "the output path is empty"), (".", "it names a directory")],
)
def test_an_unusable_model_path_is_an_error_before_training(data, tmp_path, monkeypatch, capsys, output, message):
    monkeypatch.chdir(tmp_path)
    status, _, err = run(["train", data["csv"], "-o", output, *TINY_PARAMS], capsys)
    assert status == 1 and message in err and "epoch" not in err
    assert os.listdir(tmp_path) == [] and not any(name.endswith(".tmp") for name in os.listdir(tmp_path.parent))


def test_demo_checks_its_model_path_before_loading_r8(tmp_path, monkeypatch, capsys):
    import skattn.datasets

    monkeypatch.setattr(skattn.datasets, "load_r8", lambda: pytest.fail("loaded R8 before checking -o"))
    status, _, err = run(["demo", "-o", str(tmp_path / "no" / "r8.skattn")], capsys)
    assert status == 1 and "no folder" in err


def test_a_failed_write_is_an_error_and_keeps_the_earlier_file(model, data, tmp_path, monkeypatch, capsys):
    output = tmp_path / "predictions.csv"
    output.write_text("an earlier file\n")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    status, _, err = run(["predict", model, data["csv"], "--proba", "-o", str(output)], capsys)
    assert (status, err) == (1, f"skattn: error: cannot write {output}: No space left on device\n")
    assert output.read_text() == "an earlier file\n" and os.listdir(tmp_path) == ["predictions.csv"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, a device of Linux and the BSDs")
def test_output_to_a_full_disk_is_an_error_without_a_traceback(model, data):
    command = [sys.executable, "-m", "skattn", "predict", model, data["csv"]]
    with open("/dev/full", "wb") as full:
        result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert result.returncode == 1
    assert "skattn: error: [Errno 28] No space left on device\n" in result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def test_evaluate_on_a_single_label_prints_no_warning(model, tmp_path, capsys):
    path = write_csv(tmp_path / "one.csv", [(LABELS[0], TEXTS[0])])
    status, out, err = run(["evaluate", model, path], capsys)
    assert status == 0 and "accuracy" in out and err == ""


def test_a_missing_data_file_is_an_error(model, tmp_path, capsys):
    status, _, err = run(["predict", model, str(tmp_path / "absent.csv")], capsys)
    assert status == 1 and err.startswith("skattn: error: ") and "absent.csv: no such file" in err


def test_a_bad_model_file_is_an_error(data, tmp_path, capsys):
    damaged = tmp_path / "damaged.skattn"
    damaged.write_text("not a zip")
    cases = [(damaged, "not a readable skattn model file"), (tmp_path / "absent.skattn", "no such model file")]
    for path, message in cases:
        status, _, err = run(["predict", str(path), data["csv"]], capsys)
        assert status == 1 and err.startswith("skattn: error: ") and message in err


# -- usage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, named",
    [
        (["--param", "colour=red"], "colour"),
        (["--param", "d_model=wide"], "d_model"),
        (["--param", "d_model=30", "--param", "n_heads=4"], "n_heads"),
        (["--param", "ngram_range=[2,1]"], "ngram_range"),
        (["--param", "encoder=null"], "encoder"),
        (["--param", "d_model"], "NAME=VALUE"),
        (["--no-header"], "0-based"),
    ],
)
def test_bad_options_are_usage_errors(options, named, data, tmp_path, capsys):
    status, _, err = run(["train", data["csv"], "-o", str(tmp_path / "m.skattn"), *options], capsys)
    assert status == 2 and named in err and "Traceback" not in err


def test_missing_arguments_are_usage_errors(capsys):
    assert run([], capsys)[0] == 2
    assert run(["train", "data.csv"], capsys)[0] == 2  # no -o
    assert run(["fly"], capsys)[0] == 2
    assert run(["serve", "m.skattn", "--port", "http"], capsys)[0] == 2


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command, capsys):
    status, out, _ = run(([command] if command else []) + ["--help"], capsys)
    assert status == 0 and out.startswith("usage: skattn")
    if command is None:  # each command listed at the start of a line, whatever the terminal's width
        for name in COMMANDS:
            assert re.search(rf"^ +{name}\b", out, re.MULTILINE)


# -- serve, without serving -------------------------------------------------------------


def test_serve_passes_its_options_to_serve_run(model, monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("skattn.serve")
    fake.run = lambda path, **options: calls.append((path, options))
    monkeypatch.setitem(sys.modules, "skattn.serve", fake)
    status, _, _ = run(["serve", model, "--port", "9001", "--max-texts", "5"], capsys)
    assert status == 0
    assert calls == [(model, dict(host="127.0.0.1", port=9001, max_texts=5, max_text_chars=100_000))]


def test_serve_refuses_an_unfitted_model_without_a_traceback(tmp_path, capsys):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    path = tmp_path / "unfitted.skattn"
    AttentionClassifier(**TINY).save(path)
    status, _, err = run(["serve", str(path)], capsys)
    assert (status, err) == (1, f"skattn: error: {path} holds an unfitted model; train it before serving it.\n")


def test_serve_without_the_extra_says_how_to_install_it(model, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "skattn.serve", None)  # makes the import fail
    status, _, err = run(["serve", model], capsys)
    assert status == 1
    assert "skattn serve needs the serve extra: pip install 'skattn[serve]'" in err


# -- the installed command ----------------------------------------------------------------


def test_the_installed_command_runs(model):
    script = Path(sys.executable).with_name("skattn")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "skattn"]
    result = subprocess.run([*command, "info", model, "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["class"] == "AttentionClassifier"

    result = subprocess.run(
        [sys.executable, "-m", "skattn", "info", "absent.skattn"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and result.stderr.startswith("skattn: error:")
