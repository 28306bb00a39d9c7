"""Pure PyTorch transformer encoder: configuration, blocks, pooling and heads.

This module imports neither scikit-learn nor tokenizers. Padding positions are
the ones whose token id equals ``pad_id``.
"""

import copy
import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
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
    # Configs saved before this field existed were GELU models.
    activation: str = "gelu"
    pad_id: int = 0

    def to_dict(self):
        return asdict(self)


# Unsigned NumPy integer type of each itemsize, to build a dropout multiplier
# bit by bit in the dtype of the tensor it scales.
_BITS = {2: (torch.int16, np.uint16), 4: (torch.int32, np.uint32), 8: (torch.int64, np.uint64)}


class Dropout(nn.Module):
    """Inverted dropout whose masks on the CPU come from NumPy's PCG64 generator.

    PyTorch's CPU ``bernoulli_`` draws from one sequential Mersenne Twister
    and was about a sixth of a bfloat16 training step (``benchmarks/levers.py``).
    Here each call seeds a fresh NumPy generator with one draw from torch's
    global generator, so ``torch.manual_seed`` (and a checkpoint's saved
    torch state) still decides every mask, cuts PCG64's raw 64-bit outputs
    into 16-bit draws, and builds the multiplier (0 or ``1 / (1 - p)``) in
    NumPy directly as the bit pattern of the input's dtype: one pass, no
    float conversion. The drop probability is ``p`` rounded to a multiple of
    2**-16. Other devices and dtypes, and code traced by ``torch.compile``,
    use :func:`torch.nn.functional.dropout`.

    Parameters
    ----------
    p : float
        Probability of zeroing an element.
    """

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if (
            not self.training
            or self.p == 0
            or x.device.type != "cpu"
            or not x.is_floating_point()
            or x.element_size() not in _BITS
            or torch.compiler.is_compiling()
        ):
            return F.dropout(x, self.p, self.training)
        signed, unsigned = _BITS[x.element_size()]
        seed = int(torch.randint(0, 2**62, ()))
        n = x.numel()
        draws = np.random.default_rng(seed).bit_generator.random_raw(-(-n // 4)).view(np.uint16)[:n]
        keep = draws.reshape(x.shape) >= round(self.p * 2**16)  # P(keep) = 1 - p
        scale_bits = torch.tensor(1.0 / (1.0 - self.p), dtype=x.dtype).view(signed).item()
        scale_bits %= 2 ** (8 * x.element_size())  # as unsigned
        multiplier = np.multiply(keep, unsigned(scale_bits), dtype=unsigned)
        return x * torch.from_numpy(multiplier).view(x.dtype)

    def extra_repr(self):
        return f"p={self.p}"


class SelfAttention(nn.Module):
    """Multi-head scaled-dot-product self-attention with a key-padding mask."""

    def __init__(self, config):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.dropout = Dropout(config.dropout)

    def forward(self, x, attend, residual=None):
        """Attention output ``(batch, seq, d_model)``, plus ``residual`` when given."""
        batch, seq, d_model = x.shape
        head_dim = d_model // self.n_heads
        q, k, v = self.qkv(x).split(d_model, dim=2)  # 3 x (batch, seq, d_model)
        q = q.view(batch, seq, self.n_heads, head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)
        k = k.view(batch, seq, self.n_heads, head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)
        v = v.view(batch, seq, self.n_heads, head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)
        # No dropout on attention weights: it would force the unfused kernel.
        if torch.is_grad_enabled() and (q.device.type != "cpu" or q.dtype == torch.bfloat16):
            y = _unfused_attention(q, k, v, attend)  # (batch, heads, seq, head_dim)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # (batch, heads, seq, head_dim)
        y = y.transpose(1, 2).reshape(batch, seq, d_model)  # (batch, seq, d_model)
        return _project(self.out, self.dropout, y, residual)


def _unfused_attention(q, k, v, attend):
    """Scaled-dot-product attention as two batched matmuls and a softmax.

    Used for training everywhere but in float32 on the CPU. On the CPU,
    PyTorch's fused attention has a slow bfloat16 backward. On CUDA, the
    fused kernel PyTorch picks for a masked bfloat16 attention on recent
    GPUs (cuDNN's) can return NaN gradients for the queries of a padded
    width of 64 modulo 128 once a row's scores are all very negative, as a
    padding query's may become late in training (PyTorch issue 196678);
    a default fit on short texts then stopped with a NaN gradient norm.
    These three ops have no such edge: the softmax subtracts each row's
    maximum, and masked keys get a finite bias. The mask is added in place as
    a bias of 0 or the dtype's lowest finite value: no copy of the scores,
    nothing to mask in the backward pass (softmax already gives masked keys
    zero gradient), and a fully masked row gets uniform weights, not NaN.

    Parameters
    ----------
    q, k, v : torch.Tensor of shape (batch, heads, seq, head_dim)
    attend : torch.Tensor of bool, broadcastable to (batch, heads, seq, seq)

    Returns
    -------
    y : torch.Tensor of shape (batch, heads, seq, head_dim)
    """
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (batch, heads, seq, seq)
    scores += torch.zeros((), dtype=scores.dtype, device=scores.device).masked_fill(~attend, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) @ v


class FeedForward(nn.Module):
    """Position-wise two-layer perceptron with a ReLU or an exact GELU."""

    def __init__(self, config):
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.activation = activation_module(config.activation)
        self.down = nn.Linear(config.d_ff, config.d_model)
        self.dropout = Dropout(config.dropout)

    def forward(self, x, residual=None):
        """Output ``(batch, seq, d_model)``, plus ``residual`` when given."""
        return _project(self.down, self.dropout, self.activation(self.up(x)), residual)


def activation_module(name):
    """The activation ``name`` (one of ``ACTIVATIONS``) as a module."""
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"Unknown activation {name!r}; expected one of {ACTIVATIONS}.")


def _project(linear, dropout, x, residual):
    """``dropout(linear(x))``, plus ``residual`` unless it is None.

    A :class:`OneDNNLinear` (inference replicas, where dropout is off) adds
    the residual inside its matmul kernel.
    """
    if isinstance(linear, OneDNNLinear):
        return linear(x, residual)
    y = dropout(linear(x))
    return y if residual is None else residual + y


class Block(nn.Module):
    """Pre-LayerNorm transformer block: attention then feed-forward, each residual."""

    def __init__(self, config):
        super().__init__()
        self.norm_attention = nn.LayerNorm(config.d_model)
        self.attention = SelfAttention(config)
        self.norm_ff = nn.LayerNorm(config.d_model)
        self.ff = FeedForward(config)

    def forward(self, x, attend):
        x = self.attention(self.norm_attention(x), attend, residual=x)  # (batch, seq, d_model)
        return self.ff(self.norm_ff(x), residual=x)  # (batch, seq, d_model)


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
        self.dropout = Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.apply(_init_weights)
        # Scaled residual projections keep the residual stream's variance flat
        # with depth (GPT-2).
        for name, parameter in self.named_parameters():
            if name.endswith(("attention.out.weight", "ff.down.weight")):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.n_layers))

    def forward(self, ids):
        """Return token states ``(batch, seq, d_model)`` and the non-padding mask."""
        keep = ids != self.config.pad_id  # (batch, seq)
        positions = torch.arange(ids.shape[1], device=ids.device)  # (seq,)
        x = self.token_embedding(ids) + self.position_embedding(positions)  # (batch, seq, d_model)
        x = self.dropout(x)
        attend = keep[:, None, None, :]  # (batch, 1, 1, seq) broadcast over heads and queries
        for block in self.blocks:
            x = block(x, attend)  # (batch, seq, d_model)
        # The final norm may be kept in float32 in a bfloat16 replica.
        return self.norm(x.to(self.norm.weight.dtype)), keep

    def embed(self, ids, owner=None, n_documents=None):
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

        Returns
        -------
        embedding : torch.Tensor of shape (n_documents, d_model)
        """
        hidden, keep = self(ids)
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


class SequenceClassifier(nn.Module):
    """A :class:`TextEncoder` with a linear head over the pooled vector.

    With ``n_ngrams > 0`` a second, linear path scores the document from its
    TF-IDF-weighted word n-grams (an ``nn.EmbeddingBag`` of one weight per
    n-gram and output). Each path is trained on its own loss
    (:meth:`path_logits`) and the model's logits are
    ``encoder_scale * encoder_logits + ngram_logits``: a product of the two
    paths' probabilities, the encoder's tempered, renormalised.

    Parameters
    ----------
    encoder : TextEncoder
    n_outputs : int
    n_ngrams : int, default=0
        Number of n-gram features; 0 for no n-gram path.
    encoder_scale : float, default=1.0
        Factor on the encoder's logits in the sum; kept in the state dict
        (buffer ``encoder_scale``). Unused without an n-gram path.
    """

    def __init__(self, encoder, n_outputs, n_ngrams=0, encoder_scale=1.0):
        super().__init__()
        self.encoder = encoder
        self.dropout = Dropout(encoder.config.dropout)
        self.head = nn.Linear(encoder.config.d_model, n_outputs)
        _init_weights(self.head)
        self.ngrams = None
        if n_ngrams:
            self.ngrams = nn.EmbeddingBag(n_ngrams, n_outputs, mode="sum")
            nn.init.zeros_(self.ngrams.weight)
        self.register_buffer("encoder_scale", torch.tensor(float(encoder_scale)))

    def forward(self, ids, owner=None, n_documents=None, ngrams=None):
        """Logits ``(n_documents, n_outputs)``; arguments as in :meth:`path_logits`."""
        logits = self.path_logits(ids, owner, n_documents, ngrams)
        if len(logits) == 1:
            return logits[0]
        return self.encoder_scale.to(logits[0].dtype) * logits[0] + logits[1]

    def path_logits(self, ids, owner=None, n_documents=None, ngrams=None):
        """Logits of each path: the encoder's, then the n-grams' if there are any.

        Parameters
        ----------
        ids, owner, n_documents
            As in :meth:`TextEncoder.embed`.
        ngrams : tuple of torch.Tensor, default=None
            ``(indices, offsets, weights)`` of the documents' n-gram features
            (see :func:`skattn._ngrams.ngram_tensors`); required when the
            model has an n-gram path.

        Returns
        -------
        logits : list of torch.Tensor of shape (n_documents, n_outputs)
        """
        pooled = self.encoder.embed(ids, owner, n_documents)  # (n_documents, d_model)
        logits = [self.head(self.dropout(pooled.to(self.head.weight.dtype)))]
        if self.ngrams is not None:
            if ngrams is None:
                raise ValueError("This model has an n-gram path: pass the documents' ngrams.")
            indices, offsets, weights = ngrams
            logits.append(self.ngrams(indices, offsets, per_sample_weights=weights.to(self.ngrams.weight.dtype)))
        return logits


class MaskedLanguageModel(nn.Module):
    """A :class:`TextEncoder` with a prediction head tied to its token embeddings."""

    def __init__(self, encoder):
        super().__init__()
        d_model = encoder.config.d_model
        self.encoder = encoder
        self.transform = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.bias = nn.Parameter(torch.zeros(encoder.config.vocab_size))
        _init_weights(self.transform)

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


class OneDNNLinear(nn.Module):
    """An inference-only linear layer, optionally followed by an activation, in one oneDNN call.

    PyTorch's CPU ``addmm`` first copies the bias into every row of its
    output and then accumulates the product; oneDNN adds the bias, and
    applies the activation or adds a residual, inside the matmul kernel, and
    reads a weight packed once into its preferred blocked layout. In a
    bfloat16 replica this made ``predict`` about 15% faster
    (``benchmarks/levers.py``). The op has no backward: use it only under
    ``torch.inference_mode``.

    Parameters
    ----------
    linear : torch.nn.Linear
        Its weight is packed into a new (opaque oneDNN) tensor; its bias is
        shared.
    activation : {"relu", "gelu"}, default=None
        Apply the ReLU or the exact GELU to the output; None for none.
    """

    _POST_OPS = {None: ("none", ""), "relu": ("relu", ""), "gelu": ("gelu", "none")}

    def __init__(self, linear, activation=None):
        super().__init__()
        if activation not in self._POST_OPS:
            raise ValueError(f"Unknown activation {activation!r}; expected None or one of {ACTIVATIONS}.")
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.bias = linear.bias
        self.post_op, self.algorithm = self._POST_OPS[activation]

    def forward(self, x, residual=None):
        """``linear(x)``, then the activation if any, plus ``residual`` when given."""
        if residual is None:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.post_op, [], self.algorithm)
        if self.post_op != "none":
            raise ValueError("A residual can only be added to a linear layer without activation.")
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, self.weight, self.bias, "add")

    def extra_repr(self):
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, post_op={self.post_op}"


@functools.cache
def onednn_linear_works():
    """Whether this PyTorch build runs :class:`OneDNNLinear` in bfloat16 correctly.

    The op is internal to PyTorch (TorchInductor's CPU backend emits it), so
    its presence and its result are checked once against ``F.linear``.
    """
    try:
        generator = torch.Generator().manual_seed(0)
        linear = nn.Linear(16, 8).to(torch.bfloat16)
        x = torch.randn(2, 3, 16, generator=generator).to(torch.bfloat16)
        with torch.inference_mode():
            pairs = [(OneDNNLinear(linear, name)(x), activation_module(name)(linear(x))) for name in ACTIVATIONS]
            plain = pairs[0][1]
            pairs.append((OneDNNLinear(linear)(x, residual=plain), linear(x) + plain))
        return all(
            mine.shape == theirs.shape and torch.allclose(mine.float(), theirs.float(), atol=0.05, rtol=0.05)
            for mine, theirs in pairs
        )
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def inference_replica(module, dtype, fuse_linear=False):
    """A copy of ``module`` for inference with its blocks stored in ``dtype``.

    Casting weights once is faster than autocasting them at every call. The
    embeddings feeding the blocks follow; the final LayerNorm, the pooling,
    a classification head and an n-gram path stay in float32, so outputs
    keep float32 precision.

    Parameters
    ----------
    module : TextEncoder, SequenceClassifier or MaskedLanguageModel
    dtype : torch.dtype
    fuse_linear : bool, default=False
        Run the blocks' linear layers as :class:`OneDNNLinear`, the
        feed-forward activation fused into the first; for CPU replicas, where
        :func:`onednn_linear_works`.
    """
    replica = copy.deepcopy(module).to(dtype).eval()
    encoder = replica.encoder if hasattr(replica, "encoder") else replica
    encoder.norm.float()
    for name in ("head", "ngrams"):
        if getattr(replica, name, None) is not None:
            getattr(replica, name).float()
    if fuse_linear:
        for block in encoder.blocks:
            block.attention.qkv = OneDNNLinear(block.attention.qkv)
            block.attention.out = OneDNNLinear(block.attention.out)
            block.ff.up = OneDNNLinear(block.ff.up, encoder.config.activation)
            block.ff.activation = nn.Identity()
            block.ff.down = OneDNNLinear(block.ff.down)
    return replica


def _init_weights(module):
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
