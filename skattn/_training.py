"""The optimisation loop behind every ``fit`` and ``partial_fit``.

Epochs over shuffled, length-bucketed batches; AdamW with decay and no-decay
groups; warmup then linear decay; gradient clipping; early stopping with the
best weights restored; Ctrl-C turned into a clean stop; non-finite losses
caught before they reach the weights; per-epoch checkpoints that a later fit
resumes from. No callback framework: the estimator passes a loss function,
optionally a validation scorer, and reads back a :class:`History`.
"""

import hashlib
import os
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ._ngrams import ngram_tensors
from ._text import length_batches, split_by_tokens

CHECKPOINT_FILE = "checkpoint.pt"

# The n-gram path is a linear model on L2-normalised TF-IDF rows: its weights
# must grow to several units, far beyond where the encoder's learning rate
# takes them in a few epochs.
NGRAM_LEARNING_RATE_SCALE = 50


@dataclass
class TrainingData:
    """What one training run iterates over.

    Parameters
    ----------
    encoded : EncodedTexts
        Token ids of the training documents.
    targets : numpy.ndarray or None
        Per-document targets (class indices, or a label-indicator matrix);
        None for masked language modelling.
    weights : numpy.ndarray of float32 or None
        Per-document loss weights.
    ngrams : scipy.sparse.csr_matrix or None
        Per-document n-gram features, for a classifier with an n-gram path.
    """

    encoded: object
    targets: np.ndarray = None
    weights: np.ndarray = None
    ngrams: object = None

    def __len__(self):
        return len(self.encoded)

    def subset(self, rows):
        """The documents ``rows`` (sorted indices), as a new TrainingData."""
        return TrainingData(
            encoded=self.encoded.subset(rows),
            targets=None if self.targets is None else self.targets[rows],
            weights=None if self.weights is None else self.weights[rows],
            ngrams=None if self.ngrams is None else self.ngrams[rows],
        )

    def batch(self, rows, device):
        """Tensors of the documents ``rows``: ids, window owners, targets, weights, n-grams."""
        ids, owner = self.encoded.batch(rows)
        ngrams = None
        if self.ngrams is not None:
            ngrams = tuple(to_device(array, device) for array in ngram_tensors(self.ngrams, rows))
        return Batch(
            ids=to_device(ids, device),
            owner=to_device(owner, device),
            n_documents=len(rows),
            targets=None if self.targets is None else to_device(self.targets[rows], device),
            weights=None if self.weights is None else to_device(self.weights[rows], device),
            ngrams=ngrams,
        )


@dataclass
class Batch:
    ids: torch.Tensor
    owner: torch.Tensor
    n_documents: int
    targets: torch.Tensor = None
    weights: torch.Tensor = None
    ngrams: tuple = None

    def inputs(self):
        """Keyword arguments of a model's forward for this batch."""
        inputs = dict(ids=self.ids, owner=self.owner, n_documents=self.n_documents)
        if self.ngrams is not None:
            inputs["ngrams"] = self.ngrams
        return inputs


@dataclass
class History:
    """What a training run did, read back into the estimator's attributes."""

    loss_curve: list = field(default_factory=list)
    grad_norm_curve: list = field(default_factory=list)
    validation_scores: list = None
    best_score: float = None
    best_loss: float = None
    n_tokens_seen: int = 0
    no_improvement: int = 0
    stopped_early: bool = False
    interrupted: bool = False
    finished: bool = False


