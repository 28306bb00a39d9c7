"""A fitted estimator's model card: what it holds and how it was trained (``summary()``)."""

import html
from dataclasses import dataclass, field

from ._versions import library_versions

# The top-level parts of a model's parameters, by the first component of
# their names (after "encoder." in a classifier), in the order shown.
_PARTS = {
    "token_embedding": "token embeddings",
    "position_embedding": "position embeddings",
    "blocks": "transformer blocks",
    "norm": "final layer norm",
    "head": "classification head",
    "wide": "n-gram path",
}


@dataclass(frozen=True)
class ModelSummary:
    """What a fitted skattn estimator holds and how it was trained.

    Returned by ``summary()``; printing it shows the model card, and
    notebooks show it as a table.

    Attributes
    ----------
    estimator : str
        The estimator's class name.
    rows : list of (str, str)
        The card's lines: a name and a value each.
    parameters : dict of str to int
        Number of trainable parameters per part of the model.
    info : dict
        The card's facts as plain Python values (see :meth:`to_dict`).
    """

    estimator: str
    rows: list
    parameters: dict
    info: dict = field(default_factory=dict)

    def to_dict(self):
        """The facts of the card as a dict of plain Python values (JSON-serialisable)."""
        return {"estimator": self.estimator, "parameters": dict(self.parameters), **self.info}

    def __str__(self):
        width = max(len(name) for name, _ in self.rows)
        lines = [self.estimator]
        lines += [f"  {name:<{width}}  {value}" for name, value in self.rows]
        return "\n".join(lines)

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        cells = "".join(
            f"<tr><th style='text-align: left'>{html.escape(name)}</th><td style='text-align: left'>{html.escape(value)}</td></tr>"
            for name, value in self.rows
        )
        return f"<table><caption>{html.escape(self.estimator)}</caption>{cells}</table>"


def summarize(estimator):
    """The :class:`ModelSummary` of a fitted AttentionClassifier or AttentionEncoder."""
    config = estimator.config_
    parameters = parameter_counts(estimator.model_)
    total = sum(parameters.values())
    info = {
        "n_parameters": total,
        "architecture": config.to_dict(),
        # The fitted tokenizer's kind: a pretrained encoder's may differ from the parameter.
        "tokenizer": type(estimator.tokenizer_.model).__name__.lower(),
        "vocabulary_size": estimator.tokenizer_.get_vocab_size(),
        "n_epochs": estimator.n_iter_,
        "n_tokens_seen": estimator.n_tokens_seen_,
        "final_loss": estimator.loss_curve_[-1] if estimator.loss_curve_ else None,
        "validation_scores": estimator.validation_scores_,
        "best_score": estimator.best_score_,
        "fit_time_s": getattr(estimator, "fit_time_", None),
        "device": getattr(estimator, "fit_device_", None),
        "precision": getattr(estimator, "fit_precision_", None),
        "versions": library_versions(),
    }
    rows = []
    if hasattr(estimator, "classes_"):
        classes = [str(c) for c in estimator.classes_]
        info["classes"] = classes
        shown = ", ".join(classes[:10]) + (f", ... ({len(classes) - 10} more)" if len(classes) > 10 else "")
        kind = " labels" if estimator._multilabel else ""
        rows.append(("classes", f"{len(classes)}{kind}: {shown}"))
    rows.append(("parameters", f"{total:,}"))
    rows += [(f"  {part}", f"{count:,}") for part, count in parameters.items()]
    rows.append((
        "encoder",
        f"{config.n_layers} layers, {config.n_heads} heads, d_model {config.d_model}, d_ff {config.d_ff}, "
        f"{config.activation}, {config.pooling} pooling, {config.max_length} tokens per window",
    ))
    rows.append(("vocabulary", f"{info['vocabulary_size']:,} tokens ({info['tokenizer']})"))
    vectorizer = getattr(estimator, "ngram_vectorizer_", None)
    if vectorizer is not None:
        from ._ngrams import fitted_ngram_marks, fitted_ngram_range

        low, high = fitted_ngram_range(vectorizer)
        info["n_ngrams"] = len(vectorizer.vocabulary_)
        info["ngram_range"] = [low, high]
        info["ngram_marks"] = bool(fitted_ngram_marks(vectorizer))
        info["encoder_logit_scale"] = estimator.encoder_logit_scale_
        words = "words and marks" if info["ngram_marks"] else "words"
        rows.append((
            "n-grams",
            f"{info['n_ngrams']:,} ({low}-{high} grams of {words}); encoder's logits weighted {info['encoder_logit_scale']:g}",
        ))
    trained = f"{estimator.n_iter_} epochs, {estimator.n_tokens_seen_:,} tokens"
    if info["fit_time_s"] is not None:
        trained += f", {info['fit_time_s']:.1f} s on {info['device']} in {info['precision']}"
    rows.append(("training", trained))
    if info["final_loss"] is not None:
        rows.append(("final loss", f"{info['final_loss']:.4f}"))
    if estimator.validation_scores_:
        rows.append(("validation score", f"{estimator.validation_scores_[-1]:.4f} (best {estimator.best_score_:.4f})"))
    info["inference_device"], info["inference_precision"] = inference_setting(estimator)
    rows.append(("inference", f"on {info['inference_device']} in {info['inference_precision']}"))
    rows.append(("versions", ", ".join(f"{name} {version}" for name, version in info["versions"].items())))
    return ModelSummary(type(estimator).__name__, rows, parameters, info)


def inference_setting(estimator):
    """The device and precision (``"fp32"``, ``"bf16"`` or ``"int8"``) ``predict`` and ``transform`` run in now."""
    import torch

    from ._devices import available_device, resolve_inference_precision

    device = available_device(estimator.device)  # a model saved on a GPU runs on the CPU without one
    dtype = resolve_inference_precision(estimator.precision, device)
    return str(device), {torch.bfloat16: "bf16", torch.qint8: "int8"}.get(dtype, "fp32")


def parameter_counts(model):
    """Trainable parameters of ``model`` per part (:data:`_PARTS`), parts without any left out."""
    counts = {}
    for name, parameter in model.named_parameters():
        first = name.removeprefix("encoder.").split(".")[0]
        part = _PARTS.get(first, first)
        counts[part] = counts.get(part, 0) + parameter.numel()
    order = list(_PARTS.values())
    return dict(sorted(counts.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))
