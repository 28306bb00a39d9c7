"""Export of a fitted estimator's model to ONNX, with what the predictor needs beside it.

The graph maps padded windows of token ids to the estimator's output, one row
per document: class scores for a classifier (its encoder path, head and
n-gram path, summed as in ``SequenceClassifier``), pooled vectors for an
encoder. Tokenization and the TF-IDF features stay outside the graph; the
tokenizer, the n-gram vocabulary and everything else ``skattn.onnx.load``
needs are stored in the ONNX file's metadata, so that one file is the whole
deployable model.
"""

import base64
import contextlib
import copy
import importlib
import logging
import warnings
import json
import numpy as np
import torch
from torch import nn

from ._files import atomic_file
from ._model import pool
from ._ngrams import fitted_ngram_lowercase, fitted_ngram_marks, fitted_ngram_range, ngram_vocabulary
from ._shortcut import encoder_logit_bounds
from ._versions import library_versions
from .onnx import FORMAT_VERSION

# The ONNX operator set the graph is written for (ScatterElements with a
# max reduction needs 18).
OPSET = 18

# The largest size any dynamic axis of the graph may take: the largest int32, far
# beyond any batch. PyTorch 2.6 and 2.7 refuse to export an axis left unbounded
# (a guard against sys.maxsize fails).
AXIS_MAX = 2**31 - 1


class ExportedGraph(nn.Module):
    """A fitted model in operations that export to ONNX, on whole batches of documents.

    Inputs, all int64 but ``ngram_weights``:

    - ``ids`` ``(n_windows, width)``: padded token ids of every window;
    - ``owner`` ``(n_windows,)``: the document of each window;
    - ``documents`` ``(n_documents,)``: only its length is read;
    - ``ngram_indices``, ``ngram_rows``, ``ngram_weights`` ``(n_entries,)``:
      the non-zero TF-IDF entries (column, document, value), classifiers
      with the n-gram path only.
    """

    def __init__(self, model, pooling):
        super().__init__()
        self.model = model
        self.pooling = pooling

    def forward(self, ids, owner, documents, ngram_indices=None, ngram_rows=None, ngram_weights=None):
        encoder = self.model if not hasattr(self.model, "encoder") else self.model.encoder
        hidden, keep = encoder(ids)
        pooled = pool(hidden, keep, self.pooling)  # (n_windows, d_model)
        embedding = _pool_windows(pooled, owner, documents.shape[0], self.pooling)  # (n_documents, d_model)
        if not hasattr(self.model, "head"):
            return embedding
        logits = self.model.head(embedding)
        if self.model.wide is None:
            return logits
        wide = self.model.wide.export_forward(ngram_indices, ngram_rows, ngram_weights, documents.shape[0])
        return self.model.encoder_scale * logits + wide


def _pool_windows(pooled, owner, n_documents, pooling):
    """One vector per document from its windows' vectors: their maximum or their mean."""
    index = owner.unsqueeze(1).expand(-1, pooled.shape[1])  # (n_windows, d_model)
    if pooling == "max":
        start = pooled.new_full((n_documents, pooled.shape[1]), float("-inf"))
        return start.scatter_reduce(0, index, pooled, reduce="amax", include_self=True)
    total = pooled.new_zeros(n_documents, pooled.shape[1]).index_add(0, owner, pooled)
    count = pooled.new_zeros(n_documents).index_add(0, owner, torch.ones_like(owner, dtype=pooled.dtype))
    return total / count.clamp(min=1).unsqueeze(1)


