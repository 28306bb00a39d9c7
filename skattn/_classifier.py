"""AttentionClassifier: a scikit-learn classifier over a transformer encoder."""

import copy

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._base import _AttentionBase, classification_loss, resolve_device, seeded_torch
from ._docs import SHARED_PARAMETERS
from ._encoder import AttentionEncoder
from ._model import SequenceClassifier, TextEncoder
from ._text import check_documents, encode

UNLABELED = -1


class AttentionClassifier(ClassifierMixin, _AttentionBase):
    """Text classifier built on a transformer encoder trained from scratch.

    ``fit`` trains a subword tokenizer on the training texts, then a
    transformer encoder with a linear head on the labels. With
    ``encoder=AttentionEncoder(...)`` the encoder is first pretrained by masked
    language modelling on all training texts, unlabeled ones included, and
    then fine-tuned.

    Parameters
    ----------
%(shared_parameters)s
    encoder : AttentionEncoder or None, default=None
        Encoder to fine-tune. If None, a new encoder is built from this
        estimator's parameters and trained on the labels only. If unfitted,
        a clone of it is pretrained on ``X`` (all rows, unlabeled ones
        included) before fine-tuning. If fitted, a copy of it is fine-tuned
        and the original is left unchanged. Either way the encoder's own
        parameters decide the tokenizer and architecture (``tokenizer``
        through ``pooling`` above are then ignored), and this estimator's
        parameters decide the fine-tuning.

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss. ``"balanced"`` weighs each class
        inversely to its frequency in ``y``; a dict maps labels to weights.

    Attributes
    ----------
    classes_ : numpy.ndarray of shape (n_classes,)
        Class labels, as given in ``y``.

    tokenizer_ : tokenizers.Tokenizer
        Subword tokenizer trained on the training texts.

    config_ : EncoderConfig
        Architecture of the encoder in ``model_``.

    model_ : SequenceClassifier
        The trained PyTorch model (encoder and head), in evaluation mode.

    loss_curve_ : list of float
        Mean training loss of each fine-tuning epoch.

    n_iter_ : int
        Number of fine-tuning epochs run.

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
    }

    def __init__(
        self,
        *,
        tokenizer="wordpiece",
        vocab_size=8000,
        lowercase=True,
        max_length=256,
        d_model=256,
        n_heads=4,
        n_layers=2,
        d_ff=1024,
        dropout=0.1,
        pooling="mean",
        batch_size=32,
        max_epochs=10,
        learning_rate=1e-3,
        weight_decay=0.01,
        warmup_fraction=0.1,
        device="auto",
        precision="auto",
        random_state=None,
        verbose=0,
        encoder=None,
        class_weight=None,
    ):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.lowercase = lowercase
        self.max_length = max_length
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.d_ff = d_ff
        self.dropout = dropout
        self.pooling = pooling
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose
        self.encoder = encoder
        self.class_weight = class_weight

    def fit(self, X, y):
        """Train the classifier on labelled texts.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            Training documents.
        y : array-like of shape (n_samples,)
            Class labels (str or int). With an integer ``y``, ``-1`` marks an
            unlabeled document: it is used to pretrain ``encoder`` and to
            train the tokenizer, not in the classification loss.

        Returns
        -------
        self : AttentionClassifier
            The fitted classifier.
        """
        self._check_params()
        if self.encoder is not None and not isinstance(self.encoder, AttentionEncoder):
            raise TypeError(
                f"encoder must be an AttentionEncoder or None, got "
                f"{type(self.encoder).__name__}."
            )
        documents = check_documents(X)
        y, labeled, classes = self._check_targets(y, len(documents))
        class_weight = self._class_weights(classes, y[labeled])
        rng, torch_seed = self._seeds()
        device = resolve_device(self.device)
        pretrained = self._pretrained_encoder(documents, torch_seed)
        with seeded_torch(torch_seed, device):
            if pretrained is None:
                tokenizer, config, encoder = self._new_encoder(documents)
            else:
                tokenizer, config, encoder = pretrained
            labeled_documents = [documents[i] for i in np.flatnonzero(labeled)]
            targets = np.searchsorted(classes, y[labeled]).astype(np.int64)
            module = SequenceClassifier(encoder, len(classes)).to(device)
            loss_curve = self._train(
                module,
                encode(tokenizer, labeled_documents),
                targets,
                classification_loss(class_weight),
                rng=rng,
                device=device,
                description="AttentionClassifier",
            )
        self.classes_ = classes
        self.tokenizer_ = tokenizer
        self.config_ = config
        self.model_ = module
        self.loss_curve_ = loss_curve
        self.n_iter_ = len(loss_curve)
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
            logit per class, in the order of ``classes_``.
        """
        check_is_fitted(self)
        logits = self._forward_all(X, self.model_, len(self.classes_))
        if len(self.classes_) == 2:
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
            Probabilities in the order of ``classes_``; rows sum to 1.
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
        logits = self._forward_all(X, self.model_, len(self.classes_)).astype(np.float64)
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
        y_pred : numpy.ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        check_is_fitted(self)
        logits = self._forward_all(X, self.model_, len(self.classes_))
        return self.classes_[logits.argmax(axis=1)]

    # -- fit helpers -----------------------------------------------------------

    def _check_targets(self, y, n_documents):
        """Return ``y`` as a 1-D array, the labeled-row mask and the classes."""
        if y is None:
            raise ValueError("AttentionClassifier requires y to be passed, but y is None.")
        y = column_or_1d(y, warn=True)
        if len(y) != n_documents:
            raise ValueError(
                f"X and y have inconsistent lengths: {n_documents} documents and "
                f"{len(y)} labels."
            )
        check_classification_targets(y)
        labeled = np.ones(len(y), dtype=bool)
        if type_of_target(y) in ("binary", "multiclass") and y.dtype.kind in "iu":
            labeled = y != UNLABELED
        classes = np.unique(y[labeled])
        if len(classes) < 2:
            found = "no labeled samples" if len(classes) == 0 else f"only {classes.tolist()[0]!r}"
            note = ""
            if not labeled.all():
                note = f" ({np.count_nonzero(~labeled)} samples are labeled -1, which marks unlabeled texts)"
            raise ValueError(f"AttentionClassifier needs at least 2 classes in y; got {found}{note}.")
        return y, labeled, classes

    def _class_weights(self, classes, y_labeled):
        if self.class_weight is None:
            return None
        return compute_class_weight(self.class_weight, classes=classes, y=y_labeled)

    def _pretrained_encoder(self, documents, torch_seed):
        """Tokenizer, config and a private copy of the encoder module to fine-tune.

        Returns None without ``encoder``. An unfitted ``encoder`` is cloned and
        pretrained on ``documents``; a fitted one is copied, never modified.
        """
        if self.encoder is None:
            return None
        try:
            check_is_fitted(self.encoder)
            encoder = self.encoder
        except NotFittedError:
            encoder = clone(self.encoder)
            if encoder.random_state is None:
                encoder.set_params(random_state=torch_seed)
            encoder.fit(documents)
        return encoder.tokenizer_, encoder.config_, copy.deepcopy(encoder.model_).cpu()

    def _build_module(self):
        return SequenceClassifier(TextEncoder(self.config_), len(self.classes_))


AttentionClassifier.__doc__ = AttentionClassifier.__doc__.replace(
    "%(shared_parameters)s", SHARED_PARAMETERS
)
