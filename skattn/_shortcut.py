"""Predictions the n-gram path settles alone, without running the encoder.

A classifier with an n-gram path scores a document as ``encoder_scale *
encoder_logits + ngram_logits`` (``_heads.SequenceClassifier``). The encoder's
logits are a linear head over pooled outputs of its final LayerNorm, and a
LayerNorm's output lies in a bounded set whatever its input: ``gamma * z +
beta``, where ``z`` sums to zero and has a norm below ``sqrt(d_model)``. So
how far the encoder can move one class's logit above another's has a bound
that depends on the weights only. Where the n-gram path leads for its best
class by more than that bound against every other class (or, for multilabel
``y``, puts every label's logit beyond the encoder's reach of zero), running
the encoder cannot change what ``predict`` returns, and ``predict`` does not
run it. ``predict_proba`` and ``decision_function`` always run both paths.

This module computes the bounds from a PyTorch model; the rule that applies
them, ``_settle.settle``, imports no PyTorch and serves the ONNX predictor too.
"""

import math

import torch

from ._settle import FLOAT32_ROUNDING, HALF_ROUNDING


def rounding_allowance(autocast_dtype):
    """The relative allowance for a model run under ``autocast_dtype`` (None: as it is)."""
    if autocast_dtype is not None and autocast_dtype != torch.float32:
        return HALF_ROUNDING
    if torch.get_float32_matmul_precision() == "medium":  # float32 matmuls may run in bfloat16
        return HALF_ROUNDING
    return FLOAT32_ROUNDING


def encoder_logit_bounds(model):
    """Where the encoder's logits of ``model`` can lie, from its weights alone.

    For a pair of outputs ``(i, j)`` the quantity bounded is
    ``encoder_logits[i] - encoder_logits[j]``; on the diagonal, ``(i, i)``,
    it is ``encoder_logits[i]`` itself (what a multilabel decision, one
    sigmoid per label, needs). For any document it lies within
    ``center +- spread``.

    Parameters
    ----------
    model : _heads.SequenceClassifier
        Its encoder's ``config.pooling`` is ``"mean"``, ``"cls"`` or ``"max"``.

    Returns
    -------
    center, spread : numpy.ndarray of float64, shape (n_outputs, n_outputs)
    magnitude : numpy.ndarray of float64, same shape
        A bound on the sum of the absolute terms of the same dot products
        (the pooled vector's coordinates times the head's weights, and the
        biases), which scales their rounding error.
    """

    def weights(parameter):  # float64 on the CPU; moved first, as some devices have no float64
        return parameter.detach().cpu().double()

    weight, bias = weights(model.head.weight), weights(model.head.bias)  # (n_outputs, d_model), (n_outputs,)
    gamma, beta = weights(model.encoder.norm.weight), weights(model.encoder.norm.bias)
    n_outputs, d_model = weight.shape
    scaled = weight * gamma  # (n_outputs, d_model)
    diagonal = torch.eye(n_outputs, dtype=torch.bool)
    if model.encoder.config.pooling == "max":
        # Each coordinate of the pooled vector is some token's, and |z_k| <= sqrt(d_model - 1).
        spread = math.sqrt(d_model - 1) * torch.where(
            diagonal, scaled.abs().sum(dim=1).diag(), torch.cdist(scaled, scaled, p=1)
        )
        reach_of_z = spread
    else:
        # Mean and first-token pooling stay in the convex hull of z: zero sum, norm < sqrt(d_model),
        # so only the part of each row orthogonal to the all-ones vector counts. (For many classes
        # cdist goes through a matrix product, off by about 1e-8 of a row's norm in float64: far
        # inside the rounding allowance, which scales with the rows' norms.)
        centred = scaled - scaled.mean(dim=1, keepdim=True)
        spread = math.sqrt(d_model) * torch.where(
            diagonal, centred.norm(dim=1).diag(), torch.cdist(centred, centred, p=2)
        )
        reach_of_z = math.sqrt(d_model) * torch.where(
            diagonal, scaled.norm(dim=1).diag(), torch.cdist(scaled, scaled, p=2)
        )
    offset = weight @ beta + bias  # (n_outputs,): each logit where z = 0
    center = torch.where(diagonal, offset.diag(), offset[:, None] - offset[None, :])
    # |W_i - W_j| . |beta| + |b_i - b_j| is at most the two rows' own sums.
    own = weight.abs() @ beta.abs() + bias.abs()  # (n_outputs,)
    magnitude = reach_of_z + torch.where(diagonal, own.diag(), own[:, None] + own[None, :])
    return center.numpy(), spread.numpy(), magnitude.numpy()
