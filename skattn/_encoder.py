"""AttentionEncoder: a scikit-learn transformer that embeds texts."""

import copy
import time
from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from . import _distributed
from ._base import _AttentionBase
from ._devices import resolve_precision, seeded_torch
from ._docs import SHARED_PARAMETERS, TRAINING_ATTRIBUTES
from ._heads import MaskedLanguageModel, SequenceClassifier, classification_loss, masked_language_model_loss
from ._loop import TrainingData, autocast_context, warn_if_not_converged
from ._model import TextEncoder
from ._targets import Targets
from ._text import MASK_ID, SPECIAL_TOKENS, check_documents, length_batches

try:
    from ._fast import SELECTED_MULTIPLE
except ImportError:  # only speed depends on it
    SELECTED_MULTIPLE = 1


class AttentionEncoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _AttentionBase):
    """Transformer encoder trained from scratch that maps texts to vectors.

    ``fit(X)`` trains a subword tokenizer on ``X`` and pretrains a transformer
    encoder on it with masked language modelling; ``fit(X, y)`` trains it on
    the labels instead. ``transform`` returns one pooled vector per document.
    Pass it as ``AttentionClassifier(encoder=...)`` to fine-tune it.

    Parameters
    ----------
%(shared_parameters)s
    mlm_probability : float, default=0.15
        Fraction of tokens selected for prediction in each masked language
        modelling batch (masks are drawn anew each time, "dynamic masking");
        of these, 80% are replaced by ``[MASK]``, 10% by a random token and
        10% left unchanged.

    Attributes
    ----------
    tokenizer_ : tokenizers.Tokenizer
        Subword tokenizer trained on the training texts.

    config_ : EncoderConfig
        Architecture of ``model_``.

    model_ : TextEncoder
        The trained PyTorch encoder, in evaluation mode.

%(training_attributes)s
    See Also
    --------
    AttentionClassifier : Classifier that fine-tunes an AttentionEncoder.

    Examples
    --------
    >>> from skattn import AttentionEncoder
    >>> texts = ["the cat sat", "a dog barked", "the cat slept", "a dog ran"] * 4
    >>> encoder = AttentionEncoder(d_model=16, n_heads=2, d_ff=32, max_epochs=1,
    ...                            random_state=0).fit(texts)
    >>> encoder.transform(["a cat ran"]).shape
    (1, 16)
    """

    _parameter_constraints = {
        **_AttentionBase._parameter_constraints,
        "mlm_probability": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(
        self,
        *,
        tokenizer="wordpiece",
        vocab_size=8000,
        lowercase=True,
        max_length=256,
        long_text="truncate",
        d_model=256,
        n_heads=4,
        n_layers=2,
        d_ff=1024,
        activation="relu",
        dropout=0.1,
        pooling="mean",
        batch_size=32,
        max_epochs="auto",
        learning_rate=1e-3,
        weight_decay=0.01,
        warmup_fraction=0.1,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=3,
        tol=1e-4,
        warm_start=False,
        checkpoint_dir=None,
        resume=False,
        device="auto",
        precision="auto",
        random_state=None,
        verbose="auto",
        callbacks=None,
        mlm_probability=0.15,
    ):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.lowercase = lowercase
        self.max_length = max_length
        self.long_text = long_text
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.d_ff = d_ff
        self.activation = activation
        self.dropout = dropout
        self.pooling = pooling
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.mlm_probability = mlm_probability

    def fit(self, X, y=None, sample_weight=None):
        """Train the tokenizer and the encoder on texts.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            Training documents.
        y : array-like of shape (n_samples,), default=None
            Without labels the encoder is pretrained by masked language
            modelling. With class labels it is trained to classify them
            through a temporary linear head, which is then discarded; every
            label is a class here, ``-1`` included (only
            ``AttentionClassifier`` reads ``-1`` as unlabeled).
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each document in the loss: a weight of 2 counts about
            as much as the document twice. Only the ratios matter: the
            weights are scaled to a mean of 1 over the documents trained on.

        Returns
        -------
        self : AttentionEncoder
            The fitted encoder.
        """
        started = time.perf_counter()
        with _distributed.inputs_agreed():
            self._check_params()
            documents = check_documents(X)
            if y is not None:
                _check_class_labels(y)
                labels = Targets.from_y(
                    y, len(documents), estimator="AttentionEncoder", allow_unlabeled=False, allow_multilabel=False
                )
                classes, targets = labels.classes, labels.encoded
            weights = self._check_sample_weight(sample_weight, documents)
            warm = self._warm()
            if warm:
                self._check_continued_params("warm_start=True")
            self._check_same_inputs(
                documents, None if y is None else targets, None if y is None else classes, weights, warm=warm
            )
        rng, torch_seed = self._seeds()
        device = self._fit_device()
        with seeded_torch(torch_seed, device):
            if warm:
                tokenizer, config = self.tokenizer_, self.config_
                encoder = copy.deepcopy(self.model_)
            else:
                tokenizer, config, encoder = self._new_encoder(documents)
            encoded = self._encode(tokenizer, config, documents, long_text=self._long_text_to_fit())
            if y is None:
                description = "AttentionEncoder pretraining"
                module = MaskedLanguageModel(encoder).to(device)
                windows_per_document = np.diff(encoded.offsets)
                data = TrainingData(
                    encoded.as_sequences(),
                    weights=None if weights is None else np.repeat(weights, windows_per_document),
                )
                train_data, validation = self._split(data, rng)
                loss_fn = masked_language_model_loss(
                    self.mlm_probability,
                    config.vocab_size,
                    n_special=len(SPECIAL_TOKENS),
                    mask_id=MASK_ID,
                    selected_multiple=SELECTED_MULTIPLE,
                )
                score_fn = self._masked_language_model_score(loss_fn)
            else:
                description = "AttentionEncoder supervised"
                module = SequenceClassifier(encoder, len(classes)).to(device)
                data = TrainingData(encoded, targets=targets, weights=weights)
                train_data, validation = self._split(data, rng, stratify=targets)
                loss_fn = classification_loss()
                score_fn = self._score_fn()
            history, _ = self._train(
                module,
                train_data,
                loss_fn,
                rng=rng,
                device=device,
                description=description,
                validation=validation,
                score_fn=score_fn,
            )
        warn_if_not_converged(history, description, stacklevel=3, tol=self.tol)
        self.tokenizer_ = tokenizer
        self.config_ = config
        self.model_ = encoder
        self._prepare_inference()
        self._record(history, started=started, device=device, warm=warm)
        return self

    def transform(self, X):
        """Embed documents.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            Documents to embed.

        Returns
        -------
        X_new : numpy.ndarray of float32, shape (n_samples, d_model)
            One pooled vector per document.
        """
        check_is_fitted(self)
        return self._forward_all(X, self.config_.d_model, method="embed")

    def _masked_language_model_score(self, loss_fn):
        """Validation scorer: minus the masked-language-model loss, with fixed masks."""

        def score(module, validation):
            module.eval()
            device = next(module.parameters()).device
            rng = np.random.default_rng(0)  # the same masks at every epoch
            total, count = 0.0, 0
            lengths = validation.encoded.document_lengths()
            budget = validation.encoded.token_budget(self.batch_size)
            batches = length_batches(lengths, self.batch_size, shuffle=False, token_budget=budget)
            with torch.inference_mode(), autocast_context(device, resolve_precision(self.precision, device)):
                for rows in batches:
                    total += loss_fn(module, validation.batch(rows, device), rng).item() * len(rows)
                    count += len(rows)
            return -total / count

        return score

    @property
    def _n_features_out(self):
        return self.config_.d_model

    def _build_module(self):
        return TextEncoder(self.config_)


AttentionEncoder.__doc__ = (
    AttentionEncoder.__doc__.replace("%(shared_parameters)s", SHARED_PARAMETERS)
    .replace("%(training_attributes)s", TRAINING_ATTRIBUTES)
)


def _check_class_labels(y):
    """Refuse a ``y`` that is not one column of class labels, saying how to embed texts for it.

    A Pipeline passes its target to every step, so an encoder before a
    regressor or a multi-output model receives that model's ``y``.
    """
    try:
        kind = type_of_target(y)
    except (TypeError, ValueError):
        return  # Targets.from_y names what is wrong with it
    if kind.startswith("continuous") or kind in ("multilabel-indicator", "multiclass-multioutput"):
        raise ValueError(
            f"AttentionEncoder.fit(X, y) trains the encoder to classify y, one class label per "
            f"document, and this y is {kind}; a Pipeline passes its target to every step. To embed "
            f"texts for a regressor or a multi-output model, fit the encoder on the texts alone "
            f"first and freeze it: make_pipeline(FrozenEstimator(AttentionEncoder().fit(texts)), Ridge())."
        )
