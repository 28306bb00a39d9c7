"""Data-parallel fits inside a process group that the user started (``torchrun``).

skattn never starts or ends a process group. When ``fit`` runs where
:func:`torch.distributed.is_initialized` is true and the group has more than
one process, every process (rank) passes the same ``X`` and ``y``: rank 0 does
the one-off work (the tokenizer, the n-gram vocabulary, the seeds, a resumed
checkpoint) and sends it to the others; each global batch of ``batch_size``
documents is split across the ranks; :class:`~torch.nn.parallel.DistributedDataParallel`
averages the gradients; losses, non-finite checks and validation scores are
agreed between all ranks so that every rank takes the same decisions and none
waits forever on another. Everything here is inert outside such a group.
"""

import contextvars
import hashlib
import os
from contextlib import contextmanager, nullcontext

import numpy as np
import torch


class _Agreement:
    """One fit's input check: ``joined`` once this rank has taken part in the exchange."""

    joined = False


# The input agreement of the fit running in this context, if any (see inputs_agreed).
_agreement = contextvars.ContextVar("skattn_input_agreement", default=None)


@contextmanager
def inputs_agreed():
    """Make an input check that fails on one rank fail the fit on every rank.

    Inside, the first exchange between the ranks must be
    :meth:`Replicas.check_same_inputs` (any other raises ``RuntimeError``).
    A rank whose own validation raises before reaching it joins that
    exchange with its error instead of a digest and then raises it, so that
    the other ranks raise ``ValueError`` rather than wait for it. Inert
    outside a process group.
    """
    replicas = current()
    if replicas is None:
        yield
        return
    agreement = _Agreement()
    token = _agreement.set(agreement)
    try:
        yield
    except Exception as error:
        if not agreement.joined:
            agreement.joined = True
            try:
                replicas.refuse_inputs(error)
            except Exception:  # the other ranks are gone: the input's own error is what matters
                pass
        raise
    finally:
        _agreement.reset(token)


def _check_no_exchange_before_the_input_check():
    agreement = _agreement.get()
    if agreement is not None and not agreement.joined:
        # A rank that fails its own checks joins only the input check: an earlier
        # exchange would be paired with it and leave the ranks out of step.
        raise RuntimeError("skattn: an exchange between ranks ran before the input check of this fit.")


