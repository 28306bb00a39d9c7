"""The training loop behind every ``fit`` and ``partial_fit``, over plain values.

Epochs over shuffled, length-bucketed batches; gradient clipping; early
stopping with the best weights restored; Ctrl-C turned into a clean stop;
non-finite losses caught before they reach the weights; per-epoch checkpoints
that a later run resumes from. The caller passes the module, the data, a loss
function, an optimizer and its schedule, the stopping rule, and optionally a
validation scorer, a checkpoint, a progress display and callbacks; it reads
back a :class:`History`. Nothing here knows an estimator, a head or a feature.
"""

import hashlib
import os
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ._callbacks import TrainingEvent
from ._distributed import LossModule, is_main_process, no_sync
from ._files import atomic_file
from ._text import length_batches, split_by_tokens


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
    features : object or None
        Side features of the documents for a model part that reads them
        (``_ngrams.NgramFeatures``): anything with ``subset(rows)``,
        ``tensors(rows, to_device)`` and ``digest()``.
    """

    encoded: object
    targets: np.ndarray = None
    weights: np.ndarray = None
    features: object = None

    def __len__(self):
        return len(self.encoded)

    def subset(self, rows):
        """The documents ``rows`` (sorted indices), as a new TrainingData."""
        return TrainingData(
            encoded=self.encoded.subset(rows),
            targets=None if self.targets is None else self.targets[rows],
            weights=None if self.weights is None else self.weights[rows],
            features=None if self.features is None else self.features.subset(rows),
        )

    def batch(self, rows, device):
        """Tensors of the documents ``rows``: ids, window owners, targets, weights, features."""
        ids, owner = self.encoded.batch(rows)
        move = partial(to_device, device=device)
        return Batch(
            ids=move(ids),
            owner=move(owner),
            n_documents=len(rows),
            targets=None if self.targets is None else move(self.targets[rows]),
            weights=None if self.weights is None else move(self.weights[rows]),
            features=None if self.features is None else self.features.tensors(rows, move),
        )

    def digest(self):
        """A digest of everything a run reads, so that a checkpoint names its data."""
        digest = hashlib.sha256()
        for window in self.encoded.windows:
            digest.update(window.tobytes())
        digest.update(self.encoded.offsets.tobytes())
        for array in (self.targets, self.weights):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
        if self.features is not None:
            digest.update(self.features.digest().encode())
        return digest.hexdigest()


@dataclass
class Batch:
    ids: torch.Tensor
    owner: torch.Tensor
    n_documents: int
    targets: torch.Tensor = None
    weights: torch.Tensor = None
    features: tuple = None

    def inputs(self):
        """Keyword arguments of a model's forward for this batch."""
        inputs = dict(ids=self.ids, owner=self.owner, n_documents=self.n_documents)
        if self.features is not None:
            inputs["features"] = self.features
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


class Stopping(NamedTuple):
    """When a run stops before ``max_epochs``: ``n_iter_no_change`` epochs without
    an improvement larger than ``tol`` (of the validation score when there is a
    validation set, else of the training loss)."""

    n_iter_no_change: int
    tol: float


