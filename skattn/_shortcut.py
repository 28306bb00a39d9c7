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

# Rounding allowance, relative to the magnitudes involved: under autocast the
# full model runs its head in bfloat16 (8 significant bits: its inputs, weights,
# each logit and the encoder's scale each rounded by up to 2**-9), so a lead must
# clear the bound by twice the worst case, this share of the head's dot products
# and of the logits.
RELATIVE_ROUNDING = 2.0**-7


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
        A bound on the sum of the absolute terms of the same dot products,
        which scales their rounding error.
    """
    head, norm = model.head, model.encoder.norm
    weight = head.weight.detach().double().cpu()  # (n_outputs, d_model)
    bias = head.bias.detach().double().cpu()
    gamma = norm.weight.detach().double().cpu()
    beta = norm.bias.detach().double().cpu()
    n_outputs, d_model = weight.shape
    center, spread, magnitude = (torch.empty(n_outputs, n_outputs, dtype=torch.float64) for _ in range(3))
    for i in range(n_outputs):
        # Row j: class i's head row minus class j's (class i's alone at j = i).
        rows = weight[i] - weight
        rows[i] = weight[i]
        offsets = bias[i] - bias
        offsets[i] = bias[i]
        scaled = rows * gamma  # (n_outputs, d_model)
        if model.encoder.config.pooling == "max":
            # Each coordinate of the pooled vector is some token's: |z_k| <= sqrt(d_model - 1).
            spread[i] = math.sqrt(d_model - 1) * scaled.abs().sum(dim=1)
        else:
            # Mean and first-token pooling stay in the convex hull of z: zero sum, norm < sqrt(d_model).
            spread[i] = math.sqrt(d_model) * (scaled - scaled.mean(dim=1, keepdim=True)).norm(dim=1)
        center[i] = rows @ beta + offsets
        magnitude[i] = math.sqrt(d_model) * scaled.norm(dim=1) + rows.abs() @ beta.abs() + offsets.abs()
    return center.numpy(), spread.numpy(), magnitude.numpy()


def settle(ngram_logits, bounds, encoder_scale, multilabel):
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
        slack = RELATIVE_ROUNDING * (encoder_scale * np.diag(magnitude) + np.abs(ngram_logits))
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
    slack = RELATIVE_ROUNDING * (encoder_scale * head_terms + np.abs(ngram_logits) + np.abs(best_logit))
    clear = lead > reach + slack
    clear[rows, best] = True
    settled = np.all(clear, axis=1)
    decisions[settled] = ngram_logits[settled]
    return settled, decisions