def export(estimator, path):
    """Write ``estimator``'s fitted model and its predictor metadata to the ONNX file ``path``.

    Parameters
    ----------
    estimator : AttentionClassifier or AttentionEncoder
        Fitted.
    path : str or os.PathLike
    """
    for name in ("onnx", "onnxscript"):  # what torch's exporter needs
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ImportError(f"to_onnx needs {name}: pip install 'skattn[onnx]'.") from error

    model = _cpu_float32_copy(estimator.model_)
    is_classifier = hasattr(estimator, "classes_")
    vectorizer = estimator.ngram_vectorizer_ if is_classifier else None
    graph = ExportedGraph(model, estimator.config_.pooling).eval()
    inputs, names = _example_inputs(with_ngrams=vectorizer is not None)
    windows, width, entries, documents = (
        torch.export.Dim(name, min=1, max=AXIS_MAX) for name in ("windows", "width", "ngram_entries", "documents")
    )
    dynamic = {
        "ids": {0: windows, 1: width},
        "owner": {0: windows},
        "documents": {0: documents},
        "ngram_indices": {0: entries},
        "ngram_rows": {0: entries},
        "ngram_weights": {0: entries},
    }
    with torch.no_grad(), _quiet_loggers("torch.onnx", "onnxscript", "onnx_ir"), warnings.catch_warnings():
        # Axes tied to one another (windows of ids and owner) are named once: not news.
        warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*LeafSpec", category=FutureWarning)
        program = torch.onnx.export(
            graph,
            inputs,
            input_names=list(names),
            output_names=["scores" if is_classifier else "embeddings"],
            dynamic_shapes=tuple(dynamic[name] for name in names),
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    program.optimize()
    proto = program.model_proto
    metadata = _metadata(estimator, vectorizer)
    if vectorizer is not None:
        metadata.update(_shortcut_metadata(model, proto))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_file(path) as file:
        file.write(proto.SerializeToString())


def _shortcut_metadata(model, proto):
    """What the predictor needs to settle documents by the n-gram path alone, as ``_shortcut`` does.

    The bounds on the encoder's logits, the encoder's scale and the name of
    the graph's initializer that holds the n-gram weights (the predictor
    reads them from the file rather than from a second copy); nothing when
    no initializer holds exactly those weights.
    """
    from onnx import numpy_helper  # export checked that onnx is installed

    weight = model.wide.bag.weight.detach().numpy()
    for initializer in proto.graph.initializer:
        if tuple(initializer.dims) != weight.shape:  # the exporter may rename it: found by shape and values
            continue
        if np.array_equal(numpy_helper.to_array(initializer), weight):
            bounds = np.stack(encoder_logit_bounds(model)).astype("<f8")  # (3, n_outputs, n_outputs)
            return {
                "skattn.shortcut": json.dumps({
                    "ngram_weight": initializer.name,
                    "encoder_scale": float(model.encoder_scale),
                    "bounds_shape": list(bounds.shape),
                    "bounds": base64.b64encode(bounds.tobytes()).decode("ascii"),
                })
            }
    warnings.warn(
        "The exported graph holds no exact copy of the n-gram weights, so the ONNX predictor's predict "
        "will run the whole graph on every document (its labels are the same).",
        RuntimeWarning,
        stacklevel=3,
    )
    return {}


@contextlib.contextmanager
def _quiet_loggers(*names):
    """Keep the exporter's notes (about torchvision, attribute types) off the user's stderr."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _cpu_float32_copy(module):
    return copy.deepcopy(module).to(device="cpu", dtype=torch.float32).eval()


def _example_inputs(with_ngrams):
    """Inputs whose sizes all differ, so that the exporter keeps every axis dynamic."""
    ids = torch.tensor([[2, 7, 8, 9, 3, 0, 0], [2, 9, 3, 0, 0, 0, 0], [2, 5, 6, 3, 0, 0, 0]])
    inputs = [ids, torch.tensor([0, 0, 1]), torch.zeros(2, dtype=torch.int64)]
    names = ["ids", "owner", "documents"]
    if with_ngrams:
        inputs += [torch.tensor([0, 1, 2, 1, 0]), torch.tensor([0, 0, 0, 1, 1]), torch.full((5,), 0.5)]
        names += ["ngram_indices", "ngram_rows", "ngram_weights"]
    return tuple(inputs), names


def _metadata(estimator, vectorizer):
    """What ``skattn.onnx.load`` reads besides the graph, as ONNX metadata strings."""
    config = estimator.config_
    metadata = {
        "skattn.format_version": str(FORMAT_VERSION),
        "skattn.class": type(estimator).__name__,
        "skattn.versions": json.dumps(library_versions()),
        "skattn.tokenizer": estimator.tokenizer_.to_str(),
        "skattn.max_length": str(config.max_length),
        "skattn.chunk": json.dumps(estimator._long_text() == "chunk"),
        "skattn.batch_size": str(estimator.batch_size),
        "skattn.output_size": str(config.d_model),
    }
    if hasattr(estimator, "classes_"):
        classes = np.asarray(estimator.classes_)
        metadata["skattn.classes"] = json.dumps({"values": classes.tolist(), "dtype": classes.dtype.str})
        metadata["skattn.multilabel"] = json.dumps(bool(estimator._multilabel))
        metadata["skattn.output_size"] = str(len(classes))
    if vectorizer is not None:
        terms, idf = ngram_vocabulary(vectorizer)
        metadata["skattn.ngram_terms"] = json.dumps(terms)
        metadata["skattn.ngram_idf"] = base64.b64encode(idf.astype("<f8").tobytes()).decode("ascii")
        metadata["skattn.ngram_range"] = json.dumps(list(fitted_ngram_range(vectorizer)))
        metadata["skattn.ngram_marks"] = json.dumps(bool(fitted_ngram_marks(vectorizer)))
        metadata["skattn.lowercase"] = json.dumps(bool(fitted_ngram_lowercase(vectorizer)))
    return metadata
