"""The transformer encoder in plain PyTorch: config, attention, feed-forward, block, encoder, pooling.

This module imports neither scikit-learn nor tokenizers. Padding positions are
the ones whose token id equals ``pad_id``. CPU speed-ups live in ``_fast.py``,
which swaps parts of a model built here; heads and their losses in ``_heads.py``.
"""

import math
import operator
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

POOLINGS = ("mean", "cls", "max")
ACTIVATIONS = ("relu", "gelu")


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a :class:`TextEncoder`.

    Field names match the estimators' constructor parameters; ``vocab_size``
    is the trained tokenizer's actual size, ``max_length`` the number of
    learned positions.
    """

    vocab_size: int
    max_length: int
    d_model: int
    n_heads: int
    n_layers: int
    d_ff: int
    dropout: float
    pooling: str
    activation: str = "gelu"  # the default of a config unpickled without the field
    pad_id: int = 0

    def __post_init__(self):
        # Plain Python values, whatever the estimator was given (NumPy integers from a
        # search's grid, NumPy strings), so that the config is written as JSON as it is.
        for name, value in self.to_dict().items():
            object.__setattr__(self, name, value)

    def to_dict(self):
        """The fields as plain Python values (also for configs unpickled from before they were made plain)."""
        plain = {"dropout": float, "pooling": str, "activation": str}
        return {name: plain.get(name, operator.index)(value) for name, value in asdict(self).items()}


def attention(q, k, v, attend):
    """Scaled-dot-product attention with a key-padding mask, as the model runs it.

    Parameters
    ----------
    q, k, v : torch.Tensor of shape (batch, heads, seq, head_dim)
    attend : torch.Tensor of bool, broadcastable to (batch, heads, seq, seq)
        False at the keys to ignore.

    Returns
    -------
    y : torch.Tensor of shape (batch, heads, seq, head_dim)
    """
    if torch.is_grad_enabled() and q.device.type == "cuda":
        # The fused kernel PyTorch picks for a masked bfloat16 attention on
        # recent GPUs (cuDNN's) can return NaN query gradients at padded widths
        # of 64 modulo 128 once a row's scores are all very negative, as a
        # padding query's may become late in training (PyTorch issue 196678).
        return explicit_attention(q, k, v, attend)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attend)


def explicit_attention(q, k, v, attend):
    """Attention as two batched matmuls and a softmax, arguments as in :func:`attention`.

    The mask is added in place as a bias of 0 or the dtype's lowest finite
    value: no copy of the scores, nothing to mask in the backward pass
    (softmax already gives masked keys zero gradient), and a fully masked
    row gets uniform weights, not NaN. The softmax subtracts each row's
    maximum, so no row overflows however negative its scores.
    """
    scores = attention_scores(q, k)  # (batch, heads, seq, seq)
    bias = torch.zeros((), dtype=scores.dtype, device=scores.device)
    scores += bias.masked_fill(~attend, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) @ v  # (batch, heads, seq, head_dim)


def attention_scores(q, k):
    """Scaled dot products of queries and keys, ``(batch, heads, seq, seq)``."""
    return (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)


def attention_weights(q, k, attend):
    """The softmax weights of :func:`explicit_attention`, shape ``(batch, heads, seq, seq)``."""
    scores = attention_scores(q, k).masked_fill(~attend, torch.finfo(q.dtype).min)
    return torch.softmax(scores, dim=-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``kernel`` computes the attention proper.

    ``kernel`` is :func:`attention` unless ``_fast.py`` swapped it for a
    faster one with the same arguments.
    """

    def __init__(self, config):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.kernel = attention

    def forward(self, x, attend, record=None):
        """Attend over ``x``; with a list ``record``, also append the attention weights to it.

        The weights, ``(batch, heads, seq, seq)`` with rows summing to 1 over
        the attended keys, are computed explicitly when asked for (no fused
        kernel returns them): for inspection, not for training.
        """
        q, k, v = split_heads(self.qkv(x), self.n_heads)  # 3 x (batch, heads, seq, head_dim)
        if record is None:
            # No dropout on attention weights: it would force the unfused kernel.
            y = self.kernel(q, k, v, attend)
        else:
            weights = attention_weights(q, k, attend)  # (batch, heads, seq, seq)
            record.append(weights)
            y = weights @ v
        return self.dropout(self.out(merge_heads(y)))  # (batch, seq, d_model)


def split_heads(qkv, n_heads):
    """Queries, keys and values ``(batch, heads, seq, head_dim)`` from ``(batch, seq, 3 * d_model)``."""
    batch, seq, width = qkv.shape
    head_dim = width // (3 * n_heads)
    return (t.view(batch, seq, n_heads, head_dim).transpose(1, 2) for t in qkv.split(width // 3, dim=2))


def merge_heads(y):
    """``(batch, seq, d_model)`` from per-head outputs ``(batch, heads, seq, head_dim)``."""
    batch, heads, seq, head_dim = y.shape
    return y.transpose(1, 2).reshape(batch, seq, heads * head_dim)


class FeedForward(nn.Module):
    """Position-wise two-layer perceptron with a ReLU or an exact GELU."""

    def __init__(self, config):
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.activation = activation_module(config.activation)
        self.down = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.down(self.activation(self.up(x))))


def activation_module(name):
    """The activation ``name`` (one of ``ACTIVATIONS``) as a module."""
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"Unknown activation {name!r}; expected one of {ACTIVATIONS}.")


