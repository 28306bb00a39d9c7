"""Why a fitted model decided: token and n-gram importances, and attention weights.

:meth:`AttentionClassifier.explain` and the estimators' ``attention_weights``
call the functions here. Each document is tokenized again with its character
offsets and run through the fitted model one document at a time, in float32,
outside the inference fast paths: explanations are for reading a few
documents, not for throughput.

Scores are in logit units, relative to the mean over classes (softmax does
not change when every class gains the same amount), so that a token or
n-gram that raises all classes alike counts for nothing. With multilabel
targets each label has a sigmoid of its own, and its logit is used as it is.
"""

import html
from dataclasses import dataclass

import numpy as np
import torch

from ._ngrams import fitted_ngram_range, ngram_spans, transform_ngrams
from ._text import CLS, CLS_ID, PAD_ID, SEP, SEP_ID, read_as_text, window_starts

METHODS = ("gradient", "rollout")

# Points on the path of integrated gradients. A trained encoder's score can
# change sharply along the path, so the importances' sum is only roughly the
# change of the score; their ranking settles with far fewer points.
INTEGRATION_STEPS = 32
# Tokens run forward and backward at a time when integrating gradients.
PASS_TOKENS = 2**16


@dataclass(frozen=True, eq=False)
class Explanation:
    """Why an :class:`~skattn.AttentionClassifier` gave one document its score for one class.

    Returned by :meth:`AttentionClassifier.explain`. Positive importances
    push the document towards ``target``, negative ones away from it.

    Attributes
    ----------
    text : str
        The document.
    target : object
        The class explained (by default the predicted one).
    method : {"gradient", "rollout"}
        How ``token_importance`` was computed.
    tokens : list of str
        The tokens the encoder read, as the tokenizer split them (without
        ``[CLS]`` and ``[SEP]``; a truncated document's first ``max_length - 2``).
    token_spans : list of (int, int)
        The ``(start, end)`` characters of ``text`` each token comes from.
    token_importance : numpy.ndarray of shape (n_tokens,)
        With ``method="gradient"``: gradient times input, integrated
        (integrated gradients, Sundararajan et al., 2017): the dot product
        of each token's embedding with the gradient of the encoder path's
        score, averaged along the straight path from no token content (the
        position embeddings, ``[CLS]`` and ``[SEP]`` alone) to the document.
        Their sum approximates ``encoder_score - encoder_baseline``. Plain
        gradient times input would add up to about nothing: the encoder's
        layer norms make its output blind to the scale of its input.
        With ``method="rollout"``: attention rollout (Abnar and Zuidema,
        2020), the share of the pooled vector that flows from each token
        through the attention layers, non-negative and summing to 1; it
        does not depend on ``target``.
    ngrams : list of str
        The document's n-grams that the n-gram path knows, empty without
        that path.
    ngram_spans : list of list of (int, int)
        Where each n-gram occurs in ``text``.
    ngram_importance : numpy.ndarray of shape (n_ngrams,)
        Each n-gram's TF-IDF value times its weight for ``target``: these
        add up to ``ngram_score`` exactly.
    encoder_score : float
        The encoder path's part of the score of ``target``.
    ngram_score : float
        The n-gram path's part (0.0 without that path). The document's score
        for ``target`` is ``encoder_score + ngram_score``.
    encoder_baseline : float
        The encoder path's score for ``target`` with no token content (every
        token embedding but ``[CLS]`` and ``[SEP]`` zeroed): where the
        integration path of ``method="gradient"`` starts.
    """

    text: str
    target: object
    method: str
    tokens: list
    token_spans: list
    token_importance: np.ndarray
    ngrams: list
    ngram_spans: list
    ngram_importance: np.ndarray
    encoder_score: float
    ngram_score: float
    encoder_baseline: float

    @property
    def encoder_share(self):
        """float: Share of the decision the encoder carried, ``|encoder| / (|encoder| + |n-grams|)``."""
        total = abs(self.encoder_score) + abs(self.ngram_score)
        return abs(self.encoder_score) / total if total else 0.0

    @property
    def ngram_share(self):
        """float: Share of the decision the n-gram path carried; ``1 - encoder_share`` when either is non-zero."""
        total = abs(self.encoder_score) + abs(self.ngram_score)
        return abs(self.ngram_score) / total if total else 0.0

    def top(self, n=10, path=None):
        """The ``n`` features that pushed hardest towards ``target``.

        Parameters
        ----------
        n : int, default=10
        path : {"encoder", "ngram"}, default=None
            Only tokens, or only n-grams; None ranks both together.

        Returns
        -------
        features : list of (str, float, str)
            ``(feature, importance, path)``, by decreasing importance.
        """
        rows = self._rows(path)
        rows.sort(key=lambda row: -row[2])
        return [(feature, importance, part) for part, feature, importance, _ in rows][:n]

    def to_frame(self):
        """All tokens and n-grams as a :class:`pandas.DataFrame`, by decreasing importance.

        Columns: ``path`` ("encoder" or "ngram"), ``feature``, ``importance``
        and ``spans`` (a list of ``(start, end)``). Needs pandas.
        """
        import pandas as pd

        rows = self._rows(None)
        frame = pd.DataFrame(rows, columns=["path", "feature", "importance", "spans"])
        return frame.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)

    def character_importance(self):
        """Importance of each character of ``text``, for shading it.

        Each character gets the importance of the token it belongs to, plus,
        for each n-gram occurrence that covers it, the n-gram's importance
        divided by its number of occurrences.

        Returns
        -------
        importance : numpy.ndarray of shape (len(text),)
        """
        shade = np.zeros(len(self.text))
        for (start, end), value in zip(self.token_spans, self.token_importance):
            shade[start:end] += value
        for spans, value in zip(self.ngram_spans, self.ngram_importance):
            for start, end in spans:
                shade[start:end] += value / len(spans)
        return shade

    def _rows(self, path):
        rows = []
        if path in (None, "encoder"):
            rows += [("encoder", token, float(value), [span]) for token, value, span in zip(self.tokens, self.token_importance, self.token_spans)]
        if path in (None, "ngram"):
            rows += [("ngram", gram, float(value), list(spans)) for gram, value, spans in zip(self.ngrams, self.ngram_importance, self.ngram_spans)]
        if path not in (None, "encoder", "ngram"):
            raise ValueError(f"path must be 'encoder', 'ngram' or None; got {path!r}.")
        return rows

    def _repr_html_(self):
        shade = self.character_importance()
        scale = np.abs(shade).max(initial=0.0) or 1.0
        pieces, start = [], 0
        # Runs of characters with the same shade become one <span>.
        for end in range(1, len(self.text) + 1):
            if end == len(self.text) or shade[end] != shade[start]:
                alpha = min(1.0, abs(shade[start]) / scale)
                color = "0, 128, 0" if shade[start] > 0 else "200, 0, 0"
                piece = html.escape(self.text[start:end])
                pieces.append(f'<span style="background: rgba({color}, {alpha:.2f})">{piece}</span>' if alpha > 0 else piece)
                start = end
        header = (
            f"<b>{html.escape(str(self.target))}</b>: encoder {self.encoder_share:.0%} "
            f"({self.encoder_score:+.2f}), n-grams {self.ngram_share:.0%} ({self.ngram_score:+.2f}); "
            f"green for, red against"
        )
        return f"<div>{header}<br><span style='white-space: pre-wrap'>{''.join(pieces)}</span></div>"


