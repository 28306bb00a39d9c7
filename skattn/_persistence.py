"""Model files that load without running code from them: ``save`` and ``skattn.load``.

A model file is a ZIP archive of data only:

* ``manifest.json``: the format and its version, the estimator's class (one
  of skattn's, looked up by name in a fixed table), its parameters, its
  fitted attributes as plain JSON, the library versions that wrote it, and
  the SHA-256 of every other part;
* ``tokenizer.json``: the trained tokenizer, as the ``tokenizers`` library
  writes it;
* ``weights.safetensors``: the model's weights;
* ``ngrams.json`` and ``ngrams.safetensors``: the n-gram vocabulary and its
  inverse document frequencies (classifiers with the n-gram path);
* ``encoder/...``: the same parts for a fitted ``encoder`` parameter.

Loading reads JSON and safetensors and nothing else: unlike a pickle, a file
cannot make ``load`` import or call anything. Whatever is wrong with a file
(truncated, tampered with, written by a newer skattn) raises
:class:`ModelFileError` before an estimator is returned.
"""

import hashlib
import json
import os
import zipfile
from numbers import Integral, Real

import numpy as np
import safetensors.numpy
import safetensors.torch
import torch
from sklearn.frozen import FrozenEstimator

from ._files import atomic_file
from ._model import EncoderConfig
from ._ngrams import (
    fitted_ngram_lowercase,
    fitted_ngram_marks,
    fitted_ngram_range,
    ngram_vocabulary,
    restore_ngram_vectorizer,
)
from ._text import tokenizer_from_json
from ._versions import library_versions, warn_if_versions_differ

FORMAT = "skattn-model"
# 2: the n-gram path may count punctuation marks and symbols as words ("marks" in
# ngrams.json); a reader of version 1 would silently drop them, so it must refuse the file.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"

# Fitted attributes kept as JSON, beside the parts; model_, tokenizer_,
# config_ and ngram_vectorizer_ have parts or fields of their own.
_CURVES = ("loss_curve_", "grad_norm_curve_", "validation_scores_", "best_score_", "best_loss_", "n_iter_", "n_tokens_seen_")
# How the last fit ran (devices, precision, how it read long texts); files written
# before these existed load without them.
_FIT_FACTS = ("fit_time_", "fit_device_", "fit_precision_", "_long_text_in_fit", "_tokenizer_in_fit", "_partial_weight_scale")

# Parameters that steer a run on one machine rather than describe the model:
# saved as their defaults (a callable or a directory means nothing elsewhere).
_NOT_SAVED = {"callbacks": None, "checkpoint_dir": None, "resume": False}


class ModelFileError(ValueError):
    """A model file cannot be loaded: damaged, tampered with, or of an unknown format."""


def _estimator_classes():
    from ._classifier import AttentionClassifier
    from ._encoder import AttentionEncoder

    return {"AttentionClassifier": AttentionClassifier, "AttentionEncoder": AttentionEncoder}


# -- saving ---------------------------------------------------------------------------


def save(estimator, path):
    """Write ``estimator`` to ``path`` atomically: a complete file or none.

    Parameters
    ----------
    estimator : AttentionClassifier or AttentionEncoder
        Fitted or not.
    path : str or os.PathLike
        The file to write; replaced if it exists.
    """
    with atomic_file(path) as file, zipfile.ZipFile(file, "w") as archive:
        manifest = _write_estimator(archive, "", estimator)
        manifest.update(format=FORMAT, format_version=FORMAT_VERSION)
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1), zipfile.ZIP_DEFLATED)