class Block(nn.Module):
    """Pre-LayerNorm transformer block: attention then feed-forward, each residual."""

    def __init__(self, config):
        super().__init__()
        self.norm_attention = nn.LayerNorm(config.d_model)
        self.attention = SelfAttention(config)
        self.norm_ff = nn.LayerNorm(config.d_model)
        self.ff = FeedForward(config)

    def forward(self, x, attend, record=None):
        """``record``: see :meth:`SelfAttention.forward`."""
        x = x + self.attention(self.norm_attention(x), attend, record)  # (batch, seq, d_model)
        return x + self.ff(self.norm_ff(x))  # (batch, seq, d_model)


def pool(hidden, keep, method):
    """Pool token states into one vector per sequence, ignoring padding.

    Parameters
    ----------
    hidden : torch.Tensor of shape (batch, seq, d_model)
    keep : torch.Tensor of bool, shape (batch, seq)
        True at real (non-padding) tokens.
    method : {"mean", "cls", "max"}

    Returns
    -------
    pooled : torch.Tensor of shape (batch, d_model)
    """
    if method == "cls":
        return hidden[:, 0]
    if method == "max":
        return hidden.masked_fill(~keep.unsqueeze(-1), float("-inf")).amax(dim=1)
    if method == "mean":
        weights = keep.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
    raise ValueError(f"Unknown pooling {method!r}; expected one of {POOLINGS}.")


class TextEncoder(nn.Module):
    """Token and position embeddings, transformer blocks and a final LayerNorm."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.max_length, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.apply(init_weights)
        # Scaled residual projections keep the residual stream's variance flat
        # with depth (GPT-2).
        for name, parameter in self.named_parameters():
            if name.endswith(("attention.out.weight", "ff.down.weight")):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.n_layers))

    def forward(self, ids, embeddings=None, record=None):
        """Return token states ``(batch, seq, d_model)`` and the non-padding mask.

        Parameters
        ----------
        ids : torch.Tensor of shape (batch, seq)
        embeddings : torch.Tensor of shape (batch, seq, d_model), default=None
            The input embeddings to use instead of :meth:`input_embeddings`
            of ``ids`` (which still give the padding mask): a tensor that
            requires grad gives gradients with respect to the inputs.
        record : list, default=None
            If given, each block appends its attention weights to it (see
            :meth:`SelfAttention.forward`).
        """
        keep = ids != self.config.pad_id  # (batch, seq)
        x = self.input_embeddings(ids) if embeddings is None else embeddings  # (batch, seq, d_model)
        x = self.dropout(x)
        attend = keep[:, None, None, :]  # (batch, 1, 1, seq) broadcast over heads and queries
        for block in self.blocks:
            x = block(x, attend) if record is None else block(x, attend, record)  # (batch, seq, d_model)
        # The final norm may be kept in float32 when the blocks run in bfloat16.
        return self.norm(x.to(self.norm.weight.dtype)), keep

    def input_embeddings(self, ids):
        """Token plus position embeddings ``(batch, seq, d_model)``, what the first block reads."""
        positions = torch.arange(ids.shape[1], device=ids.device)  # (seq,)
        return self.token_embedding(ids) + self.position_embedding(positions)

    def embed(self, ids, owner=None, n_documents=None, embeddings=None, record=None):
        """Return one pooled vector per document.

        Parameters
        ----------
        ids : torch.Tensor of shape (n_windows, seq)
        owner : torch.Tensor of shape (n_windows,), default=None
            Document of each window, for documents split into several
            windows; their pooled vectors are pooled again into one per
            document, by maximum with ``pooling="max"``, else by mean. None
            when each window is a document.
        n_documents : int, default=None
            Number of documents, when ``owner`` is given.
        embeddings, record
            As in :meth:`forward`.

        Returns
        -------
        embedding : torch.Tensor of shape (n_documents, d_model)
        """
        hidden, keep = self(ids, embeddings, record)
        pooled = pool(hidden, keep, self.config.pooling)  # (n_windows, d_model)
        if owner is None or n_documents == ids.shape[0]:
            return pooled
        count = torch.bincount(owner, minlength=n_documents)  # (n_documents,)
        if self.config.pooling == "max":
            # Windows of a document are contiguous: lay them out on a grid.
            first = torch.cumsum(count, 0) - count  # (n_documents,)
            slot = torch.arange(len(owner), device=owner.device) - first[owner]  # (n_windows,)
            grid = pooled.new_full((n_documents, int(count.max()), pooled.shape[1]), float("-inf"))
            grid = grid.index_put((owner, slot), pooled)  # (n_documents, max_windows, d_model)
            return grid.amax(dim=1)
        total = pooled.new_zeros(n_documents, pooled.shape[1]).index_add(0, owner, pooled)
        return total / count.clamp(min=1).unsqueeze(1).to(total.dtype)  # (n_documents, d_model)


def init_weights(module):
    """BERT's initialisation: normal(0, 0.02) weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
