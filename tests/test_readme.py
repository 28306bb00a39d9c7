"""The README's examples run as written, so they cannot rot."""

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import skattn.datasets

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language, text=None):
    text = README.read_text(encoding="utf-8") if text is None else text
    blocks = re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)
    return [textwrap.dedent(block) for block in blocks]  # a block may sit in a list item


def _section(heading):
    text = README.read_text(encoding="utf-8")
    return text[text.index(heading) : text.index("\n## ", text.index(heading) + 1)]


def _deploy_section():
    return _section("## Deploy")


def test_readme_examples_run_and_keep_their_promises(monkeypatch, tmp_path, capsys):
    text = README.read_text(encoding="utf-8")
    blocks = _blocks("python", text.replace(_section("## Scaling out"), ""))
    assert len(blocks) == 8
    quickstart, with_sklearn, frozen, callbacks, joblib_block, save, load, onnx = blocks
    # The quickstart trains on R8 with default parameters; a slice of it keeps
    # this test short while running the very same code.
    X_train, y_train, X_test, y_test = skattn.datasets.load_r8()
    monkeypatch.setattr(skattn.datasets, "load_r8", lambda: (X_train[:300], y_train[:300], X_test[:100], y_test[:100]))
    monkeypatch.chdir(tmp_path)
    namespace = {}

    exec(compile(quickstart, str(README), "exec"), namespace)
    score, predicted = capsys.readouterr().out.splitlines()
    assert float(score) > 0.6  # 8 topics: chance is far below
    assert predicted.strip("[]'") in set(y_train)  # one of the training labels, as given
    clf = namespace["clf"]

    exec(compile(with_sklearn, str(README), "exec"), namespace)
    scores, best_params = capsys.readouterr().out.splitlines()
    assert len(scores.strip("[]").split()) == 3  # one score per fold
    assert set(eval(best_params)) == {"learning_rate", "encoder__n_layers"}

    exec(compile(frozen, str(README), "exec"), namespace)
    best = namespace["search"].best_estimator_
    # Fine-tuned copies of the one pretrained encoder, which stays as it was.
    assert best.tokenizer_.to_str() == namespace["encoder"].tokenizer_.to_str()

    exec(compile(callbacks, str(README), "exec"), namespace)
    small = dict(d_model=32, n_heads=2, d_ff=64, vocab_size=500, max_epochs=2, random_state=0)
    namespace["AttentionClassifier"](**small, callbacks=[namespace["log"]]).fit(X_train[:100], y_train[:100])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2"]
    assert all(re.fullmatch(r"epoch \d: loss \d+\.\d{4}, [\d,]+ tokens/s", line) for line in lines)

    namespace["clf"] = clf
    exec(compile(joblib_block, str(README), "exec"), namespace)
    assert (tmp_path / "r8.joblib").exists()
    np.testing.assert_array_equal(namespace["clf"].predict_proba(X_test[:20]), clf.predict_proba(X_test[:20]))

    # Saved here, loaded by a fresh interpreter.
    exec(compile(save, str(README), "exec"), namespace)
    printed = subprocess.run(
        [sys.executable, "-c", load], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert printed == str(clf.predict(["oil prices rose after the opec meeting"]))

    exec(compile(onnx, str(README), "exec"), namespace)
    assert capsys.readouterr().out.strip() == str(clf.predict(["oil prices rose after the opec meeting"]))
    np.testing.assert_allclose(
        namespace["predictor"].predict_proba(X_test[:20]), clf.predict_proba(X_test[:20]), atol=2e-2
    )  # clf predicts in bf16 or int8 on some CPUs; the ONNX graph is float32


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_readme_command_line_and_server_examples_run(tmp_path):
    cli, server = _blocks("bash", _deploy_section())
    X_train, y_train, X_test, y_test = skattn.datasets.load_r8()

    def write_csv(name, texts, labels=None):
        import csv

        with open(tmp_path / name, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["text", "label"] if labels is not None else ["text"])
            for i, text in enumerate(texts):
                writer.writerow([text, labels[i]] if labels is not None else [text])

    write_csv("train.csv", X_train[:400], y_train[:400])
    write_csv("test.csv", X_test[:100], y_test[:100])
    write_csv("new.csv", X_test[100:110])
    bin_dir = pathlib.Path(sys.executable).parent  # the skattn script installed beside this Python
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    result = subprocess.run(["bash", "-e", "-c", cli], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"accuracy\W+([\d.]+)", result.stdout).group(1))
    assert accuracy > 0.5
    predictions = (tmp_path / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 11 and predictions[0].startswith("row,label,proba_")
    assert "AttentionClassifier" in result.stdout and "torch" in result.stdout

    port = str(_free_port())
    script = server.replace("8000", port)
    shell = subprocess.Popen(
        ["bash", "-e", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        stdout, stderr = shell.communicate(timeout=180)
    finally:  # the server too, should the script stop before its kill
        try:
            os.killpg(shell.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    assert shell.returncode == 0, stderr
    answer = stdout.strip()
    assert re.fullmatch(r'\{"predictions":\["[a-z]+"\]\}', answer), answer


def test_readme_scaling_out_examples_run(monkeypatch, tmp_path, capsys):
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    section = _section("## Scaling out")
    search_block, ray_block, dask_block = _blocks("python", section)
    (torchrun_block,) = _blocks("bash", section)
    # The same code on a slice of R8 with a small model, so that the searches take seconds.
    assert "AttentionClassifier(max_epochs=3)" in search_block
    small = "vocab_size=1000, d_model=32, n_heads=2, n_layers=1, d_ff=64, random_state=0"
    search_block = search_block.replace("AttentionClassifier(max_epochs=3)", f"AttentionClassifier(max_epochs=3, {small})")
    X_train, y_train, X_test, y_test = skattn.datasets.load_r8()
    monkeypatch.setattr(skattn.datasets, "load_r8", lambda: (X_train[:240], y_train[:240], X_test[:200], y_test[:200]))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    try:
        exec(compile(search_block, str(README), "exec"), namespace)
        assert set(eval(capsys.readouterr().out)) == {"learning_rate"}

        exec(compile(ray_block, str(README), "exec"), namespace)
        assert set(namespace["search"].best_params_) == {"learning_rate"}

        exec(compile(dask_block, str(README), "exec"), namespace)
        assert float(capsys.readouterr().out) > 0.5
        assert len(namespace["labels"]) == 200
    finally:
        ray.shutdown()
        if "client" in namespace:
            namespace["client"].close()
            namespace["client"].cluster.close()
    # The torchrun command runs the example that test_scale.py runs under torchrun, on a subset.
    assert torchrun_block.split() == ["torchrun", "--standalone", "--nproc_per_node", "2", "examples/distributed_fit.py"]
    assert (README.parent / "examples" / "distributed_fit.py").is_file()