def _write_estimator(archive, prefix, estimator):
    """Write the parts of ``estimator`` under ``prefix``; return its manifest entry."""
    parts = {}

    def write(name, data, compress):
        archive.writestr(prefix + name, data, zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED)
        parts[name] = hashlib.sha256(data).hexdigest()

    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if name in _NOT_SAVED:
            value = _NOT_SAVED[name]
        elif name == "encoder" and value is not None:
            value = _write_nested_encoder(archive, prefix, value)
        else:
            value = _to_json(value, name, type(estimator).__name__)
        params[name] = value
    entry = {"class": type(estimator).__name__, "params": params, "versions": library_versions()}
    if not hasattr(estimator, "model_"):
        entry["fitted"] = None
        return entry

    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in estimator.model_.state_dict().items()}
    write("weights.safetensors", safetensors.torch.save(weights), compress=False)
    write("tokenizer.json", estimator.tokenizer_.to_str().encode("utf-8"), compress=True)
    fitted = {"config": estimator.config_.to_dict()}
    fitted.update({name: getattr(estimator, name) for name in _CURVES})
    fitted.update({name: getattr(estimator, name) for name in _FIT_FACTS if hasattr(estimator, name)})
    if hasattr(estimator, "classes_"):
        fitted["classes"] = _array_to_json(estimator.classes_)
        fitted["multilabel"] = bool(estimator._multilabel)
        counts = getattr(estimator, "_partial_class_counts", None)
        if counts is not None:
            # A partial_fit stream's logit adjustment reads the counts of all its calls.
            fitted["_partial_class_counts"] = [int(count) for count in counts]
        vectorizer = estimator.ngram_vectorizer_
        if vectorizer is not None:
            terms, idf = ngram_vocabulary(vectorizer)
            ngrams = {
                "terms": terms,
                "ngram_range": list(fitted_ngram_range(vectorizer)),
                "marks": bool(fitted_ngram_marks(vectorizer)),
                "lowercase": bool(fitted_ngram_lowercase(vectorizer)),
            }
            write("ngrams.json", json.dumps(ngrams).encode("utf-8"), compress=True)
            write("ngrams.safetensors", safetensors.numpy.save({"idf": idf}), compress=False)
    entry["fitted"] = fitted
    entry["parts"] = parts
    return entry


def _write_nested_encoder(archive, prefix, encoder):
    frozen = isinstance(encoder, FrozenEstimator)
    inner = encoder.estimator if frozen else encoder
    return {"estimator": _write_estimator(archive, prefix + "encoder/", inner), "frozen": frozen}


def _to_json(value, name, owner):
    """A parameter value as JSON, tuples and dicts tagged so that they come back as they were."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return {"tuple": [_to_json(item, name, owner) for item in value]}
    if isinstance(value, dict):
        return {"dict": [[_to_json(k, name, owner), _to_json(v, name, owner)] for k, v in value.items()]}
    raise TypeError(
        f"{owner}.save: the parameter {name}={value!r} cannot be written to a model file, which "
        f"holds plain values only; set it to one (an int or None for random_state) before saving, "
        f"or use joblib."
    )


def parameters_as_json(value):
    """Parameters (or any value) as plain JSON for display, as ``skattn info`` and ``/info`` show them.

    Unlike the model file's encoding, this is one way: tuples become lists,
    an estimator its class and parameters, and what JSON cannot hold (a
    device, a callable, infinity) its string.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [parameters_as_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): parameters_as_json(item) for key, item in value.items()}
    if hasattr(value, "get_params"):
        return {"class": type(value).__name__, "params": parameters_as_json(value.get_params(deep=False))}
    return str(value)


def _array_to_json(array):
    array = np.asarray(array)
    if array.dtype.kind not in "biufUO":
        raise TypeError(f"classes_ of dtype {array.dtype} cannot be written to a model file.")
    values = array.tolist()
    # JSON writes a finite float as the shortest text that reads back to the same
    # double, so float labels (a pandas column of 0.0 / 1.0) survive exactly.
    if array.dtype.kind == "O" and not all(isinstance(value, (str, int)) for value in values):
        raise TypeError("classes_ must be str or int to be written to a model file.")
    return {"values": values, "dtype": array.dtype.str}


def _class_counts_from_json(counts, n_classes):
    if (
        not isinstance(counts, list)
        or len(counts) != n_classes
        or not all(isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in counts)
    ):
        raise ValueError(f"the manifest's _partial_class_counts is not a list of {n_classes} non-negative integers")
    return np.asarray(counts, dtype=np.int64)


# -- loading --------------------------------------------------------------------------


def load(path):
    """Load an estimator written by ``save``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    estimator : AttentionClassifier or AttentionEncoder
        Ready to predict on its ``device`` (the CPU when that is unavailable).

    Raises
    ------
    ModelFileError
        If the file is not a complete skattn model file of a known format,
        or a part does not match its recorded checksum.
    """
    path = os.fsdecode(os.fspath(path))
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = _read_json(archive, MANIFEST, None, path)
            _check_format(manifest, path)
            estimator = _read_estimator(archive, "", manifest, path)
            versions = manifest["versions"]
            if not isinstance(versions, dict):
                raise TypeError(f"its versions are a {type(versions).__name__}, not an object")
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ModelFileError(f"{path!r} is not a readable skattn model file: {error}") from error
    # The manifest is not covered by a checksum: any part of it may have the wrong type.
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as error:
        raise ModelFileError(f"{path!r} is not a valid skattn model file: {error}") from error
    warn_if_versions_differ(versions, what=f"The model file {path!r}")
    return estimator


