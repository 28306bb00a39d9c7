"""The README's API tables list every public name and every constructor parameter, with its true default."""

import pathlib
import re

import pytest

import skattn
import skattn.datasets
from skattn import AttentionClassifier, AttentionEncoder

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
ESTIMATORS = {"both": {"AttentionClassifier", "AttentionEncoder"}, "classifier": {"AttentionClassifier"}, "encoder": {"AttentionEncoder"}}


def _table(heading):
    """The rows of the first Markdown table under ``heading`` (a line of its own), as lists of cells."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines.count(heading) == 1, f"README.md should have one {heading!r} heading"
    start = lines.index(heading) + 1
    while not lines[start].startswith("|"):
        assert not lines[start].startswith("#"), f"no table under {heading!r}"
        start += 1
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip().removeprefix("|").removesuffix("|").split("|")])
    header, rule, *rows = table
    assert all(set(cell) <= set("-: ") for cell in rule), f"the table under {heading!r} lacks its rule line"
    assert all(len(row) == len(header) for row in rows), f"a row under {heading!r} has a stray '|' or a missing cell"
    return header, rows


def _code(cell):
    """The text of a cell that is one inline code span, e.g. ``'auto'``."""
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"expected one `code` span, got {cell!r}"
    return match.group(1)


def test_parameter_table_lists_every_parameter_with_its_default_and_estimators():
    header, rows = _table("### Constructor parameters")
    assert header == ["parameter", "default", "estimators", "meaning"]
    documented = {}
    for name, default, estimators, meaning in rows:
        name = _code(name)
        assert name not in documented, f"{name} is listed twice"
        assert estimators in ESTIMATORS, f"{name}: estimators must be one of {sorted(ESTIMATORS)}, got {estimators!r}"
        assert meaning, f"{name} has no meaning"
        documented[name] = (_code(default), ESTIMATORS[estimators])

    params = {"AttentionClassifier": AttentionClassifier().get_params(), "AttentionEncoder": AttentionEncoder().get_params()}
    actual = {}
    for estimator, values in params.items():
        for name, value in values.items():
            actual.setdefault(name, (repr(value), set()))[1].add(estimator)
            assert actual[name][0] == repr(value), f"{name} has different defaults in the two estimators"

    missing = sorted(set(actual) - set(documented))
    extra = sorted(set(documented) - set(actual))
    assert not missing, f"parameters missing from the README's table: {missing}"
    assert not extra, f"the README's table lists parameters that do not exist: {extra}"
    for name, (default, estimators) in actual.items():
        assert documented[name][0] == default, f"{name}: the README says {documented[name][0]}, the code {default}"
        assert documented[name][1] == estimators, f"{name}: the README says {sorted(documented[name][1])}, the code {sorted(estimators)}"


def _first_column(heading):
    _, rows = _table(heading)
    return [row[0] for row in rows]


def test_api_table_lists_every_public_name():
    names = "\n".join(_first_column("### Classes, functions and modules"))
    public = [name for name in skattn.__all__ if name != "__version__"]
    missing = [name for name in public if not re.search(rf"`skattn\.{re.escape(name)}\b", names)]
    assert not missing, f"public names missing from the README's API table: {missing}"
    for module, names_in_module in [("datasets", skattn.datasets.__all__)]:
        for name in names_in_module:
            assert f"`skattn.{module}.{name}" in names, f"skattn.{module}.{name} is missing from the README's API table"
    for name in ["skattn.plot", "skattn.onnx.load", "skattn.dask.predict_partitions", "skattn.serve", "skattn` (command line)"]:
        assert f"`{name}" in names, f"{name} is missing from the README's API table"


def test_api_table_lists_every_plot_function():
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    import skattn.plot

    names = "\n".join(_first_column("### Classes, functions and modules"))
    missing = [name for name in skattn.plot.__all__ if f"`skattn.plot.{name}(" not in names]
    assert not missing, f"skattn.plot functions missing from the README's API table: {missing}"


def test_method_and_attribute_tables_name_what_exists():
    classes = {"AttentionClassifier": AttentionClassifier, "AttentionEncoder": AttentionEncoder}
    header, rows = _table("### Methods")
    assert header == ["method", "estimators", "what it does"]
    for cell, estimators, _ in rows:
        for method in re.findall(r"`(\w+)\(", cell):
            for estimator in ESTIMATORS[estimators]:
                assert callable(getattr(classes[estimator], method, None)), f"{estimator} has no method {method}"
    header, rows = _table("### Fitted attributes")
    assert header == ["attribute", "estimators", "what it holds"]
    listed = {attribute for cell, _, _ in rows for attribute in re.findall(r"`(\w+_)`", cell)}
    from skattn._docs import TRAINING_ATTRIBUTES

    documented = set(re.findall(r"^    (\w+_) :", TRAINING_ATTRIBUTES, flags=re.M))
    assert documented <= listed, f"fitted attributes missing from the README: {sorted(documented - listed)}"
