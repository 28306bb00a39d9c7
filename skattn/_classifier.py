"""AttentionClassifier: a scikit-learn classifier over a transformer encoder."""

import copy
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted

from . import _distributed
from ._base import _AttentionBase
from ._devices import seeded_torch
from ._docs import SHARED_PARAMETERS, TRAINING_ATTRIBUTES
from ._encoder import AttentionEncoder
from ._heads import SequenceClassifier, classification_loss
from ._loop import TrainingData, to_device, warn_if_not_converged
from ._model import TextEncoder
from ._ngram_path import NgramPath, rename_legacy_weights
from ._ngrams import (
    NgramFeatures,
    fit_ngram_vectorizer,
    fitted_ngram_lowercase,
    fitted_ngram_range,
    transform_ngrams,
    written_without_spaces,
)
from ._settle import settle as settle_by_ngrams
from ._shortcut import encoder_logit_bounds, rounding_allowance
from ._targets import Targets, check_classes
from ._text import UNK_ID, check_documents

# encoder_logit_scale="auto": the encoder's weight in the sum of the two paths'
# logits, chosen on validation splits (benchmarks/README.md). On text written
# without spaces the n-gram path reads character 1-3 grams, the encoder reads
# the same characters and is then the weaker path, so it weighs less.
AUTO_SCALE_WORDS = 0.25
AUTO_SCALE_CHARACTERS = 0.1


