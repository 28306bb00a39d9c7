"""Predict with a model exported by ``to_onnx``, on ONNX Runtime, without PyTorch.

::

    from skattn import onnx as skattn_onnx
    predictor = skattn_onnx.load("model.onnx")
    predictor.predict(["stocks fell sharply"])

This module imports neither PyTorch nor skattn's estimators: only NumPy,
``tokenizers``, ``onnxruntime`` and, for classifiers with the n-gram path,
SciPy and scikit-learn (for the TF-IDF rows), and ``onnx`` to read the
n-gram weights for ``predict``'s shortcut. The predictor tokenizes, cuts
windows and computes TF-IDF features exactly as the estimator does, then
runs the exported graph; ``predict``, like the estimator's, skips the graph
for documents whose class the n-gram path settles alone.
"""

import base64
import errno
import json
import os

import numpy as np

from ._ngrams import restore_ngram_vectorizer, transform_ngrams
from ._settle import FLOAT32_ROUNDING, HALF_ROUNDING, settle
from ._text import check_documents, encode, length_batches, tokenizer_from_json

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

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        If ``path`` is not a file.
    ValueError
        If the file is not an ONNX model, was not exported by skattn, or by
        a newer skattn.
    """
    import onnxruntime

    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), os.fspath(path))
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = onnxruntime.InferenceSession(
            os.fspath(path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
        )
    except _invalid_model_errors(onnxruntime) as error:
        raise ValueError(f"{os.fspath(path)!r} is not an ONNX model this ONNX Runtime can load ({error}).") from None
    metadata = session.get_modelmeta().custom_metadata_map
    version = metadata.get("skattn.format_version")
    if version is None:
        raise ValueError(f"{os.fspath(path)!r} is not an ONNX model exported by skattn.")
    if int(version) > FORMAT_VERSION:
        raise ValueError(f"{os.fspath(path)!r} was exported by a newer skattn (format {version}); upgrade skattn.")
    if metadata["skattn.class"] != "AttentionClassifier":
        return OnnxEncoder(session, metadata)
    return OnnxClassifier(session, metadata, path=path)


def _invalid_model_errors(onnxruntime):
    """ONNX Runtime's exception types for a file that is not a loadable model."""
    state = getattr(getattr(onnxruntime, "capi", None), "onnxruntime_pybind11_state", None)
    names = ("InvalidProtobuf", "InvalidGraph", "InvalidArgument", "Fail")
    return tuple(getattr(state, name) for name in names if hasattr(state, name))


# Execution providers that run the graph's final LayerNorm and head in float32 (or TF32).
FLOAT32_PROVIDERS = frozenset({"CPUExecutionProvider", "CUDAExecutionProvider"})


def _read_shortcut(path, session, metadata, n_features):
    """What ``predict`` needs to settle documents by the n-gram path alone, or None.

    None for files exported without it, where the onnx package cannot be
    imported, or where the file's content does not match its description
    (another weight type or shape, as after post-processing).

    Parameters
    ----------
    path : str or os.PathLike
        The ONNX file, which holds the n-gram weights as an initializer.
    session : onnxruntime.InferenceSession
    metadata : dict of str to str
    n_features : int
        Size of the n-gram vocabulary the predictor restored.

    Returns
    -------
    shortcut : tuple or None
        ``(ngram_weight, bounds, encoder_scale, allowance)``: the n-gram
        weights ``(n_features, n_outputs)``, the ``(center, spread,
        magnitude)`` bounds of ``_shortcut.encoder_logit_bounds``, the
        encoder's factor in the sum, and the rounding allowance of the
        session's execution providers.
    """
    if "skattn.shortcut" not in metadata:
        return None
    try:
        import onnx
        from onnx import external_data_helper, numpy_helper
    except Exception:  # not installed, or broken (a protobuf mismatch): predict runs the whole graph
        return None
    try:
        description = json.loads(metadata["skattn.shortcut"])
        n_outputs = int(metadata["skattn.output_size"])
        bounds = np.frombuffer(base64.b64decode(description["bounds"]), dtype="<f8")
        if description["bounds_shape"] != [3, n_outputs, n_outputs] or bounds.size != 3 * n_outputs**2:
            return None
        model = onnx.load(os.fspath(path), load_external_data=False)  # one tensor is read, not all
        for initializer in model.graph.initializer:
            if initializer.name == description["ngram_weight"]:
                break
        else:
            return None
        if initializer.data_type != onnx.TensorProto.FLOAT or tuple(initializer.dims) != (n_features, n_outputs):
            return None
        if external_data_helper.uses_external_data(initializer):
            external_data_helper.load_external_data_for_tensor(initializer, os.path.dirname(os.fspath(path)))
        weight = numpy_helper.to_array(initializer)
        encoder_scale = float(description["encoder_scale"])
    except (ValueError, KeyError, TypeError):
        return None
    allowance = FLOAT32_ROUNDING if set(session.get_providers()) <= FLOAT32_PROVIDERS else HALF_ROUNDING
    return weight, tuple(bounds.reshape(3, n_outputs, n_outputs)), encoder_scale, allowance


