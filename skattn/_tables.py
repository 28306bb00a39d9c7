"""The texts and labels of a data file: CSV, TSV or JSON Lines (each optionally gzipped), or Parquet.

CSV, TSV and JSON Lines are read with the standard library, one line at a
time, so that every error names the file and the line. TSV is plain
tab-separated text without quoting (one row per line), the format of the
datasets skattn ships; CSV follows the ``csv`` module's default dialect.
"""

import contextlib
import csv
import gzip
import json
import math
import os
from numbers import Real

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}

# The csv module refuses fields over 128 kB by default; a document can be
# megabytes. 2**31 - 1 is the largest limit every platform's C long holds.
_FIELD_SIZE_LIMIT = 2**31 - 1


class TableError(ValueError):
    """A data file cannot be read; the message names the file and, where it helps, the line."""


def read_table(path, text_col="text", label_col=None, *, header=True):
    """Read the texts, and optionally the labels, of a data file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv``, ``.tsv``, ``.jsonl`` or ``.ndjson`` file, each optionally
        gzipped (``.gz``), or a ``.parquet`` file.
    text_col : str or int, default="text"
        The column of the texts: a name, or with ``header=False`` a 0-based
        position.
    label_col : str or int, default=None
        The column of the labels, addressed like ``text_col``; None reads no
        labels.
    header : bool, default=True
        Whether the first row of a CSV or TSV file names its columns. JSON
        Lines and Parquet columns are always named.

    Returns
    -------
    texts : list of str
        One per row, in file order.
    labels : list or None
        One per row (str, or what JSON Lines and Parquet hold), or None
        without ``label_col``.

    Raises
    ------
    TableError
        If the file is missing, of an unknown format, not UTF-8, malformed,
        empty, lacks a column, or has a missing or empty text or label.
    """
    path = os.fspath(path)
    kind = table_format(path)
    if not os.path.isfile(path):
        raise TableError(f"{path}: no such file.")
    if not header and kind in ("jsonl", "parquet"):
        raise TableError(f"{path}: only CSV and TSV files are read without a header row; {kind} columns have names.")
    columns = [text_col] if label_col is None else [text_col, label_col]
    rows = {"csv": _csv_rows, "tsv": _tsv_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}[kind]
    texts, labels = [], []
    try:
        with contextlib.closing(rows(path, columns, header)) as cells_by_row:
            for where, cells in cells_by_row:
                texts.append(_text(cells[0], where, text_col))
                if label_col is not None:
                    labels.append(_label(cells[1], where, label_col))
    except (OSError, EOFError) as error:  # unreadable, or a damaged or truncated gzip stream
        raise TableError(f"{path}: cannot read the file: {error}") from None
    if not texts:
        raise TableError(f"{path} has no rows.")
    return texts, labels if label_col is not None else None


def table_format(path):
    """The format of ``path`` from its name: ``"csv"``, ``"tsv"``, ``"jsonl"`` or ``"parquet"``."""
    name = os.fspath(path).lower()
    stem = name[: -len(".gz")] if name.endswith(".gz") else name
    kind = FORMATS.get(os.path.splitext(stem)[1])
    if kind is None or (kind == "parquet" and stem != name):
        raise TableError(
            f"{path}: unknown data format; expected a name ending in .csv, .tsv, .jsonl or .ndjson "
            f"(each optionally followed by .gz) or .parquet."
        )
    return kind


def _text(value, where, column):
    if value is None or value == "":
        raise TableError(f"{where}: the text in column {column!r} is empty or missing.")
    if not isinstance(value, str):
        raise TableError(f"{where}: the text in column {column!r} is not a string: {value!r}.")
    return value


def _label(value, where, column):
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        raise TableError(f"{where}: the label in column {column!r} is empty or missing.")
    if not isinstance(value, (str, Real)):
        raise TableError(f"{where}: the label in column {column!r} is not a string or a number: {value!r}.")
    if isinstance(value, float) and math.isinf(value):
        raise TableError(f"{where}: the label in column {column!r} is not a finite number: {value!r}.")
    return value


# -- line-based formats ----------------------------------------------------------------


