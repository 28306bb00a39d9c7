"""Estimator machinery shared by AttentionEncoder and AttentionClassifier.

Parameter table, device resolution, seeding, validation splits, the bridge to
the training loop, streamed inference and pickling live here, so that the two
public estimators only describe what they train and what they return.
"""

import copy
import hashlib
import os
import time
import weakref
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from ._callbacks import check_callbacks
from . import _distributed
from ._devices import available_device, resolve_device, resolve_inference_precision, resolve_precision
from ._loop import Checkpoint, Stopping, TrainingData, adamw, checkpoint_key, infer, linear_schedule, train
from ._model import ACTIVATIONS, POOLINGS, EncoderConfig, TextEncoder
from ._progress import Progress, inference_bar
from ._versions import library_versions, warn_if_versions_differ
from ._text import PAD_ID, SPECIAL_TOKENS, check_documents, encode, tokenizer_from_json, train_tokenizer

try:
    from . import _fast
except ImportError:  # only speed depends on it
    _fast = None

# The versions each estimator unpickled in this process was saved with, so that an
# estimator holding an encoder does not warn again about the versions it has warned about.
_UNPICKLED_WITH = weakref.WeakKeyDictionary()

# Documents encoded at a time during inference: bounds memory to one chunk of
# token ids plus the output array, whatever the number of documents.
_INFERENCE_CHUNK = 4096


