"""Heads over a :class:`~skattn._model.TextEncoder`, each with its loss and parameter groups.

A head module is what the training loop trains: it is called on a batch's
inputs, its ``loss`` function turns a batch into a scalar, and its
``parameter_groups`` tell AdamW how to treat each parameter.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._model import init_weights


def decay_groups(module, learning_rate, weight_decay, skip=()):
    """AdamW groups of ``module``'s trainable parameters: weight decay on matrices only.

    Biases, LayerNorms and embeddings get no weight decay. Parameters of the
    submodules in ``skip`` are left out (they bring their own groups).
    """
    skipped = {id(p) for part in skip for p in part.parameters()}
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad or id(parameter) in skipped:
            continue
        is_matrix = parameter.dim() >= 2 and "embedding" not in name
        (decay if is_matrix else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay, "lr": learning_rate},
        {"params": no_decay, "weight_decay": 0.0, "lr": learning_rate},
    ]


class SequenceClassifier(nn.Module):
    """A :class:`TextEncoder` with a linear head over the pooled vector, and an optional wide path.

    With ``wide`` (a module mapping a batch's side features to logits, with
    its own ``parameter_groups``; ``_ngrams.py``), the model's logits are
    ``encoder_scale * encoder_logits + wide_logits``: a product of the two
    paths' probabilities, the encoder's tempered, renormalised. Each path is
    trained on its own loss (:meth:`path_logits`).

    Parameters
    ----------
    encoder : TextEncoder
    n_outputs : int
    wide : torch.nn.Module, default=None
    encoder_scale : float, default=1.0
        Factor on the encoder's logits in the sum; kept in the state dict
        (buffer ``encoder_scale``). Unused without a wide path.
    """

    def __init__(self, encoder, n_outputs, wide=None, encoder_scale=1.0):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(encoder.config.dropout)
        self.head = nn.Linear(encoder.config.d_model, n_outputs)
        init_weights(self.head)
        self.wide = wide
        self.register_buffer("encoder_scale", torch.tensor(float(encoder_scale)))

    def forward(self, ids, owner=None, n_documents=None, features=None):
        """Logits ``(n_documents, n_outputs)``; arguments as in :meth:`path_logits`."""
        logits = self.path_logits(ids, owner, n_documents, features)
        if len(logits) == 1:
            return logits[0]
        return self.encoder_scale.to(logits[0].dtype) * logits[0] + logits[1]

    def path_logits(self, ids, owner=None, n_documents=None, features=None):
        """Logits of each path: the encoder's, then the wide path's if there is one.

        Parameters
        ----------
        ids, owner, n_documents
            As in :meth:`TextEncoder.embed`.
        features : object, default=None
            The documents' side features in the form the wide path reads;
            required when the model has a wide path.

        Returns
        -------
        logits : list of torch.Tensor of shape (n_documents, n_outputs)
        """
        pooled = self.encoder.embed(ids, owner, n_documents)  # (n_documents, d_model)
        logits = [self.head(self.dropout(pooled.to(self.head.weight.dtype)))]
        if self.wide is not None:
            if features is None:
                raise ValueError("This model has a wide path: pass the documents' features.")
            logits.append(self.wide(features))
        return logits

    def parameter_groups(self, learning_rate, weight_decay):
        """AdamW groups: the encoder's and head's by :func:`decay_groups`, then the wide path's."""
        if self.wide is None:
            return decay_groups(self, learning_rate, weight_decay)
        return decay_groups(self, learning_rate, weight_decay, skip=[self.wide]) + self.wide.parameter_groups(learning_rate)


def classification_loss(multilabel=False, logit_offset=None):
    """Return the training loss of a :class:`SequenceClassifier`: ``loss(module, batch, rng)``.

    The sum of each path's cross-entropy (one sigmoid per label if
    ``multilabel``), each document's scaled by its weight in the batch when
    the training data has weights (see :func:`weighted_mean`; class weights
    are folded into them by the estimator). ``logit_offset`` (shape
    ``(n_classes,)``) is added to the logits inside the loss only: with
    ``tau * log(class prior)`` it is the logit-adjusted loss of Menon et al.
    (2021), which trains the model's own logits for the class-balanced error.
    """
    constants = {"logit_offset": logit_offset}
    cache = {}

    def constant(name, device):
        """``constants[name]`` as a float32 tensor on ``device``, made once."""
        if (name, device) not in cache:
            cache[name, device] = torch.as_tensor(constants[name], dtype=torch.float32, device=device)
        return cache[name, device]

    def loss_fn(module, batch, rng):
        return sum(path_loss(logits.float(), batch) for logits in module.path_logits(**batch.inputs()))

    def path_loss(logits, batch):  # logits: (batch, n_outputs)
        if logit_offset is not None:
            logits = logits + constant("logit_offset", logits.device)
        if multilabel:
            per_sample = F.binary_cross_entropy_with_logits(logits, batch.targets, reduction="none").mean(dim=1)
            return weighted_mean(per_sample, batch.weights)
        per_sample = F.cross_entropy(logits, batch.targets, reduction="none")
        return weighted_mean(per_sample, batch.weights)

    return loss_fn