def train(
    module,
    data,
    loss_fn,
    *,
    optimizer,
    scheduler,
    batch_size,
    max_epochs,
    stopping,
    rng,
    device,
    autocast_dtype,
    description,
    validation=None,
    score_fn=None,
    checkpoint=None,
    resume=False,
    progress=None,
    callbacks=(),
    advice="",
    replicas=None,
    weight_scale=None,
):
    """Train ``module`` in place.

    Parameters
    ----------
    module : torch.nn.Module
        On ``device``; updated in place.
    data : TrainingData
    loss_fn : callable
        ``loss_fn(module, batch, rng) -> loss`` with ``batch`` a :class:`Batch`.
    optimizer : torch.optim.Optimizer
        Over ``module``'s parameters.
    scheduler : torch.optim.lr_scheduler.LRScheduler
        Stepped after every optimizer step.
    batch_size : int
        Documents per step.
    max_epochs : int
    stopping : Stopping
    rng : numpy.random.Generator
        Batch order; passed on to ``loss_fn``.
    device : torch.device
    autocast_dtype : torch.dtype or None
        Autocast the forward passes to this type; None for float32.
    description : str
        Names the run in warnings and errors.
    validation : TrainingData, default=None
        Held-out data for early stopping.
    score_fn : callable, default=None
        ``score_fn(module, validation) -> float``, higher is better.
    checkpoint : Checkpoint, default=None
        Where to save the run's state after each epoch.
    resume : bool, default=False
        Continue from ``checkpoint``'s saved state when there is one.
    progress : Progress, default=None
        Progress display; None shows nothing.
    callbacks : sequence of callable, default=()
        Each called with a :class:`~skattn.TrainingEvent` after every
        optimizer step and every epoch. ``KeyboardInterrupt`` raised by one
        stops the run as Ctrl-C does.
    advice : str, default=""
        Appended to the error raised on a non-finite loss or gradient.
    replicas : skattn._distributed.Replicas, default=None
        The ranks of a process group to train with, data-parallel: each
        global batch is split across them, gradients are averaged by
        DistributedDataParallel, and the loss, the finite checks and the
        validation score are agreed so that all ranks decide alike. Only
        rank 0 writes checkpoints. A ``KeyboardInterrupt`` then fails the
        run instead of stopping it cleanly, since the other ranks cannot be
        told in time.
    weight_scale : float, default=None
        The document weights of ``data`` and ``validation`` are divided by
        this (see ``_heads.weighted_mean``); None divides them by the mean
        weight of ``data``, so that only their ratios matter.

    Returns
    -------
    history : History
    """
    data, validation = _scaled_weights(data, validation, weight_scale)
    lengths = data.encoded.document_lengths()
    token_budget = data.encoded.token_budget(batch_size)
    history = History(validation_scores=[] if validation is not None else None)
    best_weights = None
    start_epoch = 0
    resumed = None
    if checkpoint is not None and resume:
        resumed = checkpoint.load() if replicas is None else replicas.from_main(checkpoint.load)
    if resumed is not None:
        start_epoch, history, best_weights = _restore(resumed, module, optimizer, scheduler, rng, device)
    autocast = autocast_context(device, autocast_dtype)
    progress = progress if progress is not None else _Silent()
    check = partial(_check_finite, description=description, advice=advice)
    step = _Step(module, loss_fn, replicas)
    deferred = replicas is None and _skips_on_flag(optimizer, device)
    values = _StepValues(optimizer, device, check, deferred)

    module.train()
    for epoch in range(start_epoch, max_epochs):
        if history.finished:
            break
        started = time.perf_counter()
        batches = length_batches(lengths, batch_size, shuffle=True, generator=rng)
        last_good = _snapshot(module)
        values.start_epoch(epoch)
        epoch_tokens = 0
        largest_norm = torch.zeros((), device=device)
        bar = progress.epoch_bar(epoch, len(batches))
        # Ctrl-C arrives as KeyboardInterrupt between two Python statements. It
        # leaves the weights as the last optimizer step left them, unless it
        # cut a step short: then some tensors may be updated and others not.
        stepping = False
        try:
            for batch_number, rows in enumerate(batches):
                optimizer.zero_grad(set_to_none=True)
                loss, shapes = step.accumulate_gradients(data, rows, lengths, token_budget, rng, device, autocast)
                norm = torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                values.record(loss, norm, batch_number, len(rows))
                largest_norm = torch.maximum(largest_norm, norm.detach())
                stepping = True
                values.step()
                scheduler.step()
                stepping = False
                step_tokens = int(lengths[rows].sum())
                epoch_tokens += step_tokens
                bar.update(values.mean_loss, epoch_tokens, started)
                if callbacks:
                    values.read()  # callbacks see checked steps only
                    event = TrainingEvent(
                        "step", epoch + 1, batch_number + 1, float(loss), step_tokens,
                        time.perf_counter() - started, shapes, None, module,
                    )
                    for callback in callbacks:
                        callback(event)
            epoch_loss = values.mean_loss()
            bar.close()
            if validation is not None:
                score = float(score_fn(module, validation))
                if replicas is not None:
                    score = replicas.from_main_value(score)
                module.train()
        except KeyboardInterrupt:
            bar.close()
            if replicas is not None:
                module.load_state_dict(last_good)
                raise
            try:
                values.read()  # a non-finite step before the interrupt is the run's real end
            except FloatingPointError:
                module.load_state_dict(last_good)
                raise
            if stepping:
                if not history.loss_curve:
                    raise
                module.load_state_dict(last_good)
                epoch_tokens = 0
            _stop_after_interrupt(
                module, history, best_weights, description,
                f"during epoch {epoch + 1}; stopped after the current batch",
            )
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
        best_weights = _update_stopping(stopping, history, module, best_weights)
        history.finished = history.stopped_early or epoch + 1 == max_epochs
        progress.epoch_line(epoch, history, time.perf_counter() - started, epoch_tokens)
        if checkpoint is not None and (replicas is None or replicas.is_main):
            checkpoint.save(epoch + 1, module, optimizer, scheduler, rng, history, best_weights)
        event = TrainingEvent(
            "epoch", epoch + 1, len(batches), epoch_loss, epoch_tokens,
            time.perf_counter() - started, (), score if validation is not None else None, module,
        )
        try:
            for callback in callbacks:
                callback(event)
        except KeyboardInterrupt:
            if replicas is not None:
                raise
            if not history.finished:
                _stop_after_interrupt(module, history, best_weights, description, f"at the end of epoch {epoch + 1}")
            break
        finally:
            module.train()
    step.close()
    if best_weights is not None and not history.interrupted:
        module.load_state_dict(best_weights)
    module.eval()
    return history