def _lines(path):
    """Yield ``(line number, line)``, decoding each line as UTF-8 so that an error can name it."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise TableError(
                    f"{path}, line {number}: not UTF-8 text (byte {raw[error.start]:#04x} at position "
                    f"{error.start + 1} of the line); convert the file to UTF-8."
                ) from None
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark, as spreadsheets write
                if _looks_like_utf16(line):
                    raise TableError(
                        f"{path}, line 1: holds NUL bytes, as UTF-16 text does; convert the file to UTF-8."
                    )
            yield number, line


def _looks_like_utf16(line):
    """Whether a line decoded as UTF-8 is Latin text in UTF-16 without a byte-order mark: every other character NUL."""
    start = line[:40].rstrip("\r\n")
    return len(start) >= 2 and (set(start[1::2]) == {"\0"} or set(start[0::2]) == {"\0"})


def _refuse_repeated_names(path, columns, names):
    """Refuse a file where one of the chosen ``columns`` names several of its columns."""
    repeated = [column for column in columns if names.count(column) > 1]
    if repeated:
        raise TableError(f"{path}: {names.count(repeated[0])} columns are named {repeated[0]!r}; which one is meant?")


def _positions(path, columns, header_row, header):
    """The 0-based position of each of ``columns``, given the first row."""
    if header:
        missing = [column for column in columns if column not in header_row]
        if missing:
            raise TableError(
                f"{path}: no column {missing[0]!r}; the columns are "
                f"{', '.join(repr(name) for name in header_row)}."
            )
        _refuse_repeated_names(path, columns, header_row)
        return [header_row.index(column) for column in columns]
    missing = [column for column in columns if column >= len(header_row)]
    if missing:
        raise TableError(
            f"{path}: no column {missing[0]}; the first row has {len(header_row)} column"
            f"{'s' if len(header_row) != 1 else ''} (0 to {len(header_row) - 1})."
        )
    return list(columns)


def _split_rows(path, columns, header, rows, separator):
    """Yield ``(where, cells)`` from ``(line number, fields)`` of a CSV or TSV file; ``[]`` is a blank line."""
    positions = width = None
    for number, fields in rows:
        if not fields:
            continue
        if positions is None:
            positions, width = _positions(path, columns, fields, header), len(fields)
            if header:
                continue
        where = f"{path}, line {number}"
        given = len(fields)
        while len(fields) > width and fields[-1] == "":  # a trailing separator: an empty last field
            fields = fields[:-1]
        if len(fields) > width:
            first = "header" if header else "first row"
            raise TableError(
                f"{where}: the row has {given} fields and the {first} {width}: is there a {separator} "
                f"in a text{' outside quotes' if separator == 'comma' else ''}?"
            )
        if len(fields) <= max(positions):
            missing = next(column for column, p in zip(columns, positions) if p >= len(fields))
            plural = "s" if len(fields) != 1 else ""
            raise TableError(f"{where}: the row has {len(fields)} field{plural} and no column {missing!r}.")
        yield where, [fields[p] for p in positions]


def _csv_rows(path, columns, header):
    previous = csv.field_size_limit(_FIELD_SIZE_LIMIT)
    try:
        # strict: a stray quote is an error, not a field that runs on to the end of the file.
        reader = csv.reader((line for _, line in _lines(path)), strict=True)

        def numbered():
            while True:
                first_line = reader.line_num + 1
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    hint = ""
                    if reader.line_num > first_line:
                        hint = f" (the row begins on line {first_line}: is a quote there left open?)"
                    elif "expected after" in str(error):
                        hint = ' (a field in quotes ends at its closing quote; write a quote inside it as "")'
                    raise TableError(f"{path}, line {reader.line_num}: malformed CSV: {error}{hint}.") from None
                yield reader.line_num, fields

        yield from _split_rows(path, columns, header, numbered(), "comma")
    finally:
        csv.field_size_limit(previous)


def _tsv_rows(path, columns, header):
    # Tab-separated values have no quoting: a text cannot hold a tab or a line break.
    lines = ((number, line.rstrip("\r\n")) for number, line in _lines(path))
    rows = ((number, line.split("\t") if line else []) for number, line in lines)
    yield from _split_rows(path, columns, header, rows, "tab")


def _jsonl_rows(path, columns, header):
    for number, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise TableError(f"{where}: malformed JSON: {error}.") from None
        if not isinstance(record, dict):
            raise TableError(f"{where}: expected a JSON object, got {type(record).__name__}.")
        for column in columns:
            if column not in record:
                raise TableError(
                    f"{where}: no column {column!r}; the fields are {', '.join(repr(key) for key in record)}."
                )
        yield where, [record[column] for column in columns]


# -- Parquet ---------------------------------------------------------------------------


def _parquet_rows(path, columns, header):
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise TableError(f"{path}: reading Parquet needs pyarrow: pip install 'skattn[parquet]'") from None
    try:
        names = parquet.read_schema(path).names
    except (ValueError, OSError) as error:  # pyarrow's errors subclass these
        raise TableError(f"{path}: not a readable Parquet file: {error}") from None
    missing = [column for column in columns if column not in names]
    if missing:
        raise TableError(f"{path}: no column {missing[0]!r}; the columns are {', '.join(repr(name) for name in names)}.")
    _refuse_repeated_names(path, columns, names)
    try:
        table = parquet.read_table(path, columns=list(dict.fromkeys(columns)))
    except (ValueError, OSError) as error:
        raise TableError(f"{path}: not a readable Parquet file: {error}") from None
    values = [table.column(column).to_pylist() for column in columns]
    for index, cells in enumerate(zip(*values)):
        yield f"{path}, row index {index}", list(cells)
