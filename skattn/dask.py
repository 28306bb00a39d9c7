"""Batch inference over a Dask collection of texts, one partition at a time.

Needs the ``dask`` extra (``pip install skattn[dask]``). The fitted estimator is
sent to each worker once, then ``predict``, ``predict_proba``, ``decision_function``
or ``transform`` runs on every partition where it lies::

    import dask.dataframe as dd
    from distributed import Client
    from skattn.dask import predict_partitions

    client = Client()                                   # or Client("scheduler-address:8786")
    texts = dd.read_parquet("reviews/")["text"]
    labels = predict_partitions(classifier, texts, client=client)        # a Dask Series
    labels.to_frame("label").to_parquet("labels/")
"""

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ._text import check_documents

METHODS = ("predict", "predict_proba", "decision_function", "transform")


def predict_partitions(estimator, texts, *, method="predict", client=None):
    """Apply a fitted estimator's method to each partition of a Dask Series or Bag of texts.

    Parameters
    ----------
    estimator : AttentionClassifier or AttentionEncoder
        Fitted. Sent once to every worker: with ``client``, by
        ``client.scatter(..., broadcast=True)``; without, as one object in the
        task graph, which Dask ships to each worker that needs it.
    texts : dask.dataframe.Series or dask.bag.Bag of str
        The documents. Keep them as a Dask collection (for instance read with
        ``dask.dataframe.read_parquet``) rather than a local list, so that
        they are read where they are processed.
    method : {"predict", "predict_proba", "decision_function", "transform"}, default="predict"
    client : distributed.Client, default=None
        The cluster's client, to scatter ``estimator`` to every worker once.

    Returns
    -------
    result : dask.dataframe.Series, dask.dataframe.DataFrame or dask.bag.Bag
        Lazy, with the index of ``texts`` (and its divisions, where known): a Series for
        ``predict`` (and for ``decision_function`` of a binary classifier),
        else a DataFrame with one column per class or embedding dimension.
        For a Bag, a Bag of the per-document results.
    """
    import dask
    import dask.bag
    import dask.dataframe

    check_is_fitted(estimator)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    if not hasattr(estimator, method):
        raise ValueError(f"{type(estimator).__name__} has no method {method!r}.")
    shipped = client.scatter(estimator, broadcast=True, hash=False) if client is not None else dask.delayed(estimator)
    if isinstance(texts, dask.bag.Bag):
        return texts.map_partitions(_bag_partition, shipped, method)
    if not isinstance(texts, dask.dataframe.Series):
        raise TypeError(
            f"texts must be a dask.dataframe.Series or a dask.bag.Bag of str; got {type(texts).__name__}. "
            f"For a DataFrame, pass its text column, e.g. frame['text']."
        )
    meta = _meta(estimator, method, texts.name)
    if client is not None:
        return texts.map_partitions(_series_partition, shipped, method, meta=meta)
    return _delayed_partitions(texts, shipped, method, meta)


def _delayed_partitions(texts, shipped, method, meta):
    """``_series_partition`` on each partition of ``texts``, as one delayed task each.

    Without a client the estimator travels as a Delayed object, which some
    supported Dask releases hand to a ``map_partitions`` function uncomputed;
    a task built with ``dask.delayed`` always receives it computed.
    """
    import dask
    import dask.dataframe

    if hasattr(texts, "optimize"):  # to_delayed optimizes: read the divisions of that same graph
        texts = texts.optimize()
    try:
        pieces = texts.to_delayed()
    except ValueError:  # Dask 2024.4 fails here on some merged reads of known divisions
        texts = texts.clear_divisions()
        pieces = texts.to_delayed()
    parts = [dask.delayed(_series_partition)(piece, shipped, method) for piece in pieces]
    divisions = texts.divisions if texts.known_divisions and len(texts.divisions) == len(parts) + 1 else None
    return dask.dataframe.from_delayed(parts, meta=meta, divisions=divisions, verify_meta=False)


def _series_partition(texts, estimator, method):
    meta = _meta(estimator, method, texts.name)
    if len(texts) == 0:
        return meta
    # Checked here, so that an error names the document's index label, not its place in the partition.
    values = getattr(estimator, method)(check_documents(texts.to_numpy(dtype=object), name="texts", index=texts.index))
    if isinstance(meta, pd.Series):
        return pd.Series(values, index=texts.index, name=meta.name)
    return pd.DataFrame(values, index=texts.index, columns=meta.columns)


def _bag_partition(texts, estimator, method):
    texts = list(texts)
    if not texts:
        return []
    return list(getattr(estimator, method)(np.asarray(texts, dtype=object)))


def _meta(estimator, method, name):
    """An empty pandas object shaped like one partition's result."""
    if method == "transform":
        columns = [f"{name or 'text'}_{i}" for i in range(estimator.config_.d_model)]
        return pd.DataFrame({column: pd.Series(dtype=np.float32) for column in columns})
    classes = estimator.classes_
    multilabel = getattr(estimator, "_multilabel", False)
    if method == "predict" and not multilabel:
        return pd.Series(np.empty(0, dtype=classes.dtype), name=name)
    if method == "decision_function" and len(classes) == 2 and not multilabel:
        return pd.Series(np.empty(0, dtype=np.float32), name=name)
    dtype = np.int64 if method == "predict" else np.float64 if method == "predict_proba" else np.float32
    return pd.DataFrame({str(c): pd.Series(dtype=dtype) for c in classes})
