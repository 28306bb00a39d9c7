"""Train an AttentionClassifier on the shipped Reuters R8 dataset and evaluate it.

Run with ``python examples/train_r8.py``. Prints training progress, then test
accuracy, macro-F1 and timings. It is ``skattn demo``; options
``--random-state``, ``--max-epochs`` and ``-o MODEL`` (to save the model).
"""

import sys

from skattn.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