@dataclass(frozen=True, eq=False)
class AttentionWeights:
    """The attention weights of every layer and head of the encoder, over one document.

    Returned by the estimators' ``attention_weights``.

    Attributes
    ----------
    text : str
    tokens : list of str
        The tokens of the document's first window, ``[CLS]`` and ``[SEP]``
        included: what ``long_text="truncate"`` reads.
    token_spans : list of (int, int)
        Their characters in ``text``; ``(0, 0)`` for ``[CLS]`` and ``[SEP]``.
    weights : numpy.ndarray of shape (n_layers, n_heads, n_tokens, n_tokens)
        ``weights[layer, head, i, j]``: how much token ``i`` attends to token
        ``j``; each row sums to 1. Of shape ``(0, 0, n_tokens, n_tokens)``
        for a model without layers.
    """

    text: str
    tokens: list
    token_spans: list
    weights: np.ndarray


# -- computing them -------------------------------------------------------------------


def explain_documents(estimator, documents, targets, method):
    """One :class:`Explanation` per document, of the class index in ``targets``.

    Parameters
    ----------
    estimator : AttentionClassifier
        Fitted.
    documents : list of str
    targets : numpy.ndarray of int, shape (len(documents),)
        Index in ``classes_`` of the class to explain for each document.
    method : {"gradient", "rollout"}
    """
    model = estimator.model_
    multilabel = estimator._multilabel
    vocabulary = None
    explanations = []
    for document, target in zip(documents, targets):
        tokens = _Tokens(estimator, document)
        encoder_score, encoder_baseline, token_importance = _encoder_part(model, tokens, int(target), multilabel, method)
        grams, spans, ngram_importance = [], [], np.zeros(0)
        if estimator.ngram_vectorizer_ is not None:
            if vocabulary is None:
                vocabulary = {column: term for term, column in estimator.ngram_vectorizer_.vocabulary_.items()}
            grams, spans, ngram_importance = _ngram_part(estimator, model, document, int(target), multilabel, vocabulary)
        explanations.append(
            Explanation(
                text=document,
                target=_python_scalar(estimator.classes_[target]),
                method=method,
                tokens=tokens.tokens,
                token_spans=tokens.spans,
                token_importance=token_importance,
                ngrams=grams,
                ngram_spans=spans,
                ngram_importance=ngram_importance,
                encoder_score=encoder_score,
                encoder_baseline=encoder_baseline,
                ngram_score=float(ngram_importance.sum()),
            )
        )
    return explanations