class _AttentionBase(BaseEstimator):
    """Base class for skattn estimators. Not part of the public API."""

    _parameter_constraints = {
        "tokenizer": [StrOptions({"wordpiece", "bpe", "unigram"})],
        # At least one symbol and its continuation beside the special tokens.
        "vocab_size": [Interval(Integral, len(SPECIAL_TOKENS) + 2, None, closed="left")],
        "lowercase": ["boolean"],
        "max_length": [Interval(Integral, 8, None, closed="left")],
        "long_text": [StrOptions({"truncate", "chunk"})],
        "d_model": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 0, None, closed="left")],
        "d_ff": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "pooling": [StrOptions(set(POOLINGS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "warmup_fraction": [Interval(Real, 0, 1, closed="both")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "checkpoint_dir": [str, os.PathLike, None],
        "resume": ["boolean"],
        "device": [str, torch.device],
        "precision": [StrOptions({"auto", "fp32", "bf16", "int8"})],
        "random_state": ["random_state"],
        "verbose": [StrOptions({"auto"}), "verbose"],
        "callbacks": [list, None],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    @property
    def vocabulary_(self):
        """dict: Mapping of the tokenizer's tokens to their ids."""
        check_is_fitted(self)
        return self.tokenizer_.get_vocab()

    def attention_weights(self, X):
        """Attention weights of every layer and head of the encoder, for a few documents.

        Each document's first window (its first ``max_length`` tokens, as
        ``long_text="truncate"`` reads it) is run through the fitted
        encoder in float32, one document at a time; the result is a stack of
        ``n_tokens x n_tokens`` matrices per document, meant for reading or
        plotting (:func:`skattn.plot.plot_attention`), not for many documents.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            Documents.

        Returns
        -------
        attention : list of AttentionWeights
            One per document, with its ``tokens`` (``[CLS]`` and ``[SEP]``
            included), their character spans, and ``weights`` of shape
            ``(n_layers, n_heads, n_tokens, n_tokens)``.
        """
        check_is_fitted(self)
        from ._explain import document_attention

        return document_attention(self, check_documents(X))

    def summary(self):
        """A model card: what the fitted model holds and how it was trained.

        Parameter counts by part, the encoder's shape, the vocabulary and
        n-gram counts, the classes, epochs, tokens seen, fit time, device
        and precision, the final loss and validation score, and the library
        versions in use. ``print(est.summary())`` shows it as text; a
        notebook shows it as a table; ``est.summary().to_dict()`` gives the
        facts as plain Python values.

        Returns
        -------
        summary : ModelSummary
        """
        check_is_fitted(self)
        from ._summary import summarize

        return summarize(self)

    # -- checks --------------------------------------------------------------

    def _check_params(self):
        """Validate constructor parameters; raise before any work is done."""
        self._validate_params()
        for name, constraints in self._parameter_constraints.items():
            # scikit-learn's Interval(Integral, ...) lets a bool through, as True is an int.
            integral = any(isinstance(c, Interval) and c.type is Integral for c in constraints)
            if integral and "boolean" not in constraints and isinstance(getattr(self, name), bool):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be an int, not a bool; "
                    f"got {getattr(self, name)!r}."
                )
        check_callbacks(self.callbacks, type(self).__name__)
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}."
            )
        resolve_device(self.device)
        if self.checkpoint_dir is not None:
            _check_checkpoint_dir(self.checkpoint_dir)
        resumable = self.checkpoint_dir is not None and self.resume
        if resumable and self.early_stopping and not isinstance(self.random_state, Integral):
            raise ValueError(
                "resume=True with early_stopping=True needs an int random_state: without one, each fit "
                "draws another validation split, so no fit is the same as the one that wrote the checkpoint."
            )

    def _check_sample_weight(self, sample_weight, documents):
        if sample_weight is None:
            return None
        weights = _check_sample_weight(sample_weight, np.empty((len(documents), 0)), dtype=np.float32)
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("sample_weight must be finite and non-negative.")
        if not weights.any():
            raise ValueError("sample_weight is zero for every document: there is nothing to learn from.")
        return weights

    def _warm(self):
        """Whether this fit continues from the fitted model (``warm_start``)."""
        return self.warm_start and hasattr(self, "model_")

    def _check_continued_params(self, how):
        """Refuse to continue the fitted model (``how``: warm_start or partial_fit) under parameters that describe another.

        A continued fit keeps the fitted model's architecture and tokenizer, so
        a parameter changed since would otherwise be ignored without a word.
        """
        shaping = self._model_shaping_estimator()
        changed = [
            f"{name}={getattr(shaping, name)!r} (the fitted model's is {getattr(self.config_, name)!r})"
            for name in MODEL_SHAPING_PARAMETERS
            if getattr(shaping, name) != getattr(self.config_, name)
        ]
        # Recorded at fit: config_ holds the trained vocabulary's size, not the one asked for.
        recorded = getattr(self, "_tokenizer_in_fit", None) or {}
        changed += [
            f"{name}={getattr(shaping, name)!r} (the fitted model's is {value!r})"
            for name, value in recorded.items()
            if getattr(shaping, name, value) != value
        ]
        changed += self._changed_continued_params()
        if changed:
            raise ValueError(
                f"{how} continues the fitted model, which these parameters would change: "
                f"{', '.join(changed)}. Set them back, or fit a new model (warm_start=False)."
            )

    def _model_shaping_estimator(self):
        """The estimator whose parameters built the fitted model: this one."""
        return self

    def _changed_continued_params(self):
        """Descriptions of other parameters changed since the model was built (none here)."""
        return []

    # -- fitting helpers -----------------------------------------------------

    def _seeds(self):
        """Draw the seeds of one fit from ``random_state``.

        Returns a NumPy generator (batch order, masking, validation split) and
        an int seed for torch (weight initialisation, dropout).
        """
        def draw():
            rng = check_random_state(self.random_state)
            return [int(seed) for seed in rng.randint(np.iinfo(np.int32).max, size=2)]

        # Every rank of a process group trains with rank 0's seeds.
        numpy_seed, torch_seed = _distributed.from_main(draw)
        return np.random.default_rng(numpy_seed), torch_seed

    def _fit_device(self):
        """The device of this fit: the ``device`` parameter, each rank's own GPU in a process group."""
        device = resolve_device(self.device)
        replicas = _distributed.current()
        return device if replicas is None else replicas.local_device(device)

    def _check_same_inputs(self, *arrays, warm):
        """In a process group, raise on every rank unless all ranks passed the same training data.

        Whether the fit continues a fitted model, and how far that model was
        trained, count as inputs too: ranks that differ there would take
        different paths through the fit and wait on each other.
        """
        replicas = _distributed.current()
        if replicas is not None:
            state = np.asarray([int(warm), self.n_iter_ if warm else 0])
            replicas.check_same_inputs(*arrays, state, estimator=type(self).__name__)

    def _new_encoder(self, documents):
        """Train a tokenizer on ``documents`` and build an untrained encoder."""
        tokenizer = _distributed.from_main(
            lambda: train_tokenizer(documents, kind=self.tokenizer, vocab_size=self.vocab_size, lowercase=self.lowercase)
        )
        config = EncoderConfig(
            vocab_size=tokenizer.get_vocab_size(),
            max_length=self.max_length,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            d_ff=self.d_ff,
            dropout=self.dropout,
            pooling=self.pooling,
            activation=self.activation,
            pad_id=PAD_ID,
        )
        return tokenizer, config, TextEncoder(config)

    def _encode(self, tokenizer, config, documents, long_text=None):
        """Token ids of ``documents``, read as ``long_text`` says (by default as the fitted model reads them)."""
        chunk = (long_text or self._long_text()) == "chunk"
        return encode(tokenizer, documents, max_length=config.max_length, chunk=chunk)

    def _long_text_to_fit(self):
        """How this fit reads documents longer than ``max_length``: ``long_text`` of the estimator that builds the model."""
        return self._model_shaping_estimator().long_text

    def _long_text(self):
        """How the fitted model reads documents longer than ``max_length``: as its fit did.

        Models fitted before this was recorded read them by their own ``long_text``.
        """
        return getattr(self, "_long_text_in_fit", None) or self.long_text

    def _split(self, data, rng, stratify=None):
        """Carve a validation set out of ``data`` when ``early_stopping`` is on.

        The split is stratified by ``stratify`` (class indices) when given.
        """
        if not self.early_stopping:
            return data, None
        rows = np.arange(len(data.encoded))
        try:
            train_rows, validation_rows = train_test_split(
                rows,
                test_size=self.validation_fraction,
                random_state=int(rng.integers(np.iinfo(np.int32).max)),
                stratify=stratify,
            )
        except ValueError as error:
            held_out = int(np.ceil(self.validation_fraction * len(rows)))
            n_classes = 1 if stratify is None else len(np.unique(stratify))
            classes = "" if stratify is None else f" stratified over {n_classes} classes"
            # Each side of a stratified split needs a document of every class.
            fraction = "a smaller" if len(rows) - held_out < max(held_out, n_classes) else "a larger"
            advice = f"{fraction} validation_fraction, more training documents"
            if "least populated class" in str(error):  # no fraction splits a class of one document
                advice = "more training documents in each class"
            raise ValueError(
                f"early_stopping=True cannot hold out validation_fraction="
                f"{self.validation_fraction} of {len(rows)} training documents ({held_out} "
                f"documents){classes}: {str(error).rstrip('.')}. Use {advice}, or early_stopping=False."
            ) from None
        return data.subset(np.sort(train_rows)), data.subset(np.sort(validation_rows))

    def _train(
        self,
        module,
        data,
        loss_fn,
        *,
        rng,
        device,
        description,
        validation=None,
        score_fn=None,
        max_epochs=None,
        constant_learning_rate=False,
        checkpointed=True,
        optimizer_state=None,
        weight_scale=None,
    ):
        """Train ``module`` in place with this estimator's training parameters.

        ``module`` brings its own ``parameter_groups``. ``partial_fit`` passes
        ``max_epochs=1``, a constant learning rate, ``checkpointed=False``
        (its progress lives in the estimator), the optimizer state of its
        previous call and the divisor of the document weights of its first
        call (see ``_loop.train``).

        Returns
        -------
        history : skattn._loop.History
        optimizer_state : dict
        """
        if max_epochs is None:
            max_epochs = auto_max_epochs(len(data)) if self.max_epochs == "auto" else self.max_epochs
        replicas = _distributed.current()
        if _fast is not None:
            _fast.speed_up_training(module)
        optimizer = adamw(module.parameter_groups(self.learning_rate, self.weight_decay), self.learning_rate, device)
        if optimizer_state is not None:
            # The moments of the previous call, with today's learning rate and weight
            # decay (set_params between calls counts); a copy, so that a call that
            # fails leaves the estimator's state as it was.
            rates = [{"lr": group["lr"], "weight_decay": group["weight_decay"]} for group in optimizer.param_groups]
            optimizer.load_state_dict(copy.deepcopy(optimizer_state))
            for group, rate in zip(optimizer.param_groups, rates):
                group.update(rate)
                group.pop("initial_lr", None)  # the schedule below starts from the new rate
        n_batches = -(-len(data) // self.batch_size)
        scheduler = linear_schedule(optimizer, max_epochs * n_batches, self.warmup_fraction, constant_learning_rate)
        checkpoint = None
        if self.checkpoint_dir is not None and checkpointed:
            # Rank 0 alone writes checkpoints; its error, if any, is raised on every rank.
            _distributed.from_main(lambda: _make_checkpoint_dir(self.checkpoint_dir))
            key = checkpoint_key(
                description,
                # The estimator's own weights matter only when this fit continues them.
                fingerprint(self, with_state=self._warm()),
                data.digest(),
                None if validation is None else validation.digest(),
            )
            checkpoint = Checkpoint(self.checkpoint_dir, key, description)
        history = train(
            module,
            data,
            loss_fn,
            optimizer=optimizer,
            scheduler=scheduler,
            batch_size=self.batch_size,
            max_epochs=max_epochs,
            stopping=Stopping(self.n_iter_no_change, self.tol),
            rng=rng,
            device=device,
            autocast_dtype=resolve_precision(self.precision, device),
            description=description,
            validation=validation,
            score_fn=score_fn,
            checkpoint=checkpoint,
            resume=self.resume,
            progress=Progress(self._verbose_here(replicas), description, max_epochs),
            callbacks=self.callbacks or (),
            advice=f"Try a lower learning_rate (now {self.learning_rate}) or precision='fp32'.",
            replicas=replicas,
            weight_scale=weight_scale,
        )
        return history, optimizer.state_dict()

    def _verbose_here(self, replicas):
        """``verbose`` in this process: rank 0 of a process group speaks for all, the others are silent."""
        return self.verbose if replicas is None or replicas.is_main else 0

    def _record(self, history, *, started, device, warm=False):
        """Set the fitted attributes that describe training from ``history``.

        ``started`` is the ``time.perf_counter()`` of the call's start,
        ``device`` the device it trained on.
        """
        self.fit_time_ = time.perf_counter() - started
        self.fit_device_ = str(device)
        self.fit_precision_ = "fp32" if resolve_precision(self.precision, device) is None else "bf16"
        previous_curve = list(self.loss_curve_) if warm else []
        previous_norms = list(getattr(self, "grad_norm_curve_", [])) if warm else []
        previous_scores = self.validation_scores_ if warm else None
        self.validation_scores_ = None
        if previous_scores is not None or history.validation_scores is not None:
            # One score per epoch of loss_curve_: NaN for the epochs of fits that did not validate.
            previous_scores = list(previous_scores or [])
            previous_scores = [float("nan")] * (len(previous_curve) - len(previous_scores)) + previous_scores
            scores = history.validation_scores or [float("nan")] * len(history.loss_curve)
            self.validation_scores_ = previous_scores + list(scores)
        self.loss_curve_ = previous_curve + history.loss_curve
        self.grad_norm_curve_ = previous_norms + history.grad_norm_curve
        self.best_score_ = history.best_score
        self.best_loss_ = history.best_loss
        # Read by a classifier that pretrains this encoder: Ctrl-C there stops its whole fit.
        self._interrupted_in_fit = history.interrupted
        self._long_text_in_fit = self._long_text_to_fit()
        if not warm:  # a continued fit keeps the tokenizer it started from
            shaping = self._model_shaping_estimator()
            self._tokenizer_in_fit = {
                "tokenizer": str(shaping.tokenizer),
                "vocab_size": int(shaping.vocab_size),
                "lowercase": bool(shaping.lowercase),
            }
        self.n_iter_ = (self.n_iter_ if warm else 0) + len(history.loss_curve)
        self.n_tokens_seen_ = (self.n_tokens_seen_ if warm else 0) + history.n_tokens_seen

    # -- inference -----------------------------------------------------------

    def _forward_all(self, X, n_outputs, method=None, settler=None):
        """Run the fitted model over documents, streaming them in chunks.

        Reads the estimator and never changes it, so threads may share it.

        Parameters
        ----------
        X : iterable of str
            Documents, validated here.
        n_outputs : int
        method : str, default=None
            Name of the model's method to call (``"embed"``); None calls the
            model itself. Either maps ``(ids, owner, n_documents)`` to
            ``(n_documents, n_outputs)``.
        settler : callable, default=None
            ``settler(model, device, autocast_dtype)`` returns None or a function
            ``settle(documents, outputs)`` that fills the rows of
            ``outputs`` it can answer without the model and returns the
            indices of the other rows with their inputs (a TrainingData),
            which the model then runs on.

        Returns
        -------
        outputs : numpy.ndarray of float32, shape (n_documents, n_outputs)
            Rows in the order of ``X``.
        """
        documents = check_documents(X)
        device = available_device(self.device, warn=True)
        model, autocast_dtype = self._inference_model(device)
        forward = model if method is None else getattr(model, method)
        settle = None if settler is None else settler(model, device, autocast_dtype)
        outputs = np.empty((len(documents), n_outputs), dtype=np.float32)
        bar = inference_bar(self._verbose_here(_distributed.current()), len(documents), _INFERENCE_CHUNK, type(self).__name__)
        for start in range(0, len(documents), _INFERENCE_CHUNK):
            chunk = documents[start : start + _INFERENCE_CHUNK]
            block = outputs[start : start + len(chunk)]  # a view: filled in place
            if settle is None:
                pending, inputs = slice(None), self._inputs(chunk)
            else:
                pending, inputs = settle(chunk, block)
            if len(inputs):
                block[pending] = infer(
                    forward,
                    inputs,
                    n_outputs,
                    batch_size=self.batch_size,
                    device=device,
                    autocast_dtype=autocast_dtype,
                )
            bar.update(len(chunk))
        bar.close()
        return outputs

    def _inputs(self, documents):
        """What the fitted model reads from ``documents``, as a TrainingData."""
        return TrainingData(self._encode(self.tokenizer_, self.config_, documents))

    def _inference_model(self, device):
        """The model to run on ``device`` and the dtype to autocast it to (None for none).

        The replica made by :meth:`_prepare_inference` when it fits the
        current ``device`` and ``precision``; else one made for this call.
        """
        dtype = resolve_inference_precision(self.precision, device)
        prepared = self.__dict__.get("_inference_replica")
        if prepared is not None and prepared[:2] == (device, dtype):
            return prepared[2], None
        model = self.model_
        if next(model.parameters()).device != device:
            model = copy.deepcopy(model).to(device)
        if _fast is None:  # then dtype is never torch.qint8
            return model, dtype
        replica = _fast.replica_for(model, device, dtype)
        return (model, None) if replica is None else (replica, None)

    def _prepare_inference(self):
        """Put ``model_`` on ``device`` and make its inference replica once.

        The replica is in reduced precision, with int8 linear layers (see
        :func:`skattn._fast.int8_replica`), or, on a CPU where oneDNN fuses
        the linear layers, in float32 with fused blocks; see
        :func:`skattn._fast.inference_replica`.

        Called at the end of ``fit`` and on unpickling, so that ``predict``
        and ``transform`` only read the estimator.
        """
        self.__dict__.pop("_inference_replica", None)
        device = available_device(self.device)  # a model saved on a GPU runs on the CPU without one
        self.model_.to(device).eval()
        self.model_.zero_grad(set_to_none=True)  # the last step's gradients: a copy of every weight
        dtype = resolve_inference_precision(self.precision, device)
        replica = None if _fast is None else _fast.replica_for(self.model_, device, dtype)
        if replica is not None:
            self._inference_replica = (device, dtype, replica)

    def _score_fn(self, multilabel=False):
        """Validation scorer for classification: accuracy (subset accuracy if multilabel), weighted as the loss is."""

        def score(module, validation):
            module.eval()
            device = next(module.parameters()).device
            logits = infer(
                module,
                validation,
                module.head.out_features,
                batch_size=self.batch_size,
                device=device,
                autocast_dtype=resolve_precision(self.precision, device),
            )
            if multilabel:
                correct = np.all((logits > 0) == (validation.targets > 0.5), axis=1)
            else:
                correct = logits.argmax(axis=1) == validation.targets
            # Weighted as the loss is, by sample_weight times class_weight (MLPClassifier
            # weighs its validation score by sample_weight, and has no class_weight).
            weights = validation.weights
            if weights is None or not np.sum(weights) > 0:
                return float(np.mean(correct))
            return float(np.average(correct, weights=weights))

        return score

    # -- persistence ---------------------------------------------------------

    @staticmethod
    def _upgrade_weights(state_dict):
        """A pickled state dict in the layout of today's module (as it is, unless overridden)."""
        return state_dict

    def save(self, path):
        """Write this estimator to a model file that loads without running code from it.

        The file holds the parameters, the tokenizer, the weights (in
        safetensors) and the fitted attributes, as data only; load it with
        :func:`skattn.load`. It is written to a temporary file first, then
        renamed: ``path`` is either the complete new file or untouched.
        ``callbacks``, ``checkpoint_dir`` and ``resume`` steer a run on one
        machine and are saved as their defaults.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        self : object
        """
        from ._persistence import save

        save(self, path)
        return self

    def to_onnx(self, path):
        """Export the fitted model to an ONNX file, for inference without PyTorch.

        The file holds the graph (dynamic batch and sequence axes) and, as
        metadata, the tokenizer and everything else needed to go from texts
        to outputs; :func:`skattn.onnx.load` reads it with ONNX Runtime and
        gives the same ``predict`` / ``predict_proba`` / ``transform``. The
        model is exported in float32, whatever ``precision``. Needs the
        ``onnx`` extra (``pip install 'skattn[onnx]'``).

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        self : object
        """
        check_is_fitted(self)
        from ._onnx_export import export

        export(self, path)
        return self

    def __getstate__(self):
        state = dict(super().__getstate__())
        state["_saved_with"] = library_versions()
        # An optimizer kept for partial_fit is not shipped; a reloaded model
        # continues partial_fit with a fresh one.
        state.pop("_optimizer_state", None)
        state.pop("_inference_replica", None)
        if "model_" in state:
            # CPU tensors and the tokenizer's JSON: loading needs neither CUDA
            # nor torch.load, and the live module is rebuilt in __setstate__.
            state["model_"] = {
                name: tensor.detach().to("cpu", copy=True)
                for name, tensor in self.model_.state_dict().items()
            }
            state["tokenizer_"] = self.tokenizer_.to_str()
        return state

    def __setstate__(self, state):
        state = dict(state)
        # Pickles from before versions were recorded have none to compare.
        saved = state.pop("_saved_with", {})
        # The encoder this estimator holds was unpickled first and has warned already
        # if the versions differ: one pickle, one warning.
        encoder = state.get("encoder")
        encoder = encoder.estimator if isinstance(encoder, FrozenEstimator) else encoder
        if encoder is None or _UNPICKLED_WITH.get(encoder) != saved:
            warn_if_versions_differ(saved, what=f"This pickled {type(self).__name__}")
        _UNPICKLED_WITH[self] = saved
        # Estimators pickled before the activation parameter existed were GELU models.
        # Those pickled before callbacks existed had none.
        state = {"activation": "gelu", "callbacks": None, **state}
        if "model_" in state:
            weights = state["model_"]
            tokenizer = tokenizer_from_json(state["tokenizer_"])
            # Tokenizers pickled by earlier versions truncate; encode() cuts windows itself.
            tokenizer.no_truncation()
            state = dict(state, tokenizer_=tokenizer)
            super().__setstate__(state)
            self.model_ = self._build_module()
            self.model_.load_state_dict(self._upgrade_weights(weights))
            self._prepare_inference()
        else:
            super().__setstate__(state)


# -- helpers -------------------------------------------------------------------

# max_epochs="auto" trains for about this many document passes, within
# [AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX] epochs: large corpora of short texts
# overfit within a few epochs (benchmarks/README.md, "Ablations so far").
AUTO_EPOCH_DOCUMENTS = 80_000
AUTO_EPOCHS_MIN, AUTO_EPOCHS_MAX = 2, 10


def _check_checkpoint_dir(directory):
    """Refuse a ``checkpoint_dir`` that is empty, a file, or below a file or a missing root, creating nothing."""
    directory = os.fsdecode(os.fspath(directory))
    if not directory:
        raise ValueError("checkpoint_dir is empty: pass a directory's path, or None for no checkpoints.")
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise ValueError(f"checkpoint_dir={directory!r} is a file, not a directory.")
    existing = os.path.abspath(directory)
    while not os.path.lexists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:  # a drive or a network share that is not there
            raise ValueError(f"checkpoint_dir={directory!r} cannot be created: {existing!r} does not exist.")
        existing = parent
    if not os.path.isdir(existing):
        raise ValueError(f"checkpoint_dir={directory!r} cannot be created: {existing!r} is a file.")


def _make_checkpoint_dir(directory):
    """Create ``checkpoint_dir`` before the first epoch, or say why it cannot be one."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"checkpoint_dir={os.fspath(directory)!r} cannot be created: {error.strerror or error}."
        ) from None


def auto_max_epochs(n_documents):
    """The epochs of ``max_epochs="auto"`` for ``n_documents`` training documents (or sequences)."""
    return int(min(AUTO_EPOCHS_MAX, max(AUTO_EPOCHS_MIN, round(AUTO_EPOCH_DOCUMENTS / max(n_documents, 1)))))


# Parameters that shape the fitted model (fields of its config_): a continued fit cannot change them.
MODEL_SHAPING_PARAMETERS = ("max_length", "d_model", "n_heads", "n_layers", "d_ff", "dropout", "activation", "pooling")


# Parameters that steer a run without changing what it learns: a checkpoint
# written with other values of these still belongs to the same fit.
RUN_CONTROLS = frozenset({"verbose", "callbacks", "checkpoint_dir", "resume", "device"})


def fingerprint(value, with_state=True):
    """What identifies a parameter value for checkpoints, as plain Python data.

    An estimator is its class, the fingerprints of its parameters except
    :data:`RUN_CONTROLS`, and, if fitted and ``with_state``, a digest of its
    tokenizer and weights: a checkpoint written with another encoder, fitted
    or not, is never resumed.
    """
    if not isinstance(value, BaseEstimator):
        return repr(value)
    params = value.get_params(deep=False)
    state = None
    # A wrapper (FrozenEstimator) delegates model_ to what it wraps: that is hashed once, below.
    if with_state and isinstance(value, _AttentionBase) and hasattr(value, "model_"):
        digest = hashlib.sha256(value.tokenizer_.to_str().encode())
        for name, tensor in value.model_.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        state = digest.hexdigest()
    fields = sorted((name, fingerprint(v)) for name, v in params.items() if name not in RUN_CONTROLS)
    return (type(value).__qualname__, fields, state)