def current():
    """The :class:`Replicas` of the initialised process group, or None outside one (or alone in it)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    if torch.distributed.get_world_size() < 2:
        return None
    return Replicas()


def is_main_process():
    """True except on the ranks other than 0 of an initialised process group."""
    replicas = current()
    return replicas is None or replicas.is_main


def from_main(make):
    """``make()`` run on rank 0 only and its result sent to every rank; plain ``make()`` outside a group."""
    replicas = current()
    return make() if replicas is None else replicas.from_main(make)


class Replicas:
    """The ranks of the current process group, as a fit sees them."""

    def __init__(self):
        self.rank = torch.distributed.get_rank()
        self.world_size = torch.distributed.get_world_size()
        self.backend = torch.distributed.get_backend()
        # NCCL moves CUDA tensors only; gloo moves CPU tensors.
        self._device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    @property
    def is_main(self):
        return self.rank == 0

    def from_main(self, make):
        """Run ``make()`` on rank 0 and return its (picklable) result on every rank.

        An exception raised by ``make`` on rank 0 is raised on every rank, so
        that none waits for a result that will never come.
        """
        _check_no_exchange_before_the_input_check()
        message = [None]
        if self.is_main:
            try:
                message[0] = ("ok", make())
            except Exception as error:  # sent to the other ranks, then raised here too
                message[0] = ("error", error)
        torch.distributed.broadcast_object_list(message, src=0, device=self._device)
        status, value = message[0]
        if status == "error":
            raise value
        return value

    def check_same_inputs(self, *arrays, estimator):
        """Raise ``ValueError`` on every rank unless every rank passed the same ``arrays``."""
        digest = hashlib.sha256()
        for array in arrays:
            if array is None:
                digest.update(b"none")
            elif isinstance(array, list):  # documents
                # Each text's length first: a separator could itself be part of a text.
                digest.update(len(array).to_bytes(8, "little"))
                for text in array:
                    encoded = text.encode("utf-8", "surrogatepass")
                    digest.update(len(encoded).to_bytes(8, "little"))
                    digest.update(encoded)
            else:
                array = np.asarray(array)
                digest.update(repr((array.dtype.str, array.shape)).encode())
                digest.update(np.ascontiguousarray(array).tobytes() if array.dtype != object else repr(array.tolist()).encode())
        agreement = _agreement.get()
        if agreement is not None:
            agreement.joined = True
        digests = self._gather(digest.hexdigest())
        refused = {rank: other[1] for rank, other in enumerate(digests) if isinstance(other, tuple)}
        if refused:
            rank, reason = next(iter(refused.items()))
            raise ValueError(
                f"{estimator}: a fit inside a torch.distributed process group stopped, as rank {rank} "
                f"refused its input ({reason}). Every rank needs the same estimator, X, y and sample_weight."
            )
        differing = [rank for rank, other in enumerate(digests) if other != digests[0]]
        if differing:
            raise ValueError(
                f"{estimator}.fit inside a torch.distributed process group needs the same X, y "
                f"and sample_weight on every rank, and the same fitted state to continue, but rank(s) "
                f"{differing} passed other data or continue another model than rank 0: pass every "
                f"rank the whole training set; skattn splits each batch across the ranks itself."
            )

    def refuse_inputs(self, error):
        """Join the ranks' input check with ``error`` in place of a digest, so that every rank raises."""
        self._gather(("refused", f"{type(error).__name__}: {error}"))

    def _gather(self, value):
        _check_no_exchange_before_the_input_check()
        values = [None] * self.world_size
        torch.distributed.all_gather_object(values, value, group=None)
        return values

    def local_device(self, device):
        """The CUDA device of this rank: ``cuda:LOCAL_RANK`` when ``device`` is CUDA without a chosen index."""
        if device.type != "cuda" or self.backend != "nccl":
            return device
        local_rank = int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))
        return torch.device("cuda", local_rank % torch.cuda.device_count())

    def shard(self, rows):
        """This rank's share of a global batch, and its share of the batch's loss.

        Rows are dealt in turn (the batch is sorted by length, so every rank
        gets documents of similar lengths). The returned scale makes the
        gradient that DistributedDataParallel averages over ranks the mean
        over the whole batch. A rank left without a document (a batch smaller
        than the group) runs the batch's first document with scale 0, so that
        it still joins the gradient exchange.
        """
        local = rows[self.rank :: self.world_size]
        if len(local) == 0:
            return rows[:1], 0.0
        return local, len(local) * self.world_size / len(rows)

    def sum(self, values):
        """Element-wise sum of a list of floats over all ranks."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self._device)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def from_main_value(self, value):
        """Rank 0's float ``value`` on every rank."""
        tensor = torch.tensor([value], dtype=torch.float64, device=self._device)
        torch.distributed.broadcast(tensor, src=0)
        return float(tensor.item())

    def wrap(self, module):
        """``module`` wrapped for synchronised gradients (its forward returns a loss)."""
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=None)


class LossModule(torch.nn.Module):
    """A module whose forward is ``loss_fn(module, batch, rng)``, so that DistributedDataParallel sees the loss."""

    def __init__(self, module, loss_fn):
        super().__init__()
        self.module = module
        self.loss_fn = loss_fn

    def forward(self, batch, rng):
        return self.loss_fn(self.module, batch, rng)


def no_sync(wrapped, last):
    """DistributedDataParallel's ``no_sync`` for every part of a batch but its last."""
    return nullcontext() if last else wrapped.no_sync()
