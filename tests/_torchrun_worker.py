"""Run by tests/test_scale.py under ``torchrun --nproc_per_node 2``: the edge cases of a data-parallel fit.

Each rank writes what it saw to ``OUTPUT/rankN.json``; the test compares the ranks.
"""

import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from skattn import AttentionClassifier, AttentionEncoder

TINY = dict(vocab_size=200, max_length=32, d_model=16, n_heads=2, n_layers=1, d_ff=32, batch_size=8, random_state=0)
TEXTS = [
    "stocks fell as markets closed lower", "the central bank raised interest rates",
    "the striker scored a late goal", "the team won the cup final",
    "rain and storms expected tomorrow", "sunny skies with a light breeze",
] * 6
LABELS = [0, 0, 1, 1, 2, 2] * 6


def error_of(call):
    """``(type name, message)`` of the exception ``call()`` raises, or None."""
    try:
        call()
    except Exception as error:
        return [type(error).__name__, str(error)]
    return None


def poison_on_rank_1(event):
    """Put a NaN into rank 1's weights after its second step: its next loss is NaN, rank 0's is not."""
    if dist.get_rank() == 1 and event.kind == "step" and event.step == 2:
        with torch.no_grad():
            next(event.module.parameters()).fill_(float("nan"))


def main(output):
    # A rank left waiting fails within a minute instead of torch's default half hour.
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    result = {"rank": rank}

    # Different data on rank 1: every rank raises, none waits.
    labels = LABELS if rank == 0 else LABELS[::-1]
    result["mismatch"] = error_of(lambda: AttentionClassifier(**TINY, max_epochs=1).fit(TEXTS, labels))
    # Data that only rank 1's own checks refuse: rank 0 must not wait for it.
    short = LABELS if rank == 0 else LABELS[:-1]
    result["refused"] = error_of(lambda: AttentionClassifier(**TINY, max_epochs=1).fit(TEXTS, short))
    fitted = AttentionClassifier(**TINY, max_epochs=1).fit(TEXTS, LABELS).set_params(warm_start=True)
    other_classes = LABELS if rank == 0 else [3 if label == 2 else label for label in LABELS]
    result["refused_warm"] = error_of(lambda: fitted.fit(TEXTS, other_classes))
    # Two documents joined by NUL on rank 0, apart on rank 1: not the same data.
    joined = ["\0".join(TEXTS[:2])] + TEXTS[2:] if rank == 0 else TEXTS
    result["joined"] = error_of(lambda: AttentionEncoder(**TINY, max_epochs=1).fit(joined))
    # A stream both ranks started, continued on rank 0 but started afresh on rank 1.
    stream = AttentionClassifier(**TINY).partial_fit(TEXTS, LABELS, classes=[0, 1, 2])
    if rank == 1:
        stream = AttentionClassifier(**TINY)
    result["other_state"] = error_of(lambda: stream.partial_fit(TEXTS, LABELS, classes=[0, 1, 2]))

    # Pretraining with early stopping (a validation score agreed between ranks),
    # checkpoints on rank 0 only, then fine-tuning the pretrained encoder.
    checkpoints = Path(output) / "checkpoints"
    encoder = AttentionEncoder(**TINY, max_epochs=3, early_stopping=True, validation_fraction=0.2,
                               checkpoint_dir=checkpoints)
    encoder.fit(TEXTS)
    result["encoder_scores"] = encoder.validation_scores_
    result["embedding"] = encoder.transform(TEXTS[:3]).round(5).tolist()
    classifier = AttentionClassifier(**TINY, max_epochs=4, encoder=AttentionEncoder(**TINY, max_epochs=1)).fit(TEXTS, LABELS)
    result["proba"] = classifier.predict_proba(TEXTS[:6]).round(5).tolist()
    result["checkpoint_files"] = sorted(p.name for p in checkpoints.iterdir()) if checkpoints.exists() else []

    # Long documents in many windows: batches split into parts by the token budget, the
    # gradients exchanged once per step.
    long_texts = [" ".join([text] * 12) for text in TEXTS]
    chunked = AttentionClassifier(**dict(TINY, max_length=16), long_text="chunk", max_epochs=2).fit(long_texts, LABELS)
    result["chunked_proba"] = chunked.predict_proba(long_texts[:6]).round(5).tolist()

    # A NaN on one rank stops the fit on both, and leaves the estimators as they were.
    poisoned = AttentionClassifier(**TINY, max_epochs=3, callbacks=[poison_on_rank_1])
    result["non_finite"] = error_of(lambda: poisoned.fit(TEXTS, LABELS))
    result["poisoned_fitted"] = hasattr(poisoned, "model_")

    # A classifier whose fit was stopped by a NaN fits again afterwards in the same group.
    result["refit_accuracy"] = AttentionClassifier(**TINY, max_epochs=4).fit(TEXTS, LABELS).score(TEXTS, LABELS)
    (Path(output) / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
