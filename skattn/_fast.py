"""CPU speed-ups, applied to a plain model from ``_model.py`` / ``_heads.py`` by one call each.

- :func:`speed_up_training`: dropout masks drawn with NumPy and, in bfloat16 on
  the CPU, attention as explicit matmuls (PyTorch's fused CPU attention has a
  slow bfloat16 backward);
- :func:`inference_replica`: a copy of a fitted model with its blocks in
  bfloat16 (or float32) and, where PyTorch's oneDNN linear op works, its
  linear layers on packed weights with the bias, activation and residual
  fused in;
- :func:`int8_replica`: a copy whose blocks' linear layers run on int8
  weights and dynamically quantized int8 inputs (``precision="int8"``, and
  ``"auto"`` where :func:`int8_pays`);
- :data:`PAD_MULTIPLE` and :data:`SELECTED_MULTIPLE`: matrix widths rounded so
  that oneDNN compiles few kernels;
- :func:`cpu_has_native_bf16`: whether ``precision="auto"`` picks bfloat16 on the CPU.

Everything here leans on PyTorch internals (``torch.ops.mkldnn``,
``torch.cpu._is_*_supported``), on PyTorch's eager quantization API
(deprecated by recent releases, so checked at run time) or on measurements of
one machine. Without this module skattn runs the plain model in float32 on
the CPU: only speed changes. Setting the environment variable ``SKATTN_FAST_PATHS=0`` before
importing skattn makes it behave as if this module were deleted.
"""

import copy
import functools
import os
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._model import ACTIVATIONS, SelfAttention, activation_module, attention, explicit_attention, merge_heads, split_heads

if os.environ.get("SKATTN_FAST_PATHS") == "0":
    raise ImportError("skattn's fast paths are switched off (SKATTN_FAST_PATHS=0)")

# Padded batch widths are rounded up to a multiple of this: oneDNN compiles and
# caches kernels per matrix shape, so a few distinct widths keep memory flat and
# run faster than one width per batch (see benchmarks/README.md).
PAD_MULTIPLE = 16

# The masked-language-model head sees the number of selected tokens rounded up
# to a multiple of this, for the same reason.
SELECTED_MULTIPLE = 64