def train(
    estimator,
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
    optimizer_state=None,
    checkpoint_key=None,
):
    """Train ``module`` in place.

    Parameters
    ----------
    estimator : skattn estimator
        Supplies the training parameters (``batch_size``, ``learning_rate``,
        ``early_stopping``, ``n_iter_no_change``, ``tol``, ``verbose``,
        ``checkpoint_dir``, ``resume``...).
    module : torch.nn.Module
        On ``device``; updated in place.
    data : TrainingData
    loss_fn : callable
        ``loss_fn(module, batch, rng) -> loss`` with ``batch`` a :class:`Batch`.
    rng : numpy.random.Generator
        Batch order; passed on to ``loss_fn``.
    device : torch.device
    description : str
        Names the run in progress output, warnings and errors.
    validation : TrainingData, default=None
        Held-out data for early stopping.
    score_fn : callable, default=None
        ``score_fn(module, validation) -> float``, higher is better.
    max_epochs : int, default=None
        Overrides ``estimator.max_epochs`` (``partial_fit`` runs one).
    constant_learning_rate : bool, default=False
        Keep the learning rate constant (``partial_fit``) instead of warmup
        then linear decay.
    optimizer_state : dict, default=None
        AdamW state to continue from (``partial_fit``).
    checkpoint_key : str, default=None
        Identifies this run's data and model in checkpoints, so that resuming
        refuses a checkpoint written by another fit.

    Returns
    -------
    history : History
    optimizer_state : dict
        The AdamW state at the end, for a later ``partial_fit``.
    """
    max_epochs = estimator.max_epochs if max_epochs is None else max_epochs
    lengths = data.encoded.document_lengths()
    token_budget = data.encoded.token_budget(estimator.batch_size)
    n_batches = -(-len(lengths) // estimator.batch_size)
    optimizer = _adamw(module, estimator.learning_rate, estimator.weight_decay, device)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    scheduler = _schedule(optimizer, max_epochs * n_batches, estimator.warmup_fraction, constant_learning_rate)
    history = History(validation_scores=[] if validation is not None else None)
    best_weights = None
    checkpoint = _Checkpoint(estimator, checkpoint_key, description)
    start_epoch = 0
    resumed = checkpoint.load() if estimator.resume else None
    if resumed is not None:
        start_epoch, history, best_weights = _restore(resumed, module, optimizer, scheduler, rng, device)
    autocast = autocast_context(device, resolve_precision(estimator.precision, device))
    progress = _Progress(estimator.verbose, description, max_epochs)

    module.train()
    for epoch in range(start_epoch, max_epochs):
        if history.finished:
            break
        started = time.perf_counter()
        batches = length_batches(lengths, estimator.batch_size, shuffle=True, generator=rng)
        last_good = _snapshot(module)
        total_loss, total_weight, epoch_tokens = 0.0, 0.0, 0
        largest_norm = torch.zeros((), device=device)
        bar = progress.epoch_bar(epoch, len(batches))
        # Ctrl-C arrives as KeyboardInterrupt between two Python statements. It
        # leaves the weights as the last optimizer step left them, unless it
        # cut a step short: then some tensors may be updated and others not.
        stepping = False
        try:
            for batch_number, rows in enumerate(batches):
                optimizer.zero_grad(set_to_none=True)
                loss = _accumulate_gradients(
                    module, data, rows, lengths, token_budget, loss_fn, rng, device, autocast,
                    partial(_check_finite, description=description, epoch=epoch, batch_number=batch_number, estimator=estimator),
                )
                norm = torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                _check_finite(norm, description, epoch, batch_number, estimator, what="gradient norm")
                largest_norm = torch.maximum(largest_norm, norm.detach())
                stepping = True
                optimizer.step()
                scheduler.step()
                stepping = False
                weight = len(rows) if data.weights is None else float(data.weights[rows].sum())
                total_loss += loss * weight
                total_weight += weight
                epoch_tokens += int(lengths[rows].sum())
                bar.update(total_loss / max(total_weight, 1e-12), epoch_tokens, started)
            bar.close()
            epoch_loss = total_loss / max(total_weight, 1e-12)
            if validation is not None:
                score = float(score_fn(module, validation))
                module.train()
        except KeyboardInterrupt:
            bar.close()
            if stepping:
                if not history.loss_curve:
                    raise
                module.load_state_dict(last_good)
                epoch_tokens = 0
            _stop_after_interrupt(module, history, best_weights, description, epoch)
            history.n_tokens_seen += epoch_tokens
            break
        except BaseException:
            module.load_state_dict(last_good)
            bar.close()
            raise
        history.loss_curve.append(epoch_loss)
        history.grad_norm_curve.append(float(largest_norm))
        history.n_tokens_seen += epoch_tokens
        if validation is not None:
            history.validation_scores.append(score)
        best_weights = _update_stopping(estimator, history, module, best_weights)
        history.finished = history.stopped_early or epoch + 1 == max_epochs
        progress.epoch_line(epoch, history, time.perf_counter() - started, epoch_tokens)
        checkpoint.save(epoch + 1, module, optimizer, scheduler, rng, history, best_weights)
    if best_weights is not None and not history.interrupted:
        module.load_state_dict(best_weights)
    module.eval()
    return history, optimizer.state_dict()


def _accumulate_gradients(module, data, rows, lengths, token_budget, loss_fn, rng, device, autocast, check):
    """Backpropagate the loss of one batch; return its value.

    A batch of documents split into many windows can exceed ``token_budget``
    tokens; it is then processed in parts of whole documents whose gradients
    add up to the batch's, so memory stays bounded while each optimiser step
    still sees ``batch_size`` documents.
    """
    parts = split_by_tokens(rows, lengths[rows], len(rows), token_budget)
    value = 0.0
    for part in parts:
        batch = data.batch(part, device)
        with autocast:
            loss = loss_fn(module, batch, rng)
        check(loss)
        share = len(part) / len(rows)
        (loss * share).backward()
        value += loss.item() * share
    return value


def warn_if_not_converged(history, description, stacklevel, tol):
    """Warn with ConvergenceWarning when ``max_epochs`` ended a run that was still improving.

    As in scikit-learn's ``MLPClassifier``: the last epoch improved on the
    best one before it by more than ``tol`` (the validation score with early
    stopping, else the training loss); a run of one epoch counts as
    improving.
    """
    if history.stopped_early or history.interrupted or not history.loss_curve:
        return
    if history.no_improvement == 0:
        what = "validation score" if history.validation_scores is not None else "training loss"
        warnings.warn(
            f"{description}: max_epochs was reached while the {what} was still improving by "
            f"more than tol={tol}; the model may improve with a larger max_epochs.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )


# -- stopping, interrupts and non-finite values ----------------------------------


def _update_stopping(estimator, history, module, best_weights):
    """Track improvement after an epoch; return the weights to restore at the end.

    With a validation set, an epoch improves when its score beats the best by
    more than ``tol``, and the best-scoring weights are kept for the end.
    Without, it improves when the training loss falls below the best by more
    than ``tol``. ``n_iter_no_change`` epochs without improvement stop the run.
    """
    loss = history.loss_curve[-1]
    if history.validation_scores is not None:
        score = history.validation_scores[-1]
        improved = history.best_score is None or score > history.best_score + estimator.tol
        if history.best_score is None or score > history.best_score:
            history.best_score = score
            best_weights = _snapshot(module)
    else:
        improved = history.best_loss is None or loss < history.best_loss - estimator.tol
    history.best_loss = loss if history.best_loss is None else min(history.best_loss, loss)
    history.no_improvement = 0 if improved else history.no_improvement + 1
    history.stopped_early = history.no_improvement >= estimator.n_iter_no_change
    return best_weights


def _stop_after_interrupt(module, history, best_weights, description, epoch):
    history.interrupted = history.finished = True
    if best_weights is not None:
        module.load_state_dict(best_weights)
        kept = "the best weights so far"
    else:
        kept = f"the weights trained so far ({len(history.loss_curve)} full epoch(s))"
    warnings.warn(
        f"{description}: training interrupted by the user (KeyboardInterrupt) during epoch "
        f"{epoch + 1}; stopped after the current batch, keeping {kept}.",
        RuntimeWarning,
        stacklevel=4,
    )


def _check_finite(value, description, epoch, batch_number, estimator, what="training loss"):
    if not torch.isfinite(value):
        raise FloatingPointError(
            f"{description}: the {what} became {value.item()} at epoch {epoch + 1}, batch "
            f"{batch_number + 1}; the fit was stopped and no weights were changed by that "
            f"batch. Try a lower learning_rate (now {estimator.learning_rate}) or "
            f"precision='fp32'."
        )


def _snapshot(module):
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


# -- checkpoints ---------------------------------------------------------------------


class _Checkpoint:
    """Per-epoch checkpoint of one training run in ``estimator.checkpoint_dir``."""

    def __init__(self, estimator, key, description):
        self.directory = estimator.checkpoint_dir
        self.key = key
        self.description = description

    @property
    def path(self):
        return os.path.join(os.fspath(self.directory), CHECKPOINT_FILE)

    def load(self):
        if self.directory is None or not os.path.exists(self.path):
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("key") != self.key:
            raise ValueError(
                f"{self.description}: the checkpoint in {self.path!r} was written by a fit "
                f"on other data or with other parameters; use another checkpoint_dir, "
                f"delete the file, or set resume=False."
            )
        return state

    def save(self, epoch, module, optimizer, scheduler, rng, history, best_weights):
        if self.directory is None:
            return
        os.makedirs(self.directory, exist_ok=True)
        state = {
            "key": self.key,
            "epoch": epoch,
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "numpy_rng": _rng_state(rng),
            "torch_rng": torch.get_rng_state(),
            "history": history.__dict__.copy(),
            "best_weights": best_weights,
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        temporary = self.path + ".tmp"
        torch.save(state, temporary)
        os.replace(temporary, self.path)  # atomic: a crash never leaves half a file


def checkpoint_key(*parts):
    """A short digest of whatever identifies a training run."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _restore(state, module, optimizer, scheduler, rng, device):
    module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng.bit_generator.state = _rng_from_state(state["numpy_rng"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    history = History(**state["history"])
    return state["epoch"], history, state["best_weights"]


def _rng_state(rng):
    # weights_only checkpoints take tensors and plain containers: the PCG64
    # state's two 128-bit integers are stored as decimal strings.
    state = rng.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": {k: str(v) for k, v in state["state"].items()},
        "has_uint32": state["has_uint32"],
        "uinteger": state["uinteger"],
    }


def _rng_from_state(saved):
    return {**saved, "state": {k: int(v) for k, v in saved["state"].items()}}


# -- optimiser, schedule, precision, devices ------------------------------------------


def _adamw(module, learning_rate, weight_decay, device):
    """AdamW with weight decay on matrices only, not on biases, norms or embeddings.

    The n-gram path of a classifier (a linear model over sparse features)
    gets its own group: ``NGRAM_LEARNING_RATE_SCALE`` times the learning
    rate, and no weight decay.
    """
    decay, no_decay, ngrams = [], [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        if name.startswith("ngrams."):
            ngrams.append(parameter)
            continue
        is_matrix = parameter.dim() >= 2 and "embedding" not in name
        (decay if is_matrix else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if ngrams:
        groups.append({"params": ngrams, "weight_decay": 0.0, "lr": learning_rate * NGRAM_LEARNING_RATE_SCALE})
    # The fused kernel (one op for all tensors) exists for CPU and CUDA.
    return torch.optim.AdamW(groups, lr=learning_rate, fused=device.type in ("cpu", "cuda") or None)


def _schedule(optimizer, total_steps, warmup_fraction, constant):
    warmup_steps = 0 if constant else int(round(warmup_fraction * total_steps))

    def factor(step):
        if constant:
            return 1.0
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def cpu_has_native_bf16():
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast_context(device, dtype):
    """Autocast to ``dtype`` on ``device``, or nothing for float32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(array, device):
    """A NumPy array as a tensor on ``device`` (pinned, asynchronous copy on CUDA)."""
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


# -- progress ----------------------------------------------------------------------


class _Progress:
    """Progress on stderr: a bar per epoch on a terminal, one line per epoch otherwise.

    ``verbose=0`` prints nothing; ``verbose=1`` shows a bar (loss, tokens/s,
    ETA) when stderr is a terminal and a line per epoch when it is not (logs,
    CI, notebooks); ``verbose>=2`` always prints the per-epoch lines.
    """

    def __init__(self, verbose, description, max_epochs):
        self.verbose = verbose
        self.description = description
        self.max_epochs = max_epochs
        self.interactive = bool(verbose) and _is_terminal(sys.stderr)

    def epoch_bar(self, epoch, n_batches):
        if not self.interactive:
            return _NoBar()
        from tqdm.auto import tqdm

        bar = tqdm(
            total=n_batches,
            desc=f"{self.description} {epoch + 1}/{self.max_epochs}",
            file=sys.stderr,
            leave=self.verbose < 2,
            dynamic_ncols=True,
            unit="batch",
        )
        return _Bar(bar)

    def epoch_line(self, epoch, history, seconds, tokens):
        if not self.verbose or (self.interactive and self.verbose < 2):
            return
        line = f"[{self.description}] epoch {epoch + 1}/{self.max_epochs}  loss {history.loss_curve[-1]:.4f}"
        if history.validation_scores:
            line += f"  validation score {history.validation_scores[-1]:.4f}"
        line += f"  {tokens / max(seconds, 1e-9):,.0f} tokens/s  {seconds:.1f}s"
        print(line, file=sys.stderr, flush=True)


class _Bar:
    def __init__(self, bar):
        self.bar = bar

    def update(self, loss, tokens, started):
        self.bar.set_postfix(loss=f"{loss:.4f}", tokens_per_s=f"{tokens / max(time.perf_counter() - started, 1e-9):,.0f}", refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()


class _NoBar:
    def update(self, loss, tokens, started):
        pass

    def close(self):
        pass


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- inference -----------------------------------------------------------------------


def infer(forward, data, n_outputs, *, batch_size, device, autocast_dtype):
    """Run ``forward`` over documents in length-sorted batches.

    Parameters
    ----------
    forward : callable
        Called with the keyword arguments of :meth:`Batch.inputs`
        (``ids``, ``owner``, ``n_documents``, and ``ngrams`` when ``data``
        has n-gram features); returns ``(n_documents, n_outputs)``.
    data : TrainingData
        The documents; targets and weights are ignored.
    n_outputs : int
    batch_size : int
        Documents per batch (fewer when their windows exceed the token budget).
    device : torch.device
    autocast_dtype : torch.dtype or None
        Autocast to this type; None runs ``forward`` as it is.

    Returns
    -------
    outputs : numpy.ndarray of float32, shape (n_documents, n_outputs)
        Rows in the order of ``data``.
    """
    outputs = np.empty((len(data), n_outputs), dtype=np.float32)
    lengths = data.encoded.document_lengths()
    with torch.inference_mode(), autocast_context(device, autocast_dtype):
        token_budget = data.encoded.token_budget(batch_size)
        for rows in length_batches(lengths, batch_size, shuffle=False, token_budget=token_budget):
            result = forward(**data.batch(rows, device).inputs())
            outputs[rows] = result.float().cpu().numpy()
    return outputs
