"""What a ``callbacks`` function receives during training, and the check of the parameter."""

from dataclasses import dataclass

import torch
from sklearn.utils._param_validation import InvalidParameterError


@dataclass(frozen=True)
class TrainingEvent:
    """One moment of training, passed to each function of an estimator's ``callbacks``.

    A callback is called as ``callback(event)`` after every optimizer step
    (``kind == "step"``) and after every completed epoch (``kind ==
    "epoch"``), in the order of the list. It may record anything it reads;
    it should not change ``module``. Raising stops the fit:
    ``KeyboardInterrupt`` stops it as Ctrl-C does (the model trained so far
    is kept), any other exception makes ``fit`` fail with it and leaves the
    estimator as it was before the call.

    Attributes
    ----------
    kind : {"step", "epoch"}
        What just ended.
    epoch : int
        Epoch number, from 1, within this call to ``fit`` (a resumed fit
        goes on counting from its checkpoint's epochs).
    step : int
        Optimizer step within the epoch, from 1; for an epoch event, the
        number of steps the epoch took.
    loss : float
        The step's training loss, or the epoch's mean loss.
    tokens : int
        Non-padding tokens the step (or the whole epoch) trained on.
    seconds : float
        Wall time since the epoch began.
    batch_shapes : tuple of (int, int)
        ``(windows, width)`` of each padded batch of token ids the step ran
        forward and backward (more than one when a batch of long documents
        is split to bound memory); empty for an epoch event.
    validation_score : float or None
        The epoch's validation score when ``early_stopping``, else None.
    module : torch.nn.Module
        The model being trained, in training mode.
    """

    kind: str
    epoch: int
    step: int
    loss: float
    tokens: int
    seconds: float
    batch_shapes: tuple
    validation_score: float
    module: torch.nn.Module


def check_callbacks(callbacks, estimator_name):
    """Raise InvalidParameterError unless ``callbacks`` is None or a list of callables."""
    if callbacks is None:
        return
    for position, callback in enumerate(callbacks):
        if not callable(callback):
            raise InvalidParameterError(
                f"The 'callbacks' parameter of {estimator_name} must be None or a list of "
                f"callables; callbacks[{position}] is {callback!r}, which is not callable."
            )