def document_attention(estimator, documents):
    """One :class:`AttentionWeights` per document, over its first window."""
    encoder = text_encoder(estimator.model_)
    results = []
    for document in documents:
        tokens = _Tokens(estimator, document, first_window_only=True)
        ids = tokens.window_ids(next(encoder.parameters()).device)  # (1, n_tokens)
        record = []
        with torch.inference_mode():
            encoder(ids, record=record)
        weights = torch.stack([layer[0] for layer in record]) if record else torch.zeros(0, 0, ids.shape[1], ids.shape[1])
        results.append(
            AttentionWeights(
                text=document,
                tokens=[CLS, *tokens.tokens, SEP],
                token_spans=[(0, 0), *tokens.spans, (0, 0)],
                weights=weights.float().cpu().numpy(),
            )
        )
    return results


def _python_scalar(value):
    """A NumPy scalar as the Python value it holds (``np.str_("a")`` as ``"a"``); other values as they are."""
    return value.item() if isinstance(value, np.generic) else value


def text_encoder(model):
    """The :class:`~skattn._model.TextEncoder` of a fitted estimator's ``model_``."""
    return getattr(model, "encoder", model)


class _Tokens:
    """A document's tokens as the fitted model reads them, and its windows of ids."""

    def __init__(self, estimator, document, first_window_only=False):
        encoding = read_as_text(estimator.tokenizer_).encode(document, add_special_tokens=False)
        self.content = estimator.config_.max_length - 2
        chunk = estimator._long_text() == "chunk" and not first_window_only
        n_read = len(encoding.ids) if chunk else min(len(encoding.ids), self.content)
        self.ids = encoding.ids[:n_read]
        self.tokens = encoding.tokens[:n_read]
        self.spans = [tuple(span) for span in encoding.offsets[:n_read]]
        self.starts = window_starts(n_read, self.content)

    def window_ids(self, device):
        """The windows, ``[CLS]`` and ``[SEP]`` around each, padded: ``(n_windows, width)``."""
        windows = [[CLS_ID, *self.ids[start : start + self.content], SEP_ID] for start in self.starts]
        width = max(map(len, windows))
        padded = [window + [PAD_ID] * (width - len(window)) for window in windows]
        return torch.tensor(padded, dtype=torch.long, device=device)

    def to_tokens(self, per_position):
        """Values per window position ``(n_windows, width)`` summed into one per token."""
        values = np.zeros(len(self.ids))
        for window, start in enumerate(self.starts):
            n = min(self.content, len(self.ids) - start)
            values[start : start + n] += per_position[window, 1 : n + 1]
        return values