def weighted_mean(values, weights):
    """Mean of ``values``, each scaled by its weight when ``weights`` is given.

    The training loop scales the weights to a mean of 1 over the training
    data (``partial_fit``: over its first call's), so the division is by the
    number of values, not by their weights' sum: a batch of heavy documents
    then counts for more than a batch of light ones. Batches group documents
    of similar length, so where the weights follow the length, dividing each
    batch by its own weights would cancel them.
    """
    if weights is None:
        return values.mean()
    return (values * weights).mean()


class MaskedLanguageModel(nn.Module):
    """A :class:`TextEncoder` with a prediction head tied to its token embeddings."""

    def __init__(self, encoder):
        super().__init__()
        d_model = encoder.config.d_model
        self.encoder = encoder
        self.transform = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.bias = nn.Parameter(torch.zeros(encoder.config.vocab_size))
        init_weights(self.transform)

    def forward(self, ids, positions):
        """Return vocabulary logits at the selected positions only.

        Parameters
        ----------
        ids : torch.Tensor of shape (batch, seq)
        positions : torch.Tensor of int64, shape (n_selected,)
            Flat indices (``row * seq + column``) of the positions to
            predict; computing logits only there saves most of the vocabulary
            projection.

        Returns
        -------
        logits : torch.Tensor of shape (n_selected, vocab_size)
        """
        hidden, _ = self.encoder(ids)
        selected = hidden.flatten(0, 1)[positions]  # (n_selected, d_model)
        # BERT's prediction head; the ``activation`` option covers the blocks only.
        selected = self.norm(F.gelu(self.transform(selected)))
        return F.linear(selected, self.encoder.token_embedding.weight, self.bias)

    def parameter_groups(self, learning_rate, weight_decay):
        return decay_groups(self, learning_rate, weight_decay)


def masked_language_model_loss(mlm_probability, vocab_size, *, n_special, mask_id, selected_multiple=1):
    """Return the loss of a :class:`MaskedLanguageModel`, masking anew in each batch (BERT's 80/10/10).

    Parameters
    ----------
    mlm_probability : float
        Probability that a non-special token is selected for prediction.
    vocab_size : int
    n_special : int
        Ids below this are special tokens: never selected, never drawn as
        random replacements.
    mask_id : int
    selected_multiple : int, default=1
        The number of selected positions is padded up to a multiple of this
        (with position 0, whose logits are dropped), so that the prediction
        head sees few distinct matrix shapes.
    """

    def loss_fn(module, batch, rng):
        ids = batch.ids
        # Drawn with NumPy so that masks do not depend on the device.
        draws = rng.random((3, *ids.shape), dtype=np.float32)
        select_draw, action_draw, token_draw = torch.from_numpy(draws).to(ids.device)
        selected = (ids >= n_special) & (select_draw < mlm_probability)  # (batch, seq)
        inputs = ids.masked_fill(selected & (action_draw < 0.8), mask_id)
        randomize = selected & (action_draw >= 0.8) & (action_draw < 0.9)
        random_ids = n_special + (token_draw * (vocab_size - n_special)).long()
        inputs = torch.where(randomize, random_ids.clamp(max=vocab_size - 1), inputs)
        flat = selected.flatten().nonzero().squeeze(1)  # (n_selected,)
        n_selected = len(flat)
        padding = -n_selected % selected_multiple
        logits = module(inputs, torch.cat([flat, flat.new_zeros(padding)]))  # (n_selected + padding, vocab_size)
        if n_selected == 0:
            return logits.sum() * 0.0
        targets = ids.flatten()[flat]  # (n_selected,)
        per_token = F.cross_entropy(logits[:n_selected].float(), targets, reduction="none")
        token_weights = None
        if batch.weights is not None:
            token_weights = batch.weights.unsqueeze(1).expand_as(ids).flatten()[flat]  # (n_selected,)
        return weighted_mean(per_token, token_weights)

    return loss_fn