class AttentionClassifier(ClassifierMixin, _AttentionBase):
    """Text classifier built on a transformer encoder trained from scratch.

    ``fit`` trains a subword tokenizer on the training texts, then a
    transformer encoder with a linear head on the labels: a softmax over the
    classes, or one sigmoid per label when ``y`` is a label-indicator matrix
    (multilabel). With
    ``encoder=AttentionEncoder(...)`` the encoder is first pretrained by masked
    language modelling on all training texts, unlabeled ones included, and
    then fine-tuned.

    Parameters
    ----------
%(shared_parameters)s
    encoder : AttentionEncoder, FrozenEstimator or None, default=None
        Encoder to fine-tune. If None, a new encoder is built from this
        estimator's parameters and trained on the labels only. If unfitted,
        a clone of it is pretrained on ``X`` (all rows, unlabeled ones
        included) before fine-tuning. If fitted, a copy of it is fine-tuned
        and the original is left unchanged. Either way the encoder's own
        parameters decide the tokenizer and architecture (``tokenizer``
        through ``pooling`` above are then ignored), and this estimator's
        parameters decide the fine-tuning. ``clone`` (and so grid search
        and cross-validation) drops a fitted encoder's training; wrap it in
        :class:`sklearn.frozen.FrozenEstimator` so that every clone
        fine-tunes the same pretrained encoder.

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, multiplied into each document's
        ``sample_weight``. ``"balanced"`` weighs each class inversely to its
        frequency in ``y``; a dict maps labels to weights. Not supported by
        ``partial_fit`` as ``"balanced"``, which would need every call's
        labels in advance.

    logit_adjustment : float, default=1.0
        Strength ``tau`` of the logit-adjusted loss (Menon et al., 2021):
        during training, ``tau * log(class frequency in y)`` is added to the
        logits inside the cross-entropy, so that the model's own logits,
        used to predict, favour rare classes as a class-balanced error would.
        1 is the paper's choice; 0 trains on the plain cross-entropy. With
        ``partial_fit`` the frequencies are those of all calls so far. Has
        no effect with multilabel ``y`` (independent sigmoids).

    ngram_range : "auto", tuple of (int, int) or None, default="auto"
        Word n-grams of the linear path beside the encoder: a linear model
        over the TF-IDF of the whole document's n-grams (``min_n`` to
        ``max_n`` words; sublinear tf, the 262,144 most frequent n-grams),
        trained in the same loop on its own loss. The classifier's logits are
        ``encoder_logit_scale`` times the encoder's plus the n-gram path's.
        A word is a run of letters, digits and underscores, except that
        each Han, Hiragana or Katakana character is a word of its own, and
        so is each punctuation mark, symbol or emoji (any other character
        but whitespace). ``"auto"`` takes ``(1, 2)``, or ``(1, 3)`` when most
        words of the training texts are single Han, Hiragana or Katakana
        characters (text written without spaces); the range used is
        ``ngram_vectorizer_.analyzer.ngram_range``. None trains the encoder
        alone.

    encoder_logit_scale : "auto" or float, default="auto"
        Factor on the encoder's logits in their sum with the n-gram path's
        (a product of the two paths' probabilities with the encoder's
        tempered). Both paths fit the training set almost perfectly, and the
        encoder is then the more overconfident one on new texts. ``"auto"``
        takes 0.25, or 0.1 when most words of the training texts are single
        Han, Hiragana or Katakana characters (where the n-gram path's
        character n-grams hold most of what the encoder learns); both were
        chosen on validation splits (``benchmarks/README.md``). The scale
        used is ``encoder_logit_scale_``; with ``"auto"``, ``warm_start``
        and ``partial_fit`` keep the one in use, a number replaces it. It
        does not change how either path is trained. Ignored when
        ``ngram_range=None`` (``encoder_logit_scale_`` is then 1.0).

    Attributes
    ----------
    classes_ : numpy.ndarray of shape (n_classes,)
        Class labels, as given in ``y``; for multilabel ``y``, the label
        column indices ``0 .. n_labels - 1``.

    tokenizer_ : tokenizers.Tokenizer
        Subword tokenizer trained on the training texts.

    config_ : EncoderConfig
        Architecture of the encoder in ``model_``.

    model_ : SequenceClassifier
        The trained PyTorch model (encoder, head and n-gram path), in
        evaluation mode.

    ngram_vectorizer_ : sklearn.feature_extraction.text.TfidfVectorizer or None
        The n-gram features of the linear path; None if ``ngram_range=None``.

    encoder_logit_scale_ : float
        The factor on the encoder's logits that ``predict`` uses:
        ``encoder_logit_scale``, resolved if ``"auto"``.

%(training_attributes)s
    See Also
    --------
    AttentionEncoder : Transformer that embeds texts, for pretraining.

    Examples
    --------
    >>> from skattn import AttentionClassifier
    >>> texts = ["good film", "great acting", "bad plot", "awful film"] * 8
    >>> labels = ["pos", "pos", "neg", "neg"] * 8
    >>> clf = AttentionClassifier(d_model=16, n_heads=2, d_ff=32, max_epochs=20,
    ...                           random_state=0).fit(texts, labels)
    >>> clf.predict(["great film"]).shape
    (1,)
    """

    _parameter_constraints = {
        **_AttentionBase._parameter_constraints,
        "encoder": [None, HasMethods(["fit", "transform"])],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "logit_adjustment": [Interval(Real, 0, None, closed="left")],
        "ngram_range": [StrOptions({"auto"}), tuple, None],
        "encoder_logit_scale": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
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
        encoder=None,
        class_weight=None,
        logit_adjustment=1.0,
        ngram_range="auto",
        encoder_logit_scale="auto",
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
        self.encoder = encoder
        self.class_weight = class_weight
        self.logit_adjustment = logit_adjustment
        self.ngram_range = ngram_range
        self.encoder_logit_scale = encoder_logit_scale

    def fit(self, X, y, sample_weight=None):
        """Train the classifier on labelled texts.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            Training documents.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels (str or int), or a binary label-indicator matrix for
            multilabel classification. With an integer ``y``, ``-1`` marks an
            unlabeled document: it is used to pretrain ``encoder`` and to
            train the tokenizer, not in the classification loss.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each document in the loss: a weight of 2 counts about
            as much as the document twice. Only the ratios matter: the
            weights are scaled to a mean of 1 over the documents trained on.

        Returns
        -------
        self : AttentionClassifier
            The fitted classifier.
        """
        with _distributed.inputs_agreed():
            self._check_params()
            self._check_encoder()
            documents = check_documents(X)
            targets = Targets.from_y(y, len(documents), estimator="AttentionClassifier")
            weights = self._check_sample_weight(sample_weight, documents)
            warm = self._warm()
            if warm:
                _check_same_kind_of_target(targets, self._multilabel, "warm_start=True")
            if warm and not np.array_equal(targets.classes, self.classes_):
                raise ValueError(
                    f"warm_start=True needs the classes of the fitted model {self.classes_.tolist()}; "
                    f"y has {targets.classes.tolist()}."
                )
            if warm:
                self._check_continued_params("warm_start=True")
            return self._fit(documents, targets, weights, warm=warm, partial=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train for one pass over a batch of labelled texts.

        The first call trains the tokenizer and the n-gram vocabulary on its
        ``X`` and builds the model; later calls keep all three, and keep the
        optimizer's state, so that calling it on successive chunks of a
        stream trains one model. The learning rate stays at
        ``learning_rate`` (and ``weight_decay`` as set, both read on every
        call); ``early_stopping`` does not apply and no checkpoint is
        written. A call that fails leaves the stream as it was.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            A batch of training documents.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Their labels, all from ``classes``.
        classes : array-like of shape (n_classes,), default=None
            Every class that will ever appear in ``y``: required on the first
            call, optional afterwards. For multilabel ``y``, ``range(n_labels)``.
            With ``-1`` among them, ``-1`` is a class, not the mark of an
            unlabeled document.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each document in the loss: a weight of 2 counts about
            as much as the document twice. Weights (times ``class_weight``)
            are divided by the mean weight of the first call, so that every
            call of a stream weighs on the same scale.

        Returns
        -------
        self : AttentionClassifier
            The updated classifier.
        """
        with _distributed.inputs_agreed():
            # Before _check_params, whose checks of resume are fit's.
            if isinstance(self.resume, (bool, np.bool_)) and self.resume:
                raise ValueError(
                    "resume=True continues an interrupted fit; partial_fit keeps its progress in the "
                    "estimator itself, one epoch per call, so there is nothing to resume. Set resume=False."
                )
            self._check_params()
            self._check_encoder()
            if isinstance(self.class_weight, str):  # "balanced", the only string allowed
                raise ValueError(
                    "class_weight='balanced' is not supported by partial_fit: it would weigh the classes "
                    "by each call's labels alone. Pass a dict computed over the whole stream's labels, "
                    "for example dict(zip(classes, sklearn.utils.class_weight.compute_class_weight("
                    "'balanced', classes=classes, y=all_labels)))."
                )
            fitted = hasattr(self, "model_")
            if not fitted and classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            if classes is not None:
                classes = check_classes(classes)
                if fitted and not np.array_equal(classes, self.classes_):
                    raise ValueError(
                        f"classes={classes.tolist()} differs from the classes of the first call to "
                        f"partial_fit, {self.classes_.tolist()}."
                    )
            documents = check_documents(X)
            targets = Targets.from_y(
                y, len(documents), estimator="AttentionClassifier", classes=self.classes_ if fitted else classes
            )
            weights = self._check_sample_weight(sample_weight, documents)
            if fitted:
                _check_same_kind_of_target(targets, self._multilabel, "partial_fit")
                self._check_continued_params("partial_fit")
            return self._fit(documents, targets, weights, warm=fitted, partial=True)

    def _check_params(self):
        super()._check_params()
        ngram_range = self.ngram_range
        if ngram_range is None or (isinstance(ngram_range, str) and ngram_range == "auto"):
            return
        if isinstance(ngram_range, str) or not (
            len(ngram_range) == 2
            and all(isinstance(n, Integral) and not isinstance(n, bool) for n in ngram_range)
            and 1 <= ngram_range[0] <= ngram_range[1]
        ):
            raise ValueError(
                f"ngram_range must be 'auto', None or a tuple (min_n, max_n) of integers with "
                f"1 <= min_n <= max_n; got {ngram_range!r}."
            )

    def _check_encoder(self):
        encoder = _unfrozen(self.encoder)
        if encoder is not None and not isinstance(encoder, AttentionEncoder):
            raise TypeError(
                f"encoder must be an AttentionEncoder, a FrozenEstimator of a fitted one, or None; "
                f"got {type(encoder).__name__}."
            )
        if encoder is not self.encoder:
            try:
                check_is_fitted(encoder)
            except NotFittedError:
                raise ValueError(
                    "encoder is a FrozenEstimator of an unfitted AttentionEncoder: fit the "
                    "encoder before freezing it, or pass it unfrozen to pretrain it in fit."
                ) from None

    def _fit(self, documents, targets, weights, *, warm, partial):
        """Train from ``fit`` or ``partial_fit``; set fitted attributes only at the end."""
        started = time.perf_counter()
        if not targets.labeled.all() and not self._pretrains_an_encoder():
            _warn_unused_unlabeled(int(np.sum(~targets.labeled)))
        class_weight = self._class_weights(targets)
        rows = np.flatnonzero(targets.labeled)
        document_weights = _document_weights(weights, class_weight, targets.encoded, rows)
        weight_scale = None
        if partial and len(rows):  # the first call's mean weight, so that later calls weigh against it
            weight_scale = getattr(self, "_partial_weight_scale", None) if warm else None
            if weight_scale is None:
                weight_scale = 1.0 if document_weights is None else float(np.mean(document_weights, dtype=np.float64))
        class_counts = self._class_counts(targets, partial)
        logit_offset = self._logit_offset(targets, class_counts)
        self._check_same_inputs(documents, targets.encoded, targets.classes, weights, warm=warm)
        rng, torch_seed = self._seeds()
        device = self._fit_device()
        description = "AttentionClassifier"
        pretrained = None if warm else self._pretrained_encoder(documents, torch_seed)
        with seeded_torch(torch_seed, device):
            tokenizer, config, vectorizer, ngrams, module = self._model_to_train(
                documents, len(targets.classes), warm=warm, pretrained=pretrained
            )
            scale = 1.0 if vectorizer is None else self._encoder_logit_scale(documents, module, warm)
            module.to(device).encoder_scale.fill_(scale)  # unused without the n-gram path
            encoded = self._encode(tokenizer, config, [documents[i] for i in rows], long_text=self._long_text_to_fit())
            if pretrained is not None:
                _warn_if_mostly_unknown(encoded)
            data = TrainingData(
                encoded,
                targets=targets.encoded[rows],
                weights=document_weights,
                features=None if ngrams is None else ngrams.subset(rows),
            )
            options = {}
            if partial:
                options = dict(
                    max_epochs=1,
                    constant_learning_rate=True,
                    checkpointed=False,
                    optimizer_state=getattr(self, "_optimizer_state", None),
                    weight_scale=weight_scale,
                )
                validation = None
            else:
                data, validation = self._split(data, rng, stratify=None if targets.multilabel else data.targets)
            history, optimizer_state = self._train(
                module,
                data,
                classification_loss(multilabel=targets.multilabel, logit_offset=logit_offset),
                rng=rng,
                device=device,
                description=description,
                validation=validation,
                score_fn=self._score_fn(targets.multilabel),
                **options,
            )
        if not partial:
            # Points the warning at the user's call: here, fit, then the caller.
            warn_if_not_converged(history, description, stacklevel=4, tol=self.tol)
        self.classes_ = targets.classes
        self.tokenizer_ = tokenizer
        self.config_ = config
        self.ngram_vectorizer_ = vectorizer
        self.model_ = module
        self._multilabel = targets.multilabel
        self._record(history, started=started, device=device, warm=warm)
        self._prepare_inference()
        if partial:
            self._optimizer_state = optimizer_state
            self._partial_class_counts = class_counts
            if weight_scale is not None:  # None: a call without labeled documents sets none
                self._partial_weight_scale = weight_scale
        else:
            self.__dict__.pop("_partial_class_counts", None)
            self.__dict__.pop("_partial_weight_scale", None)
            # A later partial_fit starts a fresh optimizer on this new model.
            self.__dict__.pop("_optimizer_state", None)
        return self

    def decision_function(self, X):
        """Class scores (logits) of documents.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            Documents to score.

        Returns
        -------
        scores : numpy.ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, the log-odds of ``classes_[1]``; otherwise one
            logit per class (per label if multilabel), in the order of
            ``classes_``.
        """
        check_is_fitted(self)
        logits = self._logits(X)
        if len(self.classes_) == 2 and not self._multilabel:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Class probabilities of documents.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            Documents to classify.

        Returns
        -------
        proba : numpy.ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``; rows sum to 1. For
            multilabel ``y``, the independent probability of each label.
        """
        return np.exp(self.predict_log_proba(X))

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities of documents.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            Documents to classify.

        Returns
        -------
        log_proba : numpy.ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        logits = self._logits(X).astype(np.float64)
        if self._multilabel:
            return -np.logaddexp(0.0, -logits)  # log sigmoid
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def predict(self, X):
        """Predict the class of documents.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            Documents to classify.

        Returns
        -------
        y_pred : numpy.ndarray of shape (n_samples,) or (n_samples, n_labels)
            Labels from ``classes_``, or the label-indicator matrix for
            multilabel ``y``.

        Notes
        -----
        With the n-gram path, documents whose class that path decides by a
        lead the encoder's logits cannot overcome (a bound computed from the
        encoder's head and final LayerNorm, whatever the text) are answered
        without running the encoder. The labels are those of the largest
        logit of :meth:`decision_function`, which runs both paths on every
        document (in reduced precision, bf16 or int8, whose results move
        slightly with the batch a document runs in: up to documents whose
        top two logits nearly tie).
        """
        check_is_fitted(self)
        logits = self._forward_all(X, len(self.classes_), settler=self._ngram_settler)
        if self._multilabel:
            return (logits > 0).astype(np.int64)
        return self.classes_[logits.argmax(axis=1)]

    def explain(self, X, *, target=None, method="gradient"):
        """Why the classifier scores each document as it does: token and n-gram importances.

        For each document, the tokens the encoder read (mapped back to their
        characters in the text) and the n-grams the n-gram path knows, each
        with its importance for one class, and the share of the decision
        each path carried. Scores are logits relative to the mean over
        classes; see :class:`~skattn.Explanation`. Documents run one at a
        time in float32: explain a few documents, not a data set.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            Documents to explain.
        target : label, default=None
            The class (or label, if multilabel) to explain for every
            document; None explains each document's predicted class (for
            multilabel ``y``, its highest-scoring label).
        method : {"gradient", "rollout"}, default="gradient"
            How tokens are scored: ``"gradient"`` multiplies each token's
            embedding by the gradient of the encoder's score for the class;
            ``"rollout"`` follows the attention weights from the pooled
            vector back to the tokens (attention rollout), whatever the class.

        Returns
        -------
        explanations : list of Explanation
            One per document. ``explanation.top(5)`` lists the strongest
            features, ``explanation.to_frame()`` gives all of them as a
            DataFrame, and a notebook shows the text shaded by importance;
            :func:`skattn.plot.plot_explanation` draws it with matplotlib.
        """
        check_is_fitted(self)
        from ._explain import METHODS, explain_documents

        if not isinstance(method, str) or method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
        documents = check_documents(X)
        if target is None:
            targets = self._logits(documents).argmax(axis=1)
        else:
            matches = np.flatnonzero(self.classes_ == target) if np.ndim(target) == 0 else []
            if len(matches) != 1:
                raise ValueError(f"target={target!r} is not one of the classes {self.classes_.tolist()}.")
            targets = np.full(len(documents), matches[0])
        return explain_documents(self, documents, targets, method)

    def _logits(self, X):
        return self._forward_all(X, len(self.classes_))

    def _ngram_settler(self, model, device, autocast_dtype):
        """For ``predict``: a ``settle`` function of ``_forward_all`` that skips the encoder where it cannot matter.

        It scores each chunk's documents with the n-gram path alone and
        answers those whose class the encoder cannot change (see
        ``_shortcut.py``); the rest get their token ids and run the whole
        model. None when the model has no n-gram path.
        """
        if getattr(model, "wide", None) is None:
            return None
        bounds = encoder_logit_bounds(model)
        encoder_scale = float(model.encoder_scale)
        allowance = rounding_allowance(autocast_dtype)

        def move(array):
            return to_device(array, device)

        def settle(documents, outputs):
            features = NgramFeatures(transform_ngrams(self.ngram_vectorizer_, documents))
            with torch.inference_mode():
                logits = model.wide(features.tensors(np.arange(len(documents)), move)).float().cpu().numpy()
            settled, decisions = settle_by_ngrams(logits, bounds, encoder_scale, self._multilabel, allowance)
            outputs[settled] = decisions[settled]
            pending = np.flatnonzero(~settled)
            encoded = self._encode(self.tokenizer_, self.config_, [documents[i] for i in pending])
            return pending, TrainingData(encoded, features=features.subset(pending))

        return settle

    def _inputs(self, documents):
        inputs = super()._inputs(documents)
        if self.ngram_vectorizer_ is not None:
            inputs.features = NgramFeatures(transform_ngrams(self.ngram_vectorizer_, documents))
        return inputs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    # -- fit helpers -----------------------------------------------------------

    def _pretrains_an_encoder(self):
        """Whether ``fit`` pretrains ``encoder`` on its documents: it is given and unfitted."""
        if self.encoder is None:
            return False
        try:
            check_is_fitted(_unfrozen(self.encoder))
        except NotFittedError:
            return True
        return False

    def _pretrained_encoder(self, documents, torch_seed):
        """Tokenizer, config and a private copy of the encoder module to fine-tune.

        Returns None without ``encoder``. An unfitted ``encoder`` is cloned and
        pretrained on ``documents``; a fitted one is copied, never modified.
        """
        if self.encoder is None:
            return None
        encoder = _unfrozen(self.encoder)
        if self._pretrains_an_encoder():
            encoder = clone(encoder)
            if encoder.random_state is None:
                encoder.set_params(random_state=torch_seed)
            encoder.fit(documents)
            if encoder._interrupted_in_fit:
                # Ctrl-C stops the whole fit: there is no classifier yet to keep.
                raise KeyboardInterrupt(
                    "pretraining the encoder was interrupted; the classifier was not fine-tuned and is left as it was."
                )
        return encoder.tokenizer_, encoder.config_, copy.deepcopy(encoder.model_).cpu()

    @property
    def encoder_logit_scale_(self):
        """The factor on the encoder's logits in ``predict``; see ``encoder_logit_scale``."""
        check_is_fitted(self, "model_")
        # The model holds it in float32: its shortest decimal form gives back 0.1, not 0.10000000149.
        return float(str(self.model_.encoder_scale.cpu().numpy()))

    def _model_shaping_estimator(self):
        """The encoder whose parameters built the fitted model, when one was given, else this estimator."""
        return self if self.encoder is None else _unfrozen(self.encoder)

    def _changed_continued_params(self):
        vectorizer = self.ngram_vectorizer_
        changed = []
        if self.encoder is not None and vectorizer is not None:
            # The encoder's tokenizer is compared with the encoder's parameters; the n-gram path reads this one.
            fitted = fitted_ngram_lowercase(vectorizer)
            if fitted != self.lowercase:
                changed.append(f"lowercase={self.lowercase!r} (the fitted n-gram path's is {fitted!r})")
        if isinstance(self.ngram_range, str):
            return changed  # "auto" keeps what the first fit chose
        wanted = None if self.ngram_range is None else tuple(self.ngram_range)
        fitted = None if vectorizer is None else fitted_ngram_range(vectorizer)
        if wanted != fitted:
            changed.append(f"ngram_range={self.ngram_range!r} (the fitted model's is {fitted!r})")
        return changed

    def _encoder_logit_scale(self, documents, module, warm):
        """``encoder_logit_scale``, or for ``"auto"`` the factor that suits ``documents``.

        A warm fit keeps the factor ``module`` (the fitted model's copy) holds.
        """
        scale = self.encoder_logit_scale
        if not (isinstance(scale, str) and scale == "auto"):
            return float(scale)
        if warm:
            return float(module.encoder_scale)
        return AUTO_SCALE_CHARACTERS if written_without_spaces(documents) else AUTO_SCALE_WORDS

    def _class_weights(self, targets):
        """Weight of each class in the loss, or None (``class_weight``)."""
        if self.class_weight is None:
            return None
        if targets.multilabel:
            raise ValueError("class_weight is not supported with multilabel y.")
        if isinstance(self.class_weight, dict):
            for label, weight in self.class_weight.items():
                if isinstance(weight, bool) or not isinstance(weight, Real) or not np.isfinite(weight) or weight < 0:
                    raise ValueError(
                        f"class_weight[{label!r}] is {weight!r}; class weights must be finite, non-negative numbers."
                    )
        labeled = targets.labels[targets.labeled]
        return compute_class_weight(self.class_weight, classes=targets.classes, y=labeled)

    def _class_counts(self, targets, partial):
        """Labelled documents per class: in ``y``, plus those of earlier ``partial_fit`` calls."""
        if targets.multilabel:
            return None
        counts = np.bincount(targets.encoded[targets.labeled], minlength=len(targets.classes))
        if partial and getattr(self, "_partial_class_counts", None) is not None:
            counts = counts + self._partial_class_counts
        return counts

    def _logit_offset(self, targets, counts):
        """``logit_adjustment * log(class frequency)`` for the loss, or None."""
        if self.logit_adjustment == 0 or targets.multilabel:
            return None
        if counts.sum() == 0:  # a partial_fit call of unlabeled documents only: no loss to adjust
            return None
        return self.logit_adjustment * np.log(np.maximum(counts, 1) / counts.sum())

    def _model_to_train(self, documents, n_classes, *, warm, pretrained):
        """Tokenizer, config, n-gram vectorizer and features, and the module this fit trains.

        With ``warm``, copies of the fitted ones; else new ones, the encoder
        from ``pretrained`` (see :meth:`_pretrained_encoder`) when given.
        """
        if warm:
            vectorizer = self.ngram_vectorizer_
            ngrams = None if vectorizer is None else NgramFeatures(transform_ngrams(vectorizer, documents))
            return self.tokenizer_, self.config_, vectorizer, ngrams, copy.deepcopy(self.model_)
        tokenizer, config, encoder = pretrained or self._new_encoder(documents)
        vectorizer, ngrams = self._fit_ngram_vectorizer(documents)
        return tokenizer, config, vectorizer, ngrams, _classifier_module(encoder, n_classes, vectorizer)

    def _fit_ngram_vectorizer(self, documents):
        """The fitted n-gram vectorizer and the features of ``documents``; Nones without."""
        if self.ngram_range is None:
            return None, None
        vectorizer, matrix = _distributed.from_main(
            lambda: fit_ngram_vectorizer(documents, ngram_range=self.ngram_range, lowercase=self.lowercase)
        )
        return vectorizer, NgramFeatures(matrix)

    def _build_module(self):
        return _classifier_module(TextEncoder(self.config_), len(self.classes_), self.ngram_vectorizer_)

    @staticmethod
    def _upgrade_weights(state_dict):
        return rename_legacy_weights(state_dict)


AttentionClassifier.__doc__ = (
    AttentionClassifier.__doc__.replace("%(shared_parameters)s", SHARED_PARAMETERS)
    .replace("%(training_attributes)s", TRAINING_ATTRIBUTES)
)


# Share of [UNK] tokens above which a given encoder's tokenizer is taken to come from other texts.
UNKNOWN_TOKEN_WARNING_SHARE = 0.1


def _warn_unused_unlabeled(n_unlabeled):
    """Say that documents labeled -1 pretrain no encoder, in case -1 was meant as a class."""
    warnings.warn(
        f"{n_unlabeled} documents are labeled -1, which marks an unlabeled document: they are left "
        f"out of the loss, and with no unfitted encoder to pretrain on them they serve at most the "
        f"tokenizer's and the n-gram path's vocabularies. If -1 is a class, map it to another value; "
        f"to learn from unlabeled documents, pass an unfitted encoder=AttentionEncoder().",
        UserWarning,
        stacklevel=4,
    )


def _warn_if_mostly_unknown(encoded):
    """Warn when a pretrained encoder's tokenizer reads many tokens of the training texts as [UNK]."""
    n_tokens = int(encoded.lengths.sum()) - 2 * len(encoded.lengths)  # [CLS] and [SEP] of each window
    n_unknown = sum(int(np.count_nonzero(np.asarray(window) == UNK_ID)) for window in encoded.windows)
    if n_tokens > 0 and n_unknown / n_tokens > UNKNOWN_TOKEN_WARNING_SHARE:
        warnings.warn(
            f"The encoder's tokenizer reads {n_unknown / n_tokens:.0%} of the tokens of these texts as "
            f"unknown ([UNK]): it was trained on other texts, so the encoder sees little of them. "
            f"Pass the encoder unfitted to pretrain it on X, or fit it on texts like these.",
            UserWarning,
            stacklevel=4,
        )


def _check_same_kind_of_target(targets, fitted_multilabel, continued):
    """A continued fit keeps the fitted model's outputs: one class per document, or a set of labels."""
    if targets.multilabel != fitted_multilabel:
        kinds = ("a label-indicator matrix (multilabel)", "one class per document")
        fitted, given = kinds if fitted_multilabel else kinds[::-1]
        raise ValueError(
            f"{continued} continues a model fitted with y as {fitted}; this y is {given}. "
            f"Fit a new model for the other kind of target."
        )


def _unfrozen(encoder):
    """The estimator inside a :class:`sklearn.frozen.FrozenEstimator`, else ``encoder``."""
    return encoder.estimator if isinstance(encoder, FrozenEstimator) else encoder


def _classifier_module(encoder, n_outputs, vectorizer):
    """The classifier's model: ``encoder`` with a linear head and, with ``vectorizer``, an n-gram path."""
    module = SequenceClassifier(encoder, n_outputs)
    # Built after the head, so that weight initialisation draws in a fixed order.
    if vectorizer is not None:
        module.wide = NgramPath(len(vectorizer.vocabulary_), n_outputs)
    return module


def _document_weights(sample_weight, class_weight, encoded_targets, rows):
    """Each training document's loss weight: its sample weight times its class's; None if neither is given.

    Parameters
    ----------
    sample_weight : numpy.ndarray of shape (n_documents,) or None
    class_weight : numpy.ndarray of shape (n_classes,) or None
    encoded_targets : numpy.ndarray of shape (n_documents,)
        Class indices (never a label-indicator matrix: class weights are
        refused with multilabel ``y``).
    rows : numpy.ndarray of int
        The labeled documents, which are the ones trained on.

    Returns
    -------
    weights : numpy.ndarray of float32 of shape (len(rows),) or None
    """
    if (sample_weight is None and class_weight is None) or len(rows) == 0:
        return None
    weights = np.ones(len(rows), dtype=np.float32) if sample_weight is None else sample_weight[rows].astype(np.float32)
    if class_weight is not None:
        weights = weights * np.asarray(class_weight, dtype=np.float32)[encoded_targets[rows]]
    if not weights.any():
        raise ValueError(
            "sample_weight and class_weight together give every labeled training document a weight of zero."
        )
    return weights
