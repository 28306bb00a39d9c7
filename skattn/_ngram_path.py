"""The wide path's layer: one weight per n-gram and class, with its own learning rate.

Its features come from ``_ngrams.py``; see there.
"""

from torch import nn


# The n-gram path is a linear model on L2-normalised TF-IDF rows: its weights
# must grow to several units, far beyond where the encoder's learning rate
# takes them in a few epochs.
LEARNING_RATE_SCALE = 50


class NgramPath(nn.Module):
    """One weight per n-gram and output: logits are the TF-IDF-weighted sums of a document's n-grams.

    Parameters
    ----------
    n_features : int
    n_outputs : int
    """

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.bag = nn.EmbeddingBag(n_features, n_outputs, mode="sum")
        nn.init.zeros_(self.bag.weight)

    def forward(self, features):
        """Logits ``(n_documents, n_outputs)`` from :meth:`NgramFeatures.tensors`."""
        indices, offsets, weights = features
        return self.bag(indices, offsets, per_sample_weights=weights.to(self.bag.weight.dtype))

    def export_forward(self, indices, rows, weights, n_documents):
        """Logits as :meth:`forward`, in operations that export to ONNX.

        ``rows`` gives the document of each entry of ``indices`` and
        ``weights`` (instead of offsets), ``n_documents`` the number of rows.
        """
        contributions = self.bag.weight[indices] * weights.unsqueeze(1)  # (n_entries, n_outputs)
        logits = contributions.new_zeros(n_documents, contributions.shape[1])
        return logits.index_add(0, rows, contributions)

    def parameter_groups(self, learning_rate):
        """One AdamW group: ``LEARNING_RATE_SCALE`` times the learning rate, no weight decay."""
        return [{"params": list(self.parameters()), "weight_decay": 0.0, "lr": learning_rate * LEARNING_RATE_SCALE}]


def rename_legacy_weights(state_dict):
    """A classifier's state dict from before the wide path was a module of its own, renamed."""
    return {("wide.bag.weight" if name == "ngrams.weight" else name): tensor for name, tensor in state_dict.items()}
