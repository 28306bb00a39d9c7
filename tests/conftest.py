"""Shared tiny corpora and fitted estimators.

Models here are a few thousand parameters and train in well under a second, so
the suite checks behaviour, not accuracy; accuracy on real data has its own
tests in test_accuracy.py.
"""

import pytest

from skattn import AttentionClassifier, AttentionEncoder

TINY = dict(
    vocab_size=200,
    max_length=32,
    d_model=16,
    n_heads=2,
    n_layers=1,
    d_ff=32,
    batch_size=8,
    max_epochs=2,
    random_state=0,
)

POSITIVE = ["a good film", "great acting and a great plot", "i loved it", "wonderful and moving"]
NEGATIVE = ["a bad film", "awful acting and a dull plot", "i hated it", "boring and too long"]
TEXTS = (POSITIVE + NEGATIVE) * 3
LABELS = (["pos"] * len(POSITIVE) + ["neg"] * len(NEGATIVE)) * 3

TOPIC_TEXTS = [
    "stocks fell as markets closed lower",
    "the central bank raised interest rates",
    "the striker scored a late goal",
    "the team won the cup final",
    "rain and storms expected tomorrow",
    "sunny skies with a light breeze",
] * 3
TOPIC_LABELS = [0, 0, 1, 1, 2, 2] * 3


@pytest.fixture(scope="module")
def fitted_classifier():
    return AttentionClassifier(**TINY).fit(TOPIC_TEXTS, TOPIC_LABELS)


@pytest.fixture(scope="module")
def fitted_encoder():
    return AttentionEncoder(**TINY).fit(TOPIC_TEXTS)