class _Step:
    """Computes one optimizer step's gradients, alone or as one of a group of ranks."""

    def __init__(self, module, loss_fn, replicas):
        self.module = module
        self.loss_fn = loss_fn
        self.replicas = replicas
        self.wrapped = None if replicas is None else replicas.wrap(LossModule(module, loss_fn))

    def accumulate_gradients(self, data, rows, lengths, token_budget, rng, device, autocast):
        """Backpropagate the loss of one batch; return its value and the shapes of its parts' ids.

        A batch of documents split into many windows can exceed ``token_budget``
        tokens; it is then processed in parts of whole documents whose gradients
        add up to the batch's, so memory stays bounded while each optimiser step
        still sees ``batch_size`` documents. Alone, the value is a 0-d tensor on
        ``device`` (reading it would wait for the device). With replicas, this
        rank takes its share of ``rows``, and the value is the whole batch's
        loss as a float, agreed by all ranks: non-finite on every rank when it
        is on any.
        """
        scale = 1.0
        if self.replicas is not None:
            rows, scale = self.replicas.shard(rows)
        parts = split_by_tokens(rows, lengths[rows], len(rows), token_budget)
        value = 0.0
        shapes = []
        for index, part in enumerate(parts):
            batch = data.batch(part, device)
            shapes.append(tuple(batch.ids.shape))
            share = scale * len(part) / len(rows)
            if self.replicas is None:
                with autocast:
                    loss = self.loss_fn(self.module, batch, rng)
                (loss * share).backward()
            else:
                # Gradients are exchanged once per step: in the backward pass of the last part.
                with no_sync(self.wrapped, last=index == len(parts) - 1):
                    with autocast:
                        loss = self.wrapped(batch, rng)
                    (loss * share).backward()
            value = value + loss.detach().float() * share
        if self.replicas is not None:
            # A non-finite value on any rank makes the sum non-finite on all of them.
            value = self.replicas.sum([float(value)])[0] / self.replicas.world_size
        return value, tuple(shapes)

    def close(self):
        """Drop the DistributedDataParallel wrapper (and its gradient hooks); the module stays."""
        self.wrapped = None


def _scaled_weights(data, validation, scale):
    """``data`` and ``validation`` with their document weights divided by ``scale`` (None: the mean weight of ``data``).

    At a mean of 1 the weights leave the learning rate as it is, a weighted
    batch's loss stays comparable to an unweighted one's, and validation
    losses do not grow with the weights' scale.
    """
    if data.weights is None:
        return data, validation
    if scale is None:
        scale = float(np.mean(data.weights, dtype=np.float64))
        if not scale > 0:
            held_out = "" if validation is None else " (early_stopping's validation split holds every weighted one)"
            raise ValueError(f"Every training document has a weight of zero{held_out}: nothing to learn from.")

    def scaled(part):
        if part is None or part.weights is None:
            return part
        return replace(part, weights=(part.weights / scale).astype(np.float32))

    return scaled(data), scaled(validation)


def warn_if_not_converged(history, description, stacklevel, tol):
    """Warn with ConvergenceWarning when ``max_epochs`` ended a run that was still improving.

    As in scikit-learn's ``MLPClassifier``: the last epoch improved on the
    best one before it by more than ``tol`` (the validation score with early
    stopping, else the training loss); a run of one epoch counts as
    improving.
    """
    if history.stopped_early or history.interrupted or not history.loss_curve or not is_main_process():
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


