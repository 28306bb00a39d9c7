"""Scaling out on the engines users run: torchrun for one data-parallel fit, joblib's Dask
and Ray backends for search and cross-validation, Dask for batch inference.

Every pattern runs for real on this machine: two torchrun processes over gloo, a Dask
LocalCluster of two worker processes, a local Ray instance.
"""

import json
import logging
import os
import subprocess
import sys
import warnings
from functools import partial
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, cross_validate

from skattn import AttentionClassifier

from .conftest import TINY, TOPIC_LABELS, TOPIC_TEXTS, joblib_worker_threads

ROOT = Path(__file__).resolve().parents[1]
SMALL_R8 = dict(vocab_size=2000, max_length=96, d_model=64, n_heads=2, n_layers=1, d_ff=128, max_epochs=3)


def torchrun(n_processes, script, *args, timeout=300):
    """Run ``script`` under ``torchrun --standalone --nproc_per_node n_processes``; fail with its output."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_processes}",
               str(script), *map(str, args)]
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def rank_results(folder, n_processes):
    return [json.loads((Path(folder) / f"rank{rank}.json").read_text()) for rank in range(n_processes)]


# -- torchrun: one model, data-parallel ---------------------------------------------------


def test_torchrun_two_processes_train_one_model(tmp_path):
    example = ROOT / "examples" / "distributed_fit.py"
    options = ["--n-train", 1500, "--n-test", 600, "--params", json.dumps(SMALL_R8)]
    torchrun(2, example, *options, "--output", tmp_path / "two")
    torchrun(1, example, *options, "--output", tmp_path / "one")
    rank0, rank1 = rank_results(tmp_path / "two", 2)
    (single,) = rank_results(tmp_path / "one", 1)

    assert (rank0["world_size"], single["world_size"]) == (2, 1)
    assert rank0["predictions"] == rank1["predictions"]
    assert rank0["loss_curve"] == rank1["loss_curve"]
    assert rank0["model_class"] == "SequenceClassifier"  # unwrapped: no DistributedDataParallel left
    assert rank0["accuracy"] > 0.85
    assert abs(rank0["accuracy"] - single["accuracy"]) <= 0.01, (rank0["accuracy"], single["accuracy"])
    # The same training run, split in two: the losses agree to rounding.
    np.testing.assert_allclose(rank0["loss_curve"], single["loss_curve"], rtol=0.05)

    # Rank 0's model, loaded in this process (no process group), predicts what the ranks did.
    from skattn.datasets import load_r8

    classifier = joblib.load(tmp_path / "two" / "classifier.joblib")
    assert not hasattr(classifier, "_replicas")
    assert classifier.predict(load_r8()[2][:600]).tolist() == rank0["predictions"]


def test_torchrun_edge_cases_stop_every_rank_alike(tmp_path):
    torchrun(2, ROOT / "tests" / "_torchrun_worker.py", tmp_path)
    rank0, rank1 = rank_results(tmp_path, 2)

    assert rank0["mismatch"] == rank1["mismatch"]
    assert rank0["mismatch"][0] == "ValueError"
    assert "needs the same X, y and sample_weight on every rank" in rank0["mismatch"][1]
    assert "rank(s) [1]" in rank0["mismatch"][1]
    # Where rank 1's own checks refuse its data, it raises its error and rank 0 says so.
    assert rank1["refused"][0] == "ValueError" and "inconsistent" in rank1["refused"][1]
    assert rank0["refused"][0] == "ValueError"
    assert rank0["refused"][1].startswith(
        "AttentionClassifier: a fit inside a torch.distributed process group stopped, as rank 1 refused its input (ValueError: "
    )
    assert rank1["refused_warm"][0] == "ValueError" and "warm_start=True needs the classes" in rank1["refused_warm"][1]
    assert rank0["refused_warm"][0] == "ValueError" and "rank 1 refused its input" in rank0["refused_warm"][1]
    assert rank0["joined"] == rank1["joined"] and "rank(s) [1]" in rank0["joined"][1]
    # A stream continued on rank 0 but started afresh on rank 1 would take other paths through the fit.
    assert rank0["other_state"] == rank1["other_state"] and "continue another model" in rank0["other_state"][1]

    assert len(rank0["encoder_scores"]) == 3
    assert rank0["encoder_scores"] == rank1["encoder_scores"]
    assert rank0["embedding"] == rank1["embedding"]
    assert rank0["proba"] == rank1["proba"]
    assert rank0["chunked_proba"] == rank1["chunked_proba"]
    assert rank0["checkpoint_files"] == ["checkpoint-attentionencoder-pretraining.pt"]

    assert rank0["non_finite"] == rank1["non_finite"]
    assert rank0["non_finite"][0] == "FloatingPointError"
    assert "the training loss became nan" in rank0["non_finite"][1]
    assert rank0["poisoned_fitted"] is rank1["poisoned_fitted"] is False
    assert rank0["refit_accuracy"] == rank1["refit_accuracy"] == 1.0


def test_fit_outside_a_process_group_ignores_torch_distributed():
    assert not torch.distributed.is_initialized()
    classifier = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    assert classifier.score(TOPIC_TEXTS, TOPIC_LABELS) > 0.3


# -- joblib backends: search and cross-validation on a cluster -----------------------------


def record_threads(folder, event):
    """A callback: write the worker's torch thread count to ``folder`` (once per process)."""
    if event.kind == "epoch":
        (Path(folder) / f"{os.getpid()}.json").write_text(json.dumps(torch.get_num_threads()))


