"""Plots of fitted skattn estimators with matplotlib: ``pip install 'skattn[plot]'``.

Each function draws on ``ax`` (a new figure's axes when None) and returns
what it drew on, as scikit-learn's plotting helpers do; save it with
``ax.figure.savefig(path)``.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

try:
    import matplotlib.pyplot as plt
except ImportError as error:
    raise ImportError(
        "skattn.plot needs matplotlib: pip install 'skattn[plot]'."
    ) from error

__all__ = ["plot_attention", "plot_confusion_matrix", "plot_explanation", "plot_learning_curve"]

# Width of a character of a monospace font, as a fraction of its size
# (DejaVu Sans Mono, matplotlib's default monospace font).
_MONOSPACE_ADVANCE = 0.6


def _axes(ax, figsize):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def plot_learning_curve(estimator, *, ax=None):
    """Training loss per epoch and, with ``early_stopping``, the validation score.

    Parameters
    ----------
    estimator : AttentionClassifier or AttentionEncoder
        Fitted.
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
        The loss axes; the validation score, when there is one, is on its
        twin (``ax.right_ax``).
    """
    check_is_fitted(estimator)
    ax = _axes(ax, (6, 4))
    epochs = np.arange(1, len(estimator.loss_curve_) + 1)
    (loss_line,) = ax.plot(epochs, estimator.loss_curve_, marker="o", color="tab:blue", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"{type(estimator).__name__} learning curve")
    lines = [loss_line]
    ax.right_ax = None
    if estimator.validation_scores_:
        right = ax.twinx()
        scores = estimator.validation_scores_
        # Scores belong to the last epochs: an earlier warm-started fit may have had none.
        (score_line,) = right.plot(epochs[-len(scores):], scores, marker="s", color="tab:orange", label="validation score")
        right.set_ylabel("validation score")
        lines.append(score_line)
        ax.right_ax = right
    ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return ax


def plot_attention(estimator, text, *, layer=-1, head=None, ax=None):
    """Heatmap of the attention weights of one layer over one document.

    Parameters
    ----------
    estimator : AttentionClassifier or AttentionEncoder
        Fitted, with at least one layer.
    text : str
        The document (its first window, see ``attention_weights``).
    layer : int, default=-1
        Which layer; negative counts from the last.
    head : int, default=None
        Which head; None averages the heads.
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    attention = estimator.attention_weights([text])[0]
    n_layers, n_heads = attention.weights.shape[:2]
    if n_layers == 0:
        raise ValueError("The model has no attention layer (n_layers=0).")
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"layer={layer} is out of range for a model of {n_layers} layers.")
    if head is not None and not 0 <= head < n_heads:
        raise ValueError(f"head={head} is out of range for a model of {n_heads} heads.")
    matrix = attention.weights[layer].mean(axis=0) if head is None else attention.weights[layer, head]
    n = len(attention.tokens)
    side = min(12, 2 + 0.25 * n)
    ax = _axes(ax, (side + 1, side))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=max(float(matrix.max()), 1e-9))
    # parse_math=False: a "$" in a token is a dollar sign, not the start of a formula.
    ax.set_xticks(range(n), attention.tokens, rotation=90, fontsize=8, parse_math=False)
    ax.set_yticks(range(n), attention.tokens, fontsize=8, parse_math=False)
    ax.set_xlabel("attended token (key)")
    ax.set_ylabel("attending token (query)")
    layer_number = layer % n_layers + 1
    ax.set_title(f"layer {layer_number}/{n_layers}, " + ("mean of heads" if head is None else f"head {head + 1}/{n_heads}"))
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    return ax