def _encoder_part(model, tokens, target, multilabel, method):
    """The encoder path's score for ``target``, its score with no token content, and each token's importance."""
    encoder = model.encoder
    ids = tokens.window_ids(model.encoder_scale.device)  # (n_windows, width)
    positions = encoder.position_embedding(torch.arange(ids.shape[1], device=ids.device))  # (width, d_model)

    def scores(embeddings, n_documents, record=None):
        """The encoder path's score of ``target`` for each of ``n_documents`` copies of the windows."""
        owner = torch.arange(n_documents, device=ids.device).repeat_interleave(len(ids))
        repeated = ids.repeat(n_documents, 1)
        pooled = encoder.embed(repeated, owner, n_documents, embeddings=embeddings, record=record)
        logits = model.head(pooled.to(model.head.weight.dtype)).float()  # (n_documents, n_outputs)
        relative = logits if multilabel else logits - logits.mean(dim=1, keepdim=True)
        scale = model.encoder_scale.float() if model.wide is not None else 1.0
        return scale * relative[:, target]

    with torch.no_grad():
        token_embeddings = encoder.token_embedding(ids)  # (n_windows, width, d_model)
        content = (ids != PAD_ID) & (ids != CLS_ID) & (ids != SEP_ID)
        content_embeddings = token_embeddings * content.unsqueeze(-1)  # (n_windows, width, d_model)
        fixed = token_embeddings - content_embeddings
        record = [] if method == "rollout" else None
        score = float(scores(token_embeddings + positions, 1, record)[0])
        baseline = float(scores(fixed + positions, 1)[0])
    if method == "rollout":
        importance = tokens.to_tokens(_rollout(record, ids != PAD_ID, encoder.config.pooling))
        return score, baseline, importance / importance.sum() if importance.sum() > 0 else importance
    # Integrated gradients: the gradient at points from no token content (the
    # position embeddings, [CLS] and [SEP] alone) to the document, midpoint rule.
    alphas = (torch.arange(INTEGRATION_STEPS, device=ids.device, dtype=torch.float32) + 0.5) / INTEGRATION_STEPS
    # Steps run in passes of at most PASS_TOKENS tokens, bounding memory for long documents.
    steps_per_pass = max(1, PASS_TOKENS // ids.numel())
    gradient = torch.zeros_like(token_embeddings)
    for first in range(0, INTEGRATION_STEPS, steps_per_pass):
        part = alphas[first : first + steps_per_pass]
        with torch.enable_grad():
            scaled = (part[:, None, None, None] * content_embeddings + fixed).flatten(0, 1).requires_grad_()
            path_scores = scores(scaled + positions, len(part))
            (step_gradients,) = torch.autograd.grad(path_scores.sum(), scaled)
        gradient += step_gradients.view(len(part), *token_embeddings.shape).sum(dim=0)
    per_position = (gradient / INTEGRATION_STEPS * content_embeddings).sum(-1)  # (n_windows, width)
    return score, baseline, tokens.to_tokens(per_position.float().cpu().numpy())


def _rollout(record, keep, pooling):
    """Attention rollout per window position ``(n_windows, width)``: what the pooled vector draws from each token.

    Each layer's weights are averaged over heads, the residual connection is
    added as the identity and rows are renormalised; the layers' matrices
    are multiplied in order. The pooled vector's row is the ``[CLS]`` row,
    or the mean of the real tokens' rows for mean and max pooling.
    """
    n_windows, width = keep.shape
    flow = torch.eye(width, device=keep.device).expand(n_windows, width, width)
    for weights in record:  # (n_windows, heads, width, width)
        layer = 0.5 * weights.float().mean(dim=1) + 0.5 * torch.eye(width, device=keep.device)
        flow = (layer / layer.sum(dim=-1, keepdim=True)) @ flow
    if pooling == "cls":
        drawn = flow[:, 0]
    else:
        rows = keep.float().unsqueeze(-1)  # (n_windows, width, 1)
        drawn = (flow * rows).sum(dim=1) / rows.sum(dim=1).clamp(min=1)
    return (drawn * keep).detach().cpu().numpy()


def _ngram_part(estimator, model, document, target, multilabel, vocabulary):
    """The n-grams of ``document`` the path knows, their spans and their contributions to ``target``."""
    row = transform_ngrams(estimator.ngram_vectorizer_, [document])
    weights = model.wide.bag.weight.detach().float().cpu().numpy()[row.indices]  # (n_ngrams, n_outputs)
    if not multilabel:
        weights = weights - weights.mean(axis=1, keepdims=True)
    importance = row.data.astype(np.float64) * weights[:, target]
    grams = [vocabulary[column] for column in row.indices]
    analyzer = estimator.ngram_vectorizer_.analyzer
    where = ngram_spans(document, fitted_ngram_range(estimator.ngram_vectorizer_), analyzer.lowercase, analyzer.marks)
    return grams, [where.get(gram, []) for gram in grams], importance