def _update_stopping(stopping, history, module, best_weights):
    """Track improvement after an epoch; return the weights to restore at the end.

    With a validation set, an epoch improves when its score beats the best by
    more than ``tol``, and the best-scoring weights are kept for the end.
    Without, it improves when the training loss falls below the best by more
    than ``tol``. ``n_iter_no_change`` epochs without improvement stop the run.
    """
    loss = history.loss_curve[-1]
    if history.validation_scores is not None:
        score = history.validation_scores[-1]
        improved = history.best_score is None or score > history.best_score + stopping.tol
        if history.best_score is None or score > history.best_score:
            history.best_score = score
            best_weights = _snapshot(module)
    else:
        improved = history.best_loss is None or loss < history.best_loss - stopping.tol
    history.best_loss = loss if history.best_loss is None else min(history.best_loss, loss)
    history.no_improvement = 0 if improved else history.no_improvement + 1
    history.stopped_early = history.no_improvement >= stopping.n_iter_no_change
    return best_weights


def _stop_after_interrupt(module, history, best_weights, description, when):
    history.interrupted = history.finished = True
    if best_weights is not None:
        module.load_state_dict(best_weights)
        kept = "the best weights so far"
    else:
        kept = f"the weights trained so far ({len(history.loss_curve)} full epoch(s))"
    warnings.warn(
        f"{description}: training interrupted by the user (KeyboardInterrupt) {when}, "
        f"keeping {kept}.",
        RuntimeWarning,
        stacklevel=4,
    )


def _check_finite(value, *, description, advice, epoch, batch_number, what):
    value = float(value)
    if not np.isfinite(value):
        raise FloatingPointError(
            f"{description}: the {what} became {value} at epoch {epoch + 1}, batch "
            f"{batch_number + 1}; the fit was stopped and no weights were changed by that "
            f"batch. {advice}".rstrip()
        )


# Optimizer steps between two reads of the deferred finite checks (each read
# waits for the device).
FINITE_CHECK_INTERVAL = 32


def _skips_on_flag(optimizer, device):
    """Whether ``optimizer.step`` honours a ``found_inf`` flag: the fused Adam(W) kernels of CPU and CUDA do."""
    return bool(optimizer.defaults.get("fused")) and device.type in ("cpu", "cuda")


class _StepValues:
    """Each step's loss and gradient norm in an epoch: checked finite before they reach the weights, and summed.

    Reading a value that a GPU computed makes the host wait for the device.
    So where the optimizer can skip its update on a flag that stays on the
    device (``deferred``: the fused kernels' ``found_inf``, the flag
    ``torch.amp.GradScaler`` hands them), losses and norms are kept on the
    device and read together every :data:`FINITE_CHECK_INTERVAL` steps, when
    a caller asks (:meth:`read`, :meth:`mean_loss`) and at the end of each
    epoch. The flag turns on at the first non-finite value and stays on, so
    that step and every later one leave the weights and the optimizer's
    state untouched until the read raises. Otherwise each step is read
    before its update.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    device : torch.device
    check : callable
        ``check(value, epoch=, batch_number=, what=)`` raises on a non-finite value.
    deferred : bool
        Whether to keep the values on the device between reads.
    """

    def __init__(self, optimizer, device, check, deferred):
        self.optimizer = optimizer
        self.check = check
        self.deferred = deferred
        # float32 whatever the default dtype: the fused kernels read found_inf as float.
        self.found_inf = torch.zeros((), dtype=torch.float32, device=device) if deferred else None
        self.start_epoch(0)

    def start_epoch(self, epoch):
        self.epoch = epoch
        self.total_loss, self.total_weight = 0.0, 0.0
        self.pending = []  # (batch_number, loss, norm, weight) not read yet

    def record(self, loss, norm, batch_number, weight):
        """Note one step's loss (a float or a 0-d tensor), gradient norm and weight, before its update."""
        if not self.deferred:
            self._check_and_add([(batch_number, float(loss), float(norm), weight)])
            return
        loss = torch.as_tensor(loss, dtype=torch.float32, device=self.found_inf.device)
        bad = torch.logical_not(torch.isfinite(loss) & torch.isfinite(norm))
        self.found_inf = torch.maximum(self.found_inf, bad.to(torch.float32))
        self.pending.append((batch_number, loss, norm.detach().float(), weight))
        if len(self.pending) >= FINITE_CHECK_INTERVAL:
            self.read()

    def step(self):
        """The optimizer's step, skipped on the device from the first non-finite step on."""
        if not self.deferred:
            self.optimizer.step()
            return
        self.optimizer.found_inf = self.found_inf
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf

    def read(self):
        """Read the steps not read yet (one wait for the device); raise ``FloatingPointError`` at the first non-finite one."""
        if not self.pending:
            return
        on_host = torch.stack([torch.stack([loss, norm]) for _, loss, norm, _ in self.pending]).cpu().tolist()
        steps = [(batch_number, loss, norm, weight) for (batch_number, _, _, weight), (loss, norm) in zip(self.pending, on_host)]
        self._check_and_add(steps)
        self.pending = []  # only once checked: an interrupted read leaves them for the next

    def mean_loss(self):
        """The weighted mean loss of the epoch's steps so far (reads the pending ones)."""
        self.read()
        return self.total_loss / max(self.total_weight, 1e-12)

    def _check_and_add(self, steps):
        for batch_number, loss, norm, weight in steps:
            self.check(loss, epoch=self.epoch, batch_number=batch_number, what="training loss")
            self.check(norm, epoch=self.epoch, batch_number=batch_number, what="gradient norm")
            self.total_loss += loss * weight
            self.total_weight += weight