def recorded_threads(folder):
    """The thread counts of the worker processes; the refit in this process (GridSearchCV) left out."""
    return sorted(json.loads(path.read_text()) for path in Path(folder).iterdir() if path.stem != str(os.getpid()))


def grid_search(callbacks=None):
    search = GridSearchCV(
        AttentionClassifier(**TINY, callbacks=callbacks),
        {"learning_rate": [1e-3, 3e-3], "d_model": [16, 24]},
        cv=2,
        n_jobs=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return search.fit(TOPIC_TEXTS, TOPIC_LABELS)


@pytest.fixture(scope="module")
def sequential_search():
    with joblib.parallel_backend("sequential"):
        return grid_search()


def test_grid_search_on_loky_workers_splits_the_cores(tmp_path, sequential_search):
    expected = joblib_worker_threads(n_jobs=2)
    search = grid_search(callbacks=[partial(record_threads, tmp_path)])
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], sequential_search.cv_results_["mean_test_score"])
    # joblib gives each of n_jobs worker processes its share of the cores, and fit keeps to it.
    assert set(recorded_threads(tmp_path)) == {expected}


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster, distributed.Client(cluster) as client:
        yield client


def test_grid_search_under_dask_matches_the_sequential_search(dask_client, tmp_path, sequential_search):
    with joblib.parallel_backend("dask"):
        search = grid_search(callbacks=[partial(record_threads, tmp_path)])
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], sequential_search.cv_results_["mean_test_score"])
    assert search.best_params_ == sequential_search.best_params_
    # Dask's nanny starts each worker process with one thread per library.
    assert recorded_threads(tmp_path) and set(recorded_threads(tmp_path)) == {1}
    assert not torch.cuda.is_initialized()


def test_cross_validate_under_ray(tmp_path):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from ray.util.joblib import register_ray

    # The callback is pickled by reference: Ray's workers must import this package from
    # wherever pytest was started.
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": python_path}},
    )
    try:
        register_ray()
        with joblib.parallel_backend("ray"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator = AttentionClassifier(**TINY, callbacks=[partial(record_threads, tmp_path)])
            scores = cross_validate(estimator, TOPIC_TEXTS, TOPIC_LABELS, cv=3, n_jobs=2)["test_score"]
    finally:
        ray.shutdown()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sequential = cross_validate(AttentionClassifier(**TINY), TOPIC_TEXTS, TOPIC_LABELS, cv=3)["test_score"]
    np.testing.assert_allclose(scores, sequential)
    # Ray runs each task with the threads of the CPUs it reserved: one.
    assert recorded_threads(tmp_path) and set(recorded_threads(tmp_path)) == {1}


# -- Dask: batch inference over a big corpus -----------------------------------------------


def short_texts(n, seed=0):
    words = np.array(" ".join(TOPIC_TEXTS[:6]).split())
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 9, size=n)
    return np.array([" ".join(rng.choice(words, size=k)) for k in lengths], dtype=object)


def test_dask_map_partitions_predicts_100k_texts(dask_client):
    dd = pytest.importorskip("dask.dataframe", reason="the dask extra is not installed")
    import pandas as pd

    from skattn.dask import predict_partitions

    classifier = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    texts = pd.Series(short_texts(100_000), name="text")
    frame = dd.from_pandas(texts.to_frame(), npartitions=8)
    predicted = predict_partitions(classifier, frame["text"], client=dask_client).compute()
    assert len(predicted) == len(texts)
    assert predicted.index.equals(texts.index)
    sample = np.random.default_rng(1).choice(len(texts), size=2000, replace=False)
    assert predicted.iloc[sample].tolist() == classifier.predict(texts.iloc[sample]).tolist()


def test_dask_inference_without_a_client_names_a_bad_document_by_its_index_label_and_refuses_an_unfitted_estimator():
    dd = pytest.importorskip("dask.dataframe", reason="the dask extra is not installed")
    import pandas as pd
    from sklearn.exceptions import NotFittedError

    from skattn.dask import predict_partitions

    texts = pd.Series(TOPIC_TEXTS[:10] + [None] + TOPIC_TEXTS[:4], name="text", index=range(100, 115))
    collection = dd.from_pandas(texts, npartitions=3)  # the None is the third document of its partition
    classifier = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    # Without a client (the estimator travels in the task graph), on the good documents:
    good = collection.dropna()
    predicted = predict_partitions(classifier, good).compute(scheduler="sync")
    assert predicted.index.equals(texts.dropna().index)
    assert predicted.tolist() == classifier.predict(texts.dropna()).tolist()
    with pytest.raises(TypeError, match=r"texts must contain only str documents; element at index 110 is "):
        predict_partitions(classifier, collection).compute(scheduler="sync")
    with pytest.raises(NotFittedError):
        predict_partitions(AttentionClassifier(**TINY), collection)


def test_dask_inference_over_a_parquet_column_whose_partitions_the_optimizer_merges(tmp_path):
    dd = pytest.importorskip("dask.dataframe", reason="the dask extra is not installed")
    pytest.importorskip("pyarrow")
    import pandas as pd

    from skattn.dask import predict_partitions

    texts = pd.Series(TOPIC_TEXTS * 4, name="text")
    frame = pd.DataFrame({"text": texts, **{f"other{i}": np.arange(len(texts)) for i in range(20)}})
    dd.from_pandas(frame, npartitions=8).to_parquet(tmp_path / "data")
    column = dd.read_parquet(tmp_path / "data", calculate_divisions=True)["text"]  # reading one column of many
    classifier = AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)
    predicted = predict_partitions(classifier, column).compute(scheduler="sync")
    assert predicted.index.equals(texts.index)
    assert predicted.tolist() == classifier.predict(texts).tolist()