def plot_explanation(explanation, *, width=80, ax=None):
    """The document's text, each character shaded by its importance.

    Green pushes towards the explained class, red away from it; the shade is
    :meth:`~skattn.Explanation.character_importance`, scaled to the largest
    magnitude in the document. In a notebook, the explanation itself
    displays the same shading as HTML.

    Parameters
    ----------
    explanation : Explanation
        One item of ``AttentionClassifier.explain``.
    width : int, default=80
        Characters per line; lines break at the last space before it.
    ax : matplotlib.axes.Axes, default=None

    Returns
    -------
    ax : matplotlib.axes.Axes
    """
    shade = explanation.character_importance()
    scale = float(np.abs(shade).max(initial=0.0)) or 1.0
    lines = _wrap(explanation.text, width)
    font_size = 10
    if ax is None:
        inches = width * _MONOSPACE_ADVANCE * font_size / 72
        _, ax = plt.subplots(figsize=(inches + 0.4, 0.9 + 0.22 * max(len(lines), 1)))
        ax.figure.subplots_adjust(left=0.2 / (inches + 0.4), right=1 - 0.2 / (inches + 0.4), top=1 - 0.6 / ax.figure.get_figheight(), bottom=0.05)
    else:
        inches = ax.get_window_extent().width / ax.figure.dpi
        font_size = inches * 72 / (width * _MONOSPACE_ADVANCE)
    colormap = plt.get_cmap("RdYlGn")
    for row, (start, end) in enumerate(lines):
        column = start
        while column < end:
            run_end = column + 1
            while run_end < end and shade[run_end] == shade[column]:
                run_end += 1
            value = shade[column] / scale
            ax.text(
                column - start, row, explanation.text[column:run_end], family="monospace", fontsize=font_size,
                va="top", ha="left", parse_math=False,
                bbox=dict(facecolor=colormap(0.5 + 0.5 * value), edgecolor="none", pad=0.5, alpha=min(1.0, abs(value) + 0.05)),
            )
            column = run_end
    ax.set_xlim(0, width)
    ax.set_ylim(max(len(lines), 1), 0)
    ax.axis("off")
    ax.set_title(
        f"{explanation.target}: encoder {explanation.encoder_share:.0%}, n-grams {explanation.ngram_share:.0%} "
        f"(green for, red against)",
        fontsize=10, loc="left", parse_math=False,
    )
    return ax


def _wrap(text, width):
    """``(start, end)`` of each line of ``text``: breaks at newlines and before ``width`` characters."""
    lines, start = [], 0
    while start < len(text):
        newline = text.find("\n", start, start + width + 1)
        if newline != -1:
            lines.append((start, newline))
            start = newline + 1
            continue
        if len(text) - start <= width:
            lines.append((start, len(text)))
            break
        space = text.rfind(" ", start + 1, start + width + 1)
        end = space + 1 if space != -1 else start + width
        lines.append((start, end))
        start = end
    return lines


def plot_confusion_matrix(estimator, X, y, *, normalize=None, ax=None, **kwargs):
    """Confusion matrix of a fitted classifier on ``(X, y)``, through scikit-learn.

    :meth:`sklearn.metrics.ConfusionMatrixDisplay.from_estimator`, with
    labels turned vertical and values hidden when there are many classes.

    Parameters
    ----------
    estimator : AttentionClassifier
        Fitted, not multilabel.
    X : list of str
    y : array-like of shape (n_samples,)
    normalize : {"true", "pred", "all"}, default=None
        As in :func:`sklearn.metrics.confusion_matrix`.
    ax : matplotlib.axes.Axes, default=None
    **kwargs
        Passed on to ``ConfusionMatrixDisplay.from_estimator``.

    Returns
    -------
    display : sklearn.metrics.ConfusionMatrixDisplay
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    check_is_fitted(estimator)
    if getattr(estimator, "_multilabel", False):
        raise ValueError("plot_confusion_matrix needs a single-label classifier; this one was fitted on multilabel y.")
    n_classes = len(estimator.classes_)
    ax = _axes(ax, (min(14, 3 + 0.45 * n_classes),) * 2)
    options = {"xticks_rotation": "vertical" if n_classes > 6 else "horizontal", "include_values": n_classes <= 20}
    if normalize is not None:
        options["values_format"] = ".2f"
    return ConfusionMatrixDisplay.from_estimator(estimator, X, y, normalize=normalize, ax=ax, **{**options, **kwargs})