def _snapshot(module):
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


# -- checkpoints ---------------------------------------------------------------------


def _first_frame_outside_skattn():
    """The ``stacklevel`` that names the caller's own line: the first frame outside this package."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def checkpoint_file(description):
    """The file name of a run's checkpoint: ``checkpoint-attentionencoder-pretraining.pt`` and the like."""
    return "checkpoint-" + "-".join(description.lower().split()) + ".pt"


class Checkpoint:
    """Per-epoch checkpoint of one training run, in a file of ``directory`` named after the run.

    A classifier and the encoder it pretrains keep separate files, so that
    they may share a directory.

    Parameters
    ----------
    directory : str or os.PathLike
    key : str
        Identifies the run (see :func:`checkpoint_key`): loading refuses a
        checkpoint written with another key.
    description : str
        Names the run in error messages.
    """

    def __init__(self, directory, key, description):
        self.directory = directory
        self.key = key
        self.description = description

    @property
    def path(self):
        return os.path.join(os.fspath(self.directory), checkpoint_file(self.description))

    def load(self):
        if not os.path.exists(self.path):
            legacy = os.path.join(os.fspath(self.directory), "checkpoint.pt")
            if os.path.exists(legacy):
                warnings.warn(
                    f"{self.description}: {legacy!r} was written by an earlier skattn, which named every "
                    f"run's checkpoint so; it cannot be resumed, and this fit starts from the beginning.",
                    UserWarning,
                    stacklevel=_first_frame_outside_skattn(),
                )
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise TypeError(f"it holds a {type(state).__name__}")
        except OSError as error:  # a file that is there but cannot be read now: not damaged
            message = f"{self.description}: cannot read the checkpoint {self.path!r}: {error.strerror or error}"
            raise (OSError(error.errno, message) if error.errno else OSError(message)) from None
        except Exception as error:  # torch raises several kinds for a damaged file
            # torch's own message would advise weights_only=False: not for a file that may be anyone's.
            raise ValueError(
                f"{self.description}: the checkpoint {self.path!r} cannot be read: it is damaged or "
                f"not a skattn checkpoint ({type(error).__name__}); delete the file, or set resume=False."
            ) from None
        if state.get("key") != self.key:
            raise ValueError(
                f"{self.description}: the checkpoint in {self.path!r} was written by another fit "
                f"(other data, other parameters, or, with warm_start=True, other starting weights); "
                f"use another checkpoint_dir, delete the file, or set resume=False."
            )
        return state

    def save(self, epoch, module, optimizer, scheduler, rng, history, best_weights):
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
        # Atomic, also where other fits write into the same directory at the same time.
        with atomic_file(self.path) as file:
            torch.save(state, file)


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


def adamw(parameter_groups, learning_rate, device):
    """AdamW over ``parameter_groups`` (as a module's ``parameter_groups`` returns them)."""
    # The fused kernel (one op for all tensors) exists for CPU and CUDA.
    return torch.optim.AdamW(parameter_groups, lr=learning_rate, fused=device.type in ("cpu", "cuda") or None)


def linear_schedule(optimizer, total_steps, warmup_fraction, constant=False):
    """Linear warmup over ``warmup_fraction`` of ``total_steps``, then linear decay to zero.

    ``constant=True`` keeps the learning rate as it is (``partial_fit``).
    """
    warmup_steps = 0 if constant else int(round(warmup_fraction * total_steps))

    def factor(step):
        if constant:
            return 1.0
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


class _Silent:
    """A progress display that shows nothing."""

    def epoch_bar(self, epoch, n_batches):
        return self

    def update(self, loss, tokens, started):
        pass

    def close(self):
        pass

    def epoch_line(self, epoch, history, seconds, tokens):
        pass


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
