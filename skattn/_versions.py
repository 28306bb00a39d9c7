"""The library versions a model was saved with, and the warning when they differ at load."""

import warnings
from importlib.metadata import PackageNotFoundError, version

# The libraries whose changes can change what a saved model computes.
LIBRARIES = ("skattn", "torch", "scikit-learn", "tokenizers")


class InconsistentVersionWarning(UserWarning):
    """A model is loaded under other library versions than it was saved with."""


def library_versions():
    """``{library: version}`` of :data:`LIBRARIES` in this environment."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def warn_if_versions_differ(saved, what):
    """Warn once, naming every library whose saved and current versions differ.

    Parameters
    ----------
    saved : dict
        :func:`library_versions` as recorded when saving.
    what : str
        Names the model in the message.
    """
    current = library_versions()
    differences = [
        f"{name} {saved[name]} (now {current[name]})"
        for name in LIBRARIES
        if name in saved and saved[name] != current[name]
    ]
    if differences:
        warnings.warn(
            f"{what} was saved with {', '.join(differences)}. It may compute different results "
            f"or fail; refit it, or load it where those versions are installed.",
            InconsistentVersionWarning,
            stacklevel=3,
        )
