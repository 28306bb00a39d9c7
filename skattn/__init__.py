"""skattn: scikit-learn estimators over a transformer encoder trained from scratch."""

from ._classifier import AttentionClassifier
from ._encoder import AttentionEncoder
from ._model import EncoderConfig

__version__ = "0.1.0"

__all__ = ["AttentionClassifier", "AttentionEncoder", "EncoderConfig", "__version__"]
