"""Shared tiny corpora and fitted estimators.

Models here are a few thousand parameters and train in well under a second, so
the suite checks behaviour, not accuracy; accuracy on real data has its own
tests in test_accuracy.py.
"""

import os

import joblib
import pytest
import torch

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


# The variables joblib sets in its process workers (to cpu_count() // n_jobs)
# unless the user's environment sets them already; torch reads these two.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _torch_threads():
    return torch.get_num_threads()


def joblib_worker_threads(n_jobs):
    """torch's intra-op thread count in joblib's process workers, asked before any fit runs there.

    With none of :data:`THREAD_VARIABLES` set, joblib gives each of ``n_jobs``
    workers ``cpu_count() // n_jobs`` threads (at least 1). Where the user set
    them, torch's own rules decide, so the count is read from a worker rather
    than derived from the variables.
    """
    counts = set(joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(_torch_threads)() for _ in range(n_jobs)))
    (count,) = counts
    if not any(name in os.environ for name in THREAD_VARIABLES):
        assert count == max(joblib.cpu_count() // n_jobs, 1)
    return count