def cpu_has_native_bf16():
    """Whether the CPU has bfloat16 instructions (AVX512-BF16 or AMX)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


# -- training ----------------------------------------------------------------------


def speed_up_training(module):
    """Swap ``module``'s dropouts and attention kernels for the CPU-fast ones, in place.

    The swapped parts compute the same functions (dropout with other random
    masks); on other devices and dtypes they defer to the plain ones.
    """
    for child in list(module.modules()):
        for attribute, part in list(child.named_children()):
            if type(part) is nn.Dropout:
                setattr(child, attribute, NumpyDropout(part.p))
        if isinstance(child, SelfAttention):
            child.kernel = cpu_training_attention
    return module


def cpu_training_attention(q, k, v, attend):
    """:func:`~skattn._model.attention`, but explicit for bfloat16 training on the CPU.

    PyTorch's fused CPU attention has a slow bfloat16 backward; the explicit
    matmuls and softmax are faster forward and backward than the fused
    kernel in either dtype (``benchmarks/levers.py`` times both).
    """
    if torch.is_grad_enabled() and q.device.type == "cpu" and q.dtype == torch.bfloat16:
        return explicit_attention(q, k, v, attend)
    return attention(q, k, v, attend)


# Unsigned NumPy integer type of each itemsize, to build a dropout multiplier
# bit by bit in the dtype of the tensor it scales.
_BITS = {2: (torch.int16, np.uint16), 4: (torch.int32, np.uint32), 8: (torch.int64, np.uint64)}


class NumpyDropout(nn.Module):
    """Inverted dropout whose masks on the CPU come from NumPy's PCG64 generator.

    PyTorch's CPU ``bernoulli_`` draws from one sequential Mersenne Twister,
    a large share of a bfloat16 training step. Here each call seeds
    a fresh NumPy generator with one draw from torch's global generator, so
    ``torch.manual_seed`` (and a checkpoint's saved torch state) still decides
    every mask, cuts PCG64's raw 64-bit outputs into 16-bit draws, and builds
    the multiplier (0 or ``1 / (1 - p)``) in NumPy directly as the bit pattern
    of the input's dtype: one pass, no float conversion. The drop probability
    is ``p`` rounded to a multiple of 2**-16. Other devices and dtypes, and
    code traced by ``torch.compile``, use :func:`torch.nn.functional.dropout`.

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


# -- inference ---------------------------------------------------------------------


def inference_replica(module, dtype, fuse=None):
    """A copy of a fitted model for inference, its encoder's embeddings and blocks in ``dtype``.

    Casting weights once is faster than autocasting them at every call. The
    final LayerNorm, the pooling and everything after the encoder stay in
    float32, so outputs keep float32 precision. The replica is a snapshot:
    later changes to ``module``'s weights do not reach it.

    Parameters
    ----------
    module : TextEncoder, or a head module with an ``encoder`` attribute
    dtype : torch.dtype
    fuse : bool, default=None
        Make each block a :class:`FusedBlock`. None does so on a CPU where
        :func:`onednn_linear_works` in ``dtype`` (for bfloat16, only where
        the CPU has native bfloat16).
    """
    replica = copy.deepcopy(module).eval()
    encoder = replica.encoder if hasattr(replica, "encoder") else replica
    for part in (encoder.token_embedding, encoder.position_embedding, encoder.blocks):
        part.to(dtype)
    if fuse is None:
        device = next(module.parameters()).device
        fuse = fusion_pays(device, dtype)
    if fuse:
        encoder.blocks = nn.ModuleList(FusedBlock(block, encoder.config.activation) for block in encoder.blocks)
    return replica


def replica_for(module, device, dtype):
    """The replica to run ``module`` with on ``device``, or None for ``module`` itself.

    ``dtype`` is the inference precision: ``torch.qint8`` for an
    :func:`int8_replica` (float32 where :func:`int8_linear_works` is false
    or off the CPU), a reduced float type for a cast
    :func:`inference_replica`, None for float32, which gets a fused replica
    only where :func:`fusion_pays`, as a plain float32 copy would change
    nothing.
    """
    if dtype == torch.qint8:
        if device.type == "cpu" and int8_linear_works():
            try:
                return int8_replica(module)
            except Exception as error:  # the deprecated API failed where its probe passed
                warnings.warn(f"int8 inference failed to set up ({error!r}); predicting in float32.", RuntimeWarning)
        dtype = None
    if dtype is not None:
        return inference_replica(module, dtype)
    if fusion_pays(device, torch.float32):
        return inference_replica(module, torch.float32)
    return None


def fusion_pays(device, dtype):
    """Whether :func:`inference_replica` fuses blocks by default on ``device`` in ``dtype``.

    On the CPU where :func:`onednn_linear_works` in ``dtype``: in bfloat16
    only with native bfloat16 instructions (emulated bfloat16 is slower than
    float32), in float32 everywhere the op works (``benchmarks/levers.py``
    times both).
    """
    if device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16):
        return False
    if dtype == torch.bfloat16 and not cpu_has_native_bf16():
        return False
    return onednn_linear_works(dtype)


class FusedBlock(nn.Module):
    """An inference-only :class:`~skattn._model.Block` whose linear layers are :class:`OneDNNLinear`.

    The feed-forward activation runs inside the first feed-forward matmul, and
    both residual additions inside the matmuls before them.
    """

    def __init__(self, block, activation):
        super().__init__()
        self.n_heads = block.attention.n_heads
        self.norm_attention = block.norm_attention
        self.qkv = OneDNNLinear(block.attention.qkv)
        self.out = OneDNNLinear(block.attention.out)
        self.norm_ff = block.norm_ff
        self.up = OneDNNLinear(block.ff.up, activation)
        self.down = OneDNNLinear(block.ff.down)

    def forward(self, x, attend):
        q, k, v = split_heads(self.qkv(self.norm_attention(x)), self.n_heads)  # 3 x (batch, heads, seq, head_dim)
        y = merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=attend))  # (batch, seq, d_model)
        x = self.out(y, residual=x)  # (batch, seq, d_model)
        return self.down(self.up(self.norm_ff(x)), residual=x)  # (batch, seq, d_model)


