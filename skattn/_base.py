"""Estimator machinery shared by AttentionEncoder and AttentionClassifier.

Parameter table, device and precision resolution, seeding, the training loop,
streamed inference and pickling all live here so that the two public
estimators only describe what they train and what they return.
"""

import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from tokenizers import Tokenizer

from ._model import POOLINGS, EncoderConfig, TextEncoder
from ._text import PAD_ID, SPECIAL_TOKENS, check_documents, encode, length_batches, pad, train_tokenizer

# Documents encoded at a time during inference: bounds memory to one chunk of
# token ids plus the output array, whatever the number of documents.
_INFERENCE_CHUNK = 4096


class _AttentionBase(BaseEstimator):
    """Base class for skattn estimators. Not part of the public API."""

    _parameter_constraints = {
        "tokenizer": [StrOptions({"wordpiece", "bpe", "unigram"})],
        "vocab_size": [Interval(Integral, len(SPECIAL_TOKENS) + 1, None, closed="left")],
        "lowercase": ["boolean"],
        "max_length": [Interval(Integral, 4, None, closed="left")],
        "d_model": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 0, None, closed="left")],
        "d_ff": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "pooling": [StrOptions(set(POOLINGS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "warmup_fraction": [Interval(Real, 0, 1, closed="both")],
        "device": [str, torch.device],
        "precision": [StrOptions({"auto", "fp32", "bf16"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    # -- checks --------------------------------------------------------------

    def _check_params(self):
        """Validate constructor parameters; raise before any work is done."""
        self._validate_params()
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}."
            )
        resolve_device(self.device)

    # -- fitting helpers -----------------------------------------------------

    def _seeds(self):
        """Draw the seeds of one fit from ``random_state``.

        Returns a NumPy generator (shuffling, masking) and an int seed for
        torch (weight initialisation, dropout).
        """
        rng = check_random_state(self.random_state)
        numpy_seed, torch_seed = rng.randint(np.iinfo(np.int32).max, size=2)
        return np.random.default_rng(int(numpy_seed)), int(torch_seed)

    def _new_encoder(self, documents):
        """Train a tokenizer on ``documents`` and build an untrained encoder."""
        tokenizer = train_tokenizer(
            documents,
            kind=self.tokenizer,
            vocab_size=self.vocab_size,
            lowercase=self.lowercase,
            max_length=self.max_length,
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
            pad_id=PAD_ID,
        )
        return tokenizer, config, TextEncoder(config)

    def _train(self, module, ids, targets, loss_fn, *, rng, device, description):
        """Train ``module`` in place and return its per-epoch loss curve.

        Parameters
        ----------
        module : torch.nn.Module
            Already on ``device``.
        ids : list of numpy.ndarray
            Token ids of each training sequence.
        targets : numpy.ndarray or None
            Per-sequence targets, indexed like ``ids``.
        loss_fn : callable
            ``loss_fn(module, batch_ids, batch_targets, rng) -> (loss, n_tokens)``
            with ``batch_ids`` a padded tensor on ``device``.
        rng : numpy.random.Generator
            Shuffles batches; passed on to ``loss_fn``.
        device : torch.device
        description : str
            Shown in progress messages.

        Returns
        -------
        loss_curve : list of float
            Mean training loss of each completed epoch.
        """
        lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
        n_batches = -(-len(ids) // self.batch_size)
        optimizer = _adamw(module, self.learning_rate, self.weight_decay, device)
        scheduler = _warmup_linear_decay(optimizer, self.max_epochs * n_batches, self.warmup_fraction)
        autocast = _autocast(device, resolve_precision(self.precision, device))
        loss_curve = []
        module.train()
        try:
            for epoch in range(self.max_epochs):
                started, total_loss, total_tokens = time.perf_counter(), 0.0, 0
                batches = length_batches(lengths, self.batch_size, shuffle=True, generator=rng)
                for batch_number, rows in enumerate(batches):
                    batch_ids = _to_device(pad([ids[i] for i in rows]), device)
                    batch_targets = None if targets is None else targets[rows]
                    with autocast:
                        loss, n_tokens = loss_fn(module, batch_ids, batch_targets, rng)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"{description}: the training loss became {loss.item()} at epoch "
                            f"{epoch + 1}, batch {batch_number + 1}. Try a lower "
                            f"learning_rate (now {self.learning_rate}) or precision='fp32'."
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                    optimizer.step()
                    scheduler.step()
                    total_loss += loss.item() * len(rows)
                    total_tokens += n_tokens
                loss_curve.append(total_loss / len(ids))
                if self.verbose:
                    elapsed = time.perf_counter() - started
                    print(
                        f"[{description}] epoch {epoch + 1}/{self.max_epochs}  loss "
                        f"{loss_curve[-1]:.4f}  {total_tokens / elapsed:,.0f} tokens/s  "
                        f"{elapsed:.1f}s",
                        file=sys.stderr,
                        flush=True,
                    )
        except KeyboardInterrupt:
            if not loss_curve:
                raise
            warnings.warn(
                f"{description}: training interrupted during epoch {len(loss_curve) + 1}; "
                f"keeping the model trained for {len(loss_curve)} epoch(s).",
                RuntimeWarning,
                stacklevel=3,
            )
        module.eval()
        return loss_curve

    # -- inference -----------------------------------------------------------

    def _inference_device(self):
        """Resolve ``device`` and move the fitted model there if needed."""
        device = resolve_device(self.device)
        self.model_.to(device)
        return device

    def _forward_all(self, X, forward, n_outputs):
        """Run ``forward`` over documents in length-sorted batches.

        Parameters
        ----------
        X : iterable of str
            Documents, validated here.
        forward : callable
            Maps a padded id tensor ``(batch, seq)`` to ``(batch, n_outputs)``.
        n_outputs : int

        Returns
        -------
        outputs : numpy.ndarray of float32, shape (n_documents, n_outputs)
            Rows in the order of ``X``.
        """
        documents = check_documents(X)
        device = self._inference_device()
        autocast = _autocast(device, resolve_precision(self.precision, device))
        outputs = np.empty((len(documents), n_outputs), dtype=np.float32)
        self.model_.eval()
        with torch.inference_mode(), autocast:
            for start in range(0, len(documents), _INFERENCE_CHUNK):
                ids = encode(self.tokenizer_, documents[start : start + _INFERENCE_CHUNK])
                lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
                for rows in length_batches(lengths, self.batch_size, shuffle=False):
                    batch = _to_device(pad([ids[i] for i in rows]), device)
                    outputs[start + rows] = forward(batch).float().cpu().numpy()
        return outputs

    # -- persistence ---------------------------------------------------------

    def __getstate__(self):
        state = dict(super().__getstate__())
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
        if "model_" in state:
            weights = state["model_"]
            state = dict(state, tokenizer_=Tokenizer.from_str(state["tokenizer_"]))
            super().__setstate__(state)
            self.model_ = self._build_module()
            self.model_.load_state_dict(weights)
            self.model_.eval()
        else:
            super().__setstate__(state)


# -- small helpers -------------------------------------------------------------


def resolve_device(device):
    """Turn the ``device`` parameter into a :class:`torch.device`.

    ``"auto"`` picks CUDA when available, else the CPU.
    """
    if isinstance(device, torch.device):
        resolved = device
    elif device == "auto":
        resolved = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            resolved = torch.device(device)
        except RuntimeError as error:
            raise ValueError(
                f"device={device!r} is not a valid device: use 'auto', 'cpu', 'cuda' or "
                f"'cuda:N'."
            ) from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available.")
    return resolved


def resolve_precision(precision, device):
    """Return the autocast dtype for ``precision`` on ``device``, or None for fp32.

    ``"auto"`` uses bfloat16 on CUDA devices that support it and on CPUs with
    native bfloat16 instructions (AVX512-BF16 or AMX), where it is faster.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _cpu_has_native_bf16():
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _autocast(device, dtype):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_device(array, device):
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def _adamw(module, learning_rate, weight_decay, device):
    """AdamW with weight decay on matrices only, not on biases, norms or embeddings."""
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        is_matrix = parameter.dim() >= 2 and "embedding" not in name
        (decay if is_matrix else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=learning_rate, fused=device.type == "cuda" or None)


def _warmup_linear_decay(optimizer, total_steps, warmup_fraction):
    warmup_steps = int(round(warmup_fraction * total_steps))

    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def classification_loss(class_weight=None):
    """Return a ``loss_fn`` for :meth:`_AttentionBase._train` on class indices.

    Parameters
    ----------
    class_weight : numpy.ndarray of shape (n_classes,), default=None
        Weight of each class in the cross-entropy.
    """
    weight_cache = {}

    def loss_fn(module, ids, targets, rng):
        device = ids.device
        if class_weight is not None and device not in weight_cache:
            weight_cache[device] = torch.as_tensor(class_weight, dtype=torch.float32, device=device)
        logits = module(ids)  # (batch, n_classes)
        labels = torch.from_numpy(targets).to(device)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=weight_cache.get(device))
        return loss, int((ids != PAD_ID).sum())

    return loss_fn


@contextmanager
def seeded_torch(seed, device):
    """Seed torch's global generators for a block and restore them afterwards.

    Dropout and ``nn.init`` draw from the global generators; forking them keeps
    the user's random state untouched while making the fit repeatable.
    """
    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
