"""Writing a file so that readers see the old one or the complete new one, never a part."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_file(path):
    """Open a temporary binary file beside ``path``; on success, rename it to ``path``.

    The data is flushed to disk before the rename. If the block raises, the
    temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
    """
    path = os.fspath(path)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".skattn-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