class OneDNNLinear(nn.Module):
    """An inference-only linear layer, optionally followed by an activation, in one oneDNN call.

    PyTorch's CPU ``addmm`` first copies the bias into every row of its
    output and then accumulates the product; oneDNN adds the bias, and
    applies the activation or adds a residual, inside the matmul kernel, and
    reads a weight packed once into its preferred blocked layout. The op has
    no backward: use it only under ``torch.inference_mode``.

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
def onednn_linear_works(dtype=torch.bfloat16):
    """Whether this PyTorch build runs :class:`OneDNNLinear` in ``dtype`` correctly.

    The op is internal to PyTorch (TorchInductor's CPU backend emits it), so
    its presence and its result are checked once per dtype against
    ``F.linear``.
    """
    tolerance = 0.05 if dtype == torch.bfloat16 else 1e-4
    try:
        linear = _probe_linear(16, 8, dtype)
        x = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(1)).to(dtype)
        with torch.inference_mode():
            pairs = [(OneDNNLinear(linear, name)(x), activation_module(name)(linear(x))) for name in ACTIVATIONS]
            plain = pairs[0][1]
            pairs.append((OneDNNLinear(linear)(x, residual=plain), linear(x) + plain))
        return all(
            mine.shape == theirs.shape and torch.allclose(mine.float(), theirs.float(), atol=tolerance, rtol=tolerance)
            for mine, theirs in pairs
        )
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _probe_linear(in_features, out_features, dtype):
    """An ``nn.Linear`` with seeded weights, drawn without touching torch's global generator."""
    linear = torch.nn.utils.skip_init(nn.Linear, in_features, out_features)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in (linear.weight, linear.bias):
            parameter.copy_(torch.rand(parameter.shape, generator=generator) * 0.5 - 0.25)
    return linear.to(dtype)


# -- int8 inference ------------------------------------------------------------------


def int8_replica(module):
    """A copy of a fitted model whose blocks' linear layers compute in int8, for CPU inference.

    Each weight is quantized once, per output channel; each input is
    quantized at every call with one scale for the whole batch, chosen from
    its range (PyTorch's dynamic quantization, run by FBGEMM or oneDNN on
    x86). Embeddings, LayerNorms, attention, pooling and the output heads
    stay in float32, and so do the outputs. The replica is a snapshot, as
    :func:`inference_replica`'s.

    Parameters
    ----------
    module : TextEncoder, or a head module with an ``encoder`` attribute
    """
    replica = copy.deepcopy(module).eval()
    encoder = replica.encoder if hasattr(replica, "encoder") else replica
    _quantize_linear_layers(encoder.blocks)
    return replica


def _quantize_linear_layers(module):
    """``module`` with every ``nn.Linear`` inside it swapped, in place, for a dynamically quantized one."""
    # torch.ao.quantization is deprecated in favour of torchao, whose int8
    # layers run slower than float32 in eager mode on the CPU; its deprecation
    # warnings are not the user's to act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*deprecated", category=UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(module, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)


def int8_pays(device):
    """Whether ``precision="auto"`` runs inference on an :func:`int8_replica` on ``device``.

    On an x86 CPU (quantized engine ``"x86"`` or ``"fbgemm"``) where
    :func:`int8_linear_works`, unless it has AVX512 without AVX512-VNNI:
    there FBGEMM's int8 kernels are slower than oneDNN's float32 ones, while
    with VNNI, or with AVX2 alone, they are faster (``benchmarks/levers.py``
    times both). Only asked where the CPU lacks native bfloat16, which is
    faster still.
    """
    if device.type != "cpu" or torch.backends.quantized.engine not in ("x86", "fbgemm"):
        return False
    has = {name: getattr(torch.cpu, f"_is_{name}_supported", lambda: False)() for name in ("avx512", "vnni")}
    return (has["vnni"] or not has["avx512"]) and int8_linear_works()


def int8_linear_works():
    """Whether this PyTorch build runs a dynamically quantized int8 linear layer correctly.

    The eager quantization API is deprecated and its kernels depend on the
    build and the CPU, so its result is checked against ``F.linear``, once
    per quantized engine.
    """
    return _int8_linear_works(torch.backends.quantized.engine)


@functools.cache
def _int8_linear_works(engine):
    try:
        linear = _probe_linear(64, 32, torch.float32)
        x = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(1))
        quantized = _quantize_linear_layers(nn.Sequential(copy.deepcopy(linear)))
        with torch.inference_mode():
            mine, theirs = quantized(x), linear(x)
        return mine.shape == theirs.shape and float((mine - theirs).abs().max()) <= 0.05 * float(theirs.abs().max())
    except Exception:  # whatever a deprecated or missing API raises, skattn then predicts in float32
        return False