class _OnnxPredictor:
    """What both predictors share: inputs of the graph, run over length-sorted batches."""

    def __init__(self, session, metadata):
        self.session = session
        self.tokenizer = tokenizer_from_json(metadata["skattn.tokenizer"])
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
        features = None if self._ngrams is None else transform_ngrams(self._ngrams, documents)
        return self._graph(documents, features)

    def _graph(self, documents, features):
        """The graph's output for ``documents``, whose TF-IDF rows are ``features`` (None without n-grams)."""
        encoded = encode(self.tokenizer, documents, max_length=self.max_length, chunk=self.chunk)
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

    def __init__(self, session, metadata, path=None):
        super().__init__(session, metadata)
        classes = json.loads(metadata["skattn.classes"])
        self.classes_ = np.asarray(classes["values"], dtype=np.dtype(classes["dtype"]))
        self.multilabel = json.loads(metadata["skattn.multilabel"])
        self._shortcut = None  # see _read_shortcut; the file at ``path`` holds the n-gram weights
        if path is not None and self._ngrams is not None:
            self._shortcut = _read_shortcut(path, session, metadata, n_features=len(self._ngrams.vocabulary_))

    def _decisions(self, X):
        """Scores that decide as the graph's: the n-gram path's where it settles the class alone.

        As ``AttentionClassifier.predict``: the graph runs only on the
        documents whose class the encoder's logits could change.
        """
        documents = check_documents(X)
        features = transform_ngrams(self._ngrams, documents)
        weight, bounds, encoder_scale, allowance = self._shortcut
        settled, scores = settle(features @ weight, bounds, encoder_scale, self.multilabel, allowance)
        pending = np.flatnonzero(~settled)
        if len(pending):
            scores[pending] = self._graph([documents[row] for row in pending], features[pending])
        return scores

    def decision_function(self, X):
        """Class scores, as ``AttentionClassifier.decision_function`` gives them.

        Returns
        -------
        scores : numpy.ndarray of shape (n_documents,) or (n_documents, n_classes)
            For two classes, the log-odds of ``classes_[1]``; otherwise one
            logit per class (per label if multilabel).
        """
        logits = self._run(X)
        if len(self.classes_) == 2 and not self.multilabel:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Class probabilities (independent sigmoids for multilabel models)."""
        scores = self._run(X).astype(np.float64)
        if self.multilabel:
            return 1.0 / (1.0 + np.exp(-scores))
        scores -= scores.max(axis=1, keepdims=True)
        probabilities = np.exp(scores)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Class labels (a label-indicator matrix for multilabel models).

        Documents whose class the n-gram path settles alone skip the graph,
        as in ``AttentionClassifier.predict`` (files exported with that rule,
        read with the onnx package installed; otherwise every document runs
        through the graph, with the same labels).
        """
        scores = self._run(X) if self._shortcut is None else self._decisions(X)
        if self.multilabel:
            return (scores > 0).astype(int)
        return self.classes_[scores.argmax(axis=1)]


class OnnxEncoder(_OnnxPredictor):
    """``transform`` of an exported ``AttentionEncoder``."""

    def transform(self, X):
        """Document vectors, shape (n_documents, d_model)."""
        return self._run(X)
