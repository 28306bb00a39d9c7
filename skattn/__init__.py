"""skattn: scikit-learn estimators over a transformer encoder trained from scratch.

The public names are imported on first use, so that ``import skattn.onnx``
(inference with ONNX Runtime) does not import PyTorch.
"""

import importlib

__version__ = "0.2.0.dev0"

_PUBLIC = {
    "AttentionClassifier": "._classifier",
    "AttentionEncoder": "._encoder",
    "EncoderConfig": "._model",
    "TrainingEvent": "._callbacks",
    "load": "._persistence",
    "ModelFileError": "._persistence",
    "InconsistentVersionWarning": "._versions",
    "Explanation": "._explain",
    "AttentionWeights": "._explain",
    "ModelSummary": "._summary",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'skattn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
