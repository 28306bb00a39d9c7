"""AttentionEncoder: a scikit-learn transformer that embeds texts."""

from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._base import _AttentionBase, classification_loss, resolve_device, seeded_torch
from ._docs import SHARED_PARAMETERS
from ._model import MaskedLanguageModel, SequenceClassifier, TextEncoder
from ._text import PAD_ID, SPECIAL_TOKENS, check_documents, encode


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

    loss_curve_ : list of float
        Mean training loss of each epoch.

    n_iter_ : int
        Number of epochs run.

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
        mlm_probability=0.15,
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
        self.mlm_probability = mlm_probability

    def fit(self, X, y=None):
        """Train the tokenizer and the encoder on texts.

        Parameters
        ----------
        X : list, tuple, numpy array or pandas Series of str
            Training documents.
        y : array-like of shape (n_samples,), default=None
            Without labels the encoder is pretrained by masked language
            modelling. With class labels it is trained to classify them
            through a temporary linear head, which is then discarded.

        Returns
        -------
        self : AttentionEncoder
            The fitted encoder.
        """
        self._check_params()
        documents = check_documents(X)
        if y is not None:
            y = column_or_1d(y, warn=True)
            if len(y) != len(documents):
                raise ValueError(
                    f"X and y have inconsistent lengths: {len(documents)} documents "
                    f"and {len(y)} labels."
                )
            check_classification_targets(y)
            classes, y = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                raise ValueError(
                    f"y must contain at least 2 classes to train on labels; got only "
                    f"{classes.tolist()[0]!r}. Call fit(X) without y to pretrain instead."
                )
        rng, torch_seed = self._seeds()
        device = resolve_device(self.device)
        with seeded_torch(torch_seed, device):
            tokenizer, config, encoder = self._new_encoder(documents)
            ids = encode(tokenizer, documents)
            if y is None:
                module = MaskedLanguageModel(encoder).to(device)
                loss_fn = masked_language_model_loss(self.mlm_probability, config.vocab_size)
                targets = None
                description = "AttentionEncoder pretraining"
            else:
                module = SequenceClassifier(encoder, len(classes)).to(device)
                loss_fn = classification_loss()
                targets = y.astype(np.int64)
                description = "AttentionEncoder supervised"
            loss_curve = self._train(
                module, ids, targets, loss_fn, rng=rng, device=device, description=description
            )
        self.tokenizer_ = tokenizer
        self.config_ = config
        self.model_ = encoder
        self.loss_curve_ = loss_curve
        self.n_iter_ = len(loss_curve)
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
        return self._forward_all(X, self.model_.embed, self.config_.d_model)

    @property
    def _n_features_out(self):
        return self.config_.d_model

    def _build_module(self):
        return TextEncoder(self.config_)


AttentionEncoder.__doc__ = AttentionEncoder.__doc__.replace("%(shared_parameters)s", SHARED_PARAMETERS)


def masked_language_model_loss(mlm_probability, vocab_size):
    """Return a ``loss_fn`` that masks tokens anew in each batch (BERT's 80/10/10).

    Parameters
    ----------
    mlm_probability : float
        Probability that a non-special token is selected for prediction.
    vocab_size : int
        Random replacements are drawn from the non-special tokens.
    """
    n_special = len(SPECIAL_TOKENS)
    mask_id = SPECIAL_TOKENS.index("[MASK]")

    def loss_fn(module, ids, targets, rng):
        # Drawn with NumPy so that masks do not depend on the device.
        draws = rng.random((3, *ids.shape), dtype=np.float32)
        select_draw, action_draw, token_draw = torch.from_numpy(draws).to(ids.device)
        selected = (ids >= n_special) & (select_draw < mlm_probability)  # (batch, seq)
        inputs = ids.masked_fill(selected & (action_draw < 0.8), mask_id)
        randomize = selected & (action_draw >= 0.8) & (action_draw < 0.9)
        random_ids = n_special + (token_draw * (vocab_size - n_special)).long()
        inputs = torch.where(randomize, random_ids.clamp(max=vocab_size - 1), inputs)
        logits = module(inputs, selected)  # (n_selected, vocab_size)
        n_tokens = int((ids != PAD_ID).sum())
        if logits.shape[0] == 0:
            return logits.sum() * 0.0, n_tokens
        return torch.nn.functional.cross_entropy(logits.float(), ids[selected]), n_tokens

    return loss_fn
