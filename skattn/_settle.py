"""The decision rule of the n-gram shortcut, in NumPy alone.

``_shortcut.py`` bounds how far a classifier's encoder can move its logits;
this module decides, from the n-gram path's logits and those bounds, which
documents the n-gram path settles alone. It imports no PyTorch, so that the
ONNX predictor (``skattn.onnx``) applies the same rule.
"""

import numpy as np

# Rounding allowances, relative to the magnitudes of the head's dot products
# and of the logits: a lead must clear the bound by this share of them. With the
# head in float32 (the inference replicas and ONNX graphs keep it so), float32
# rounding or TF32 matmuls (10 significant bits) stay far below 2**-7. Under
# 16-bit autocast the head's inputs, weights and outputs and the encoder's scale
# are each rounded by up to 2**-8 (bfloat16), five roundings in the worst case:
# 2**-4 leaves a margin for reduced-precision reductions on GPUs.
FLOAT32_ROUNDING = 2.0**-7
HALF_ROUNDING = 2.0**-4


def settle(ngram_logits, bounds, encoder_scale, multilabel, allowance=FLOAT32_ROUNDING):
    """Which documents the n-gram path decides alone, and their decisions.

    Parameters
    ----------
    ngram_logits : numpy.ndarray of shape (n_documents, n_outputs)
    bounds : tuple of numpy.ndarray
        ``(center, spread, magnitude)`` from ``_shortcut.encoder_logit_bounds``.
    encoder_scale : float
        The factor on the encoder's logits in the model's sum.
    multilabel : bool
        Whether each output is decided by its own sign (one sigmoid per
        label) rather than by the largest logit.
    allowance : float, default=FLOAT32_ROUNDING
        Rounding allowance: :data:`FLOAT32_ROUNDING` where the head runs in
        float32, else ``_shortcut.rounding_allowance`` gives it.

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
