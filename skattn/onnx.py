"""Predict with a model exported by ``to_onnx``, on ONNX Runtime, without PyTorch.

::

    from skattn import onnx as skattn_onnx
    predictor = skattn_onnx.load("model.onnx")
    predictor.predict(["stocks fell sharply"])

This module imports neither PyTorch nor skattn's estimators: only NumPy,
``tokenizers``, ``onnxruntime`` and, for classifiers with the n-gram path,
SciPy and scikit-learn (for the TF-IDF rows). The predictor tokenizes, cuts
windows and computes TF-IDF features exactly as the estimator does, then
runs the exported graph.
"""

import base64
import json
import os

import numpy as np
from tokenizers import Tokenizer

from ._ngrams import restore_ngram_vectorizer, transform_ngrams
from ._text import check_documents, encode, length_batches

# 2: metadata "skattn.ngram_marks" (punctuation marks and symbols as n-gram words); a reader
# of version 1 would silently drop them, so it must refuse the file.
FORMAT_VERSION = 2


def load(path, *, providers=None, threads=None):
    """Load an ONNX model written by ``AttentionClassifier.to_onnx`` or ``AttentionEncoder.to_onnx``.

    Parameters
    ----------
    path : str or os.PathLike
    providers : list of str, default=None
        ONNX Runtime execution providers, in order of preference; None for
        the CPU.
    threads : int, default=None
        ONNX Runtime's intra-op threads; None for its default.

    Returns
    -------
    predictor : OnnxClassifier or OnnxEncoder
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(
        os.fspath(path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
    )
    metadata = session.get_modelmeta().custom_metadata_map
    version = metadata.get("skattn.format_version")
    if version is None:
        raise ValueError(f"{os.fspath(path)!r} is not an ONNX model exported by skattn.")
    if int(version) > FORMAT_VERSION:
        raise ValueError(f"{os.fspath(path)!r} was exported by a newer skattn (format {version}); upgrade skattn.")
    kind = OnnxClassifier if metadata["skattn.class"] == "AttentionClassifier" else OnnxEncoder
    return kind(session, metadata)


class _OnnxPredictor:
    """What both predictors share: inputs of the graph, run over length-sorted batches."""

    def __init__(self, session, metadata):
        self.session = session
        self.tokenizer = Tokenizer.from_str(metadata["skattn.tokenizer"])
        self.max_length = int(metadata["skattn.max_length"])
        self.chunk = json.loads(metadata["skattn.chunk"])
        self.batch_size = int(metadata["skattn.batch_size"])
        self.output_size = int(metadata["skattn.output_size"])
        self.versions = json.loads(metadata["skattn.versions"])
        self._input_names = {node.name for node in session.get_inputs()}
        self._ngrams = None
        if "skattn.ngram_terms" in metadata:
            terms = json.loads(metadata["skattn.ngram_terms"])
            low, high = json.loads(metadata["skattn.ngram_range"])
            self._ngrams = restore_ngram_vectorizer(
                terms,
                np.frombuffer(base64.b64decode(metadata["skattn.ngram_idf"]), dtype="<f8"),
                ngram_range=(low, high),
                lowercase=json.loads(metadata["skattn.lowercase"]),
                # Files exported before punctuation marks were words dropped them.
                marks=json.loads(metadata.get("skattn.ngram_marks", "false")),
            )

    def _run(self, X):
        """The graph's output for the documents ``X``, one float32 row per document, in order."""
        documents = check_documents(X)
        encoded = encode(self.tokenizer, documents, max_length=self.max_length, chunk=self.chunk)
        features = None if self._ngrams is None else transform_ngrams(self._ngrams, documents)
        outputs = np.empty((len(documents), self.output_size), dtype=np.float32)
        lengths = encoded.document_lengths()
        budget = encoded.token_budget(self.batch_size)
        for rows in length_batches(lengths, self.batch_size, shuffle=False, token_budget=budget):
            ids, owner = encoded.batch(rows, pad_multiple=1)
            feed = {"ids": ids, "owner": owner, "documents": np.zeros(len(rows), dtype=np.int64)}
            if features is not None:
                block = features[rows].tocoo()
                feed.update(
                    ngram_indices=block.col.astype(np.int64),
                    ngram_rows=block.row.astype(np.int64),
                    ngram_weights=block.data.astype(np.float32),
                )
            (outputs[rows],) = self.session.run(None, {k: v for k, v in feed.items() if k in self._input_names})
        return outputs


class OnnxClassifier(_OnnxPredictor):
    """``predict``, ``predict_proba`` and ``decision_function`` of an exported ``AttentionClassifier``.

    Attributes
    ----------
    classes_ : numpy.ndarray
        Class labels, as the estimator's.
    """

    def __init__(self, session, metadata):
        super().__init__(session, metadata)
        classes = json.loads(metadata["skattn.classes"])
        self.classes_ = np.asarray(classes["values"], dtype=np.dtype(classes["dtype"]))
        self.multilabel = json.loads(metadata["skattn.multilabel"])

    def decision_function(self, X):
        """Class scores (logits), shape (n_documents, n_classes)."""
        return self._run(X)

    def predict_proba(self, X):
        """Class probabilities (independent sigmoids for multilabel models)."""
        scores = self._run(X).astype(np.float64)
        if self.multilabel:
            return 1.0 / (1.0 + np.exp(-scores))
        scores -= scores.max(axis=1, keepdims=True)
        probabilities = np.exp(scores)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Class labels (a label-indicator matrix for multilabel models)."""
        scores = self._run(X)
        if self.multilabel:
            return (scores > 0).astype(int)
        return self.classes_[scores.argmax(axis=1)]


class OnnxEncoder(_OnnxPredictor):
    """``transform`` of an exported ``AttentionEncoder``."""

    def transform(self, X):
        """Document vectors, shape (n_documents, d_model)."""
        return self._run(X)
