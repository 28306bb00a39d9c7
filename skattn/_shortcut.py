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
"""

import math

import numpy as np
import torch

# Rounding allowances, relative to the magnitudes of the head's dot products
# and of the logits: a lead must clear the bound by this share of them. With the
# head in float32 (the inference replicas keep it so), float32 rounding or
# TF32 matmuls (10 significant bits) stay far below 2**-7. Under 16-bit
# autocast the head's inputs, weights and outputs and the encoder's scale are
# each rounded by up to 2**-8 (bfloat16), five roundings in the worst case:
# 2**-4 leaves a margin for reduced-precision reductions on GPUs.
FLOAT32_ROUNDING = 2.0**-7
HALF_ROUNDING = 2.0**-4


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


def settle(ngram_logits, bounds, encoder_scale, multilabel, allowance=FLOAT32_ROUNDING):
    """Which documents the n-gram path decides alone, and their decisions.

    Parameters
    ----------
    ngram_logits : numpy.ndarray of shape (n_documents, n_outputs)
    bounds : tuple of numpy.ndarray
        ``(center, spread, magnitude)`` from :func:`encoder_logit_bounds`.
    encoder_scale : float
        The factor on the encoder's logits in the model's sum.
    multilabel : bool
        Whether each output is decided by its own sign (one sigmoid per
        label) rather than by the largest logit.
    allowance : float, default=FLOAT32_ROUNDING
        Rounding allowance, from :func:`rounding_allowance`.

    Returns
    -------
    settled : numpy.ndarray of bool, shape (n_documents,)
    decisions : numpy.ndarray of float32, shape (n_documents, n_outputs)
        On settled rows, scores that decide as the full model does: the
        n-gram logits (same largest class), or for multilabel ``y`` plus or
        minus one per label. Zero on the other rows.
    """
    ngram_logits = np.asarray(ngram_logits, dtype=np.float64)
    center, spread, magnitude = bounds
    decisions = np.zeros(ngram_logits.shape, dtype=np.float32)
    if not (np.isfinite(encoder_scale) and encoder_scale >= 0):
        return np.zeros(len(ngram_logits), dtype=bool), decisions
    if multilabel:
        label_center, label_spread = np.diag(center), np.diag(spread)
        slack = allowance * (encoder_scale * np.diag(magnitude) + np.abs(ngram_logits))
        positive = ngram_logits + encoder_scale * (label_center - label_spread) > slack
        negative = ngram_logits + encoder_scale * (label_center + label_spread) < -slack
        settled = np.all(positive | negative, axis=1)
        decisions[settled] = np.where(positive[settled], 1.0, -1.0)
        return settled, decisions
    rows = np.arange(len(ngram_logits))
    best = ngram_logits.argmax(axis=1)  # (n_documents,)
    best_logit = ngram_logits[rows, best][:, None]
    lead = best_logit - ngram_logits  # (n_documents, n_outputs)
    # Row best, column j: how far the encoder can lift class j above class best.
    reach = encoder_scale * (spread[best] - center[best])
    # Each of the two encoder logits is rounded on its own: the diagonal bounds their sizes.
    head_terms = magnitude[best] + np.diag(magnitude)[best][:, None] + np.diag(magnitude)[None, :]
    slack = allowance * (encoder_scale * head_terms + np.abs(ngram_logits) + np.abs(best_logit))
    clear = lead > reach + slack
    clear[rows, best] = True
    settled = np.all(clear, axis=1)
    decisions[settled] = ngram_logits[settled]
    return settled, decisions