def _check_format(manifest, path):
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{path!r} is not a skattn model file (no {FORMAT!r} manifest).")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} has format version {version!r}; this skattn reads versions up to "
            f"{FORMAT_VERSION}. Upgrade skattn to load it."
        )


def _read_part(archive, name, checksums, path):
    data = archive.read(name)
    if checksums is not None:
        recorded = checksums[name.rsplit("/", 1)[-1]]
        if hashlib.sha256(data).hexdigest() != recorded:
            raise ModelFileError(f"{path!r}: the part {name!r} does not match its checksum; the file was changed or damaged.")
    return data


def _read_json(archive, name, checksums, path):
    return json.loads(_read_part(archive, name, checksums, path).decode("utf-8"))


def _read_estimator(archive, prefix, entry, path):
    classes = _estimator_classes()
    if entry.get("class") not in classes:
        raise ModelFileError(f"{path!r}: unknown estimator class {entry.get('class')!r}.")
    Estimator = classes[entry["class"]]
    params = {name: _from_json(value) for name, value in entry["params"].items() if name != "encoder"}
    if "encoder" in entry["params"]:
        params["encoder"] = _read_encoder_param(archive, prefix, entry["params"]["encoder"], path)
    unknown = set(params) - set(Estimator._get_param_names())
    if unknown:
        raise ModelFileError(f"{path!r}: parameters {sorted(unknown)} are not parameters of {entry['class']}.")
    estimator = Estimator(**params)
    # Not _check_params: a model saved for a GPU must load where there is none.
    estimator._validate_params()
    fitted = entry["fitted"]
    if fitted is None:
        return estimator

    checksums = entry["parts"]
    estimator.config_ = EncoderConfig(**fitted["config"])
    tokenizer = tokenizer_from_json(_read_part(archive, prefix + "tokenizer.json", checksums, path).decode("utf-8"))
    estimator.tokenizer_ = tokenizer
    for name in _CURVES:
        setattr(estimator, name, fitted[name])
    for name in _FIT_FACTS:
        if name in fitted:
            setattr(estimator, name, fitted[name])
    if not isinstance(getattr(estimator, "_tokenizer_in_fit", {}), dict):
        raise ValueError("the manifest's _tokenizer_in_fit is not an object")
    scale = getattr(estimator, "_partial_weight_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
        raise ValueError("the manifest's _partial_weight_scale is not a positive number")
    if "classes" in fitted:
        estimator.classes_ = np.asarray(fitted["classes"]["values"], dtype=np.dtype(fitted["classes"]["dtype"]))
        estimator._multilabel = bool(fitted["multilabel"])
        if "_partial_class_counts" in fitted:
            estimator._partial_class_counts = _class_counts_from_json(
                fitted["_partial_class_counts"], len(estimator.classes_)
            )
        estimator.ngram_vectorizer_ = None
        if "ngrams.json" in checksums:
            ngrams = _read_json(archive, prefix + "ngrams.json", checksums, path)
            idf = safetensors.numpy.load(_read_part(archive, prefix + "ngrams.safetensors", checksums, path))["idf"]
            # Files written before ngram_range="auto" hold no range: the parameter was it.
            ngram_range = ngrams.get("ngram_range", estimator.ngram_range)
            estimator.ngram_vectorizer_ = restore_ngram_vectorizer(
                ngrams["terms"],
                idf,
                ngram_range=ngram_range,
                # Files written before the path's own setting was kept: the parameter was it.
                lowercase=ngrams.get("lowercase", estimator.lowercase),
                # Files written before punctuation marks were words dropped them.
                marks=ngrams.get("marks", False),
            )
    weights = safetensors.torch.load(_read_part(archive, prefix + "weights.safetensors", checksums, path))
    module = estimator._build_module()
    module.load_state_dict(weights, strict=True)
    estimator.model_ = module
    estimator._prepare_inference()
    return estimator


def _read_encoder_param(archive, prefix, value, path):
    if value is None:
        return None
    encoder = _read_estimator(archive, prefix + "encoder/", value["estimator"], path)
    return FrozenEstimator(encoder) if value["frozen"] else encoder


def _from_json(value):
    if isinstance(value, dict):
        if "tuple" in value:
            return tuple(_from_json(item) for item in value["tuple"])
        if "dict" in value:
            return {_from_json(k): _from_json(v) for k, v in value["dict"]}
        raise ValueError(f"unknown parameter encoding {sorted(value)}")
    return value
