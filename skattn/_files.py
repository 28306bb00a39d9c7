"""Writing a file so that readers see the old one or the complete new one, never a part."""

import contextlib
import errno
import os
import re
import secrets
import stat

# Paths that name one of the process's open descriptors (Linux, macOS, the BSDs).
_DESCRIPTOR = re.compile(r"^/dev/(stdin|stdout|stderr|fd/\d+)$|^/proc/[^/]+/fd/\d+$")


def names_a_directory(path):
    """Whether ``path`` (a str) ends in a separator: it then names a directory, never a file."""
    return path.endswith(os.sep) or bool(os.altsep and path.endswith(os.altsep))


@contextlib.contextmanager
def atomic_file(path):
    """Open a temporary binary file beside ``path``; on success, rename it to ``path``.

    The data is flushed to disk before the rename. If the block raises, the
    temporary file is removed and ``path`` is left as it was. The new file
    gets the permissions of the file it replaces, or those ``open`` would
    give (the process's umask applied). A symbolic link is followed, so the
    link stays and its target is replaced. Where ``path`` is a device or a
    pipe or a descriptor (``/dev/null``, ``/dev/stdout``), which cannot be
    replaced, the data is appended to it directly. An existing file that
    may not be written is refused, as ``open`` would refuse it.

    Parameters
    ----------
    path : str, bytes or os.PathLike

    Raises
    ------
    OSError
        As ``open`` would raise it, naming ``path``: the folder is missing
        or read-only, ``path`` is a directory or empty, the disk is full.
    """
    path = os.fsdecode(os.fspath(path))
    if not path:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    if names_a_directory(path):  # as open() refuses it
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    try:
        mode = os.stat(path).st_mode  # of what a symbolic link points to
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise _naming(error, path) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if _written_in_place(path, mode):
        with _reported_as(path):
            file = open(path, "ab")
        with file:
            yield file
        return
    target = os.path.realpath(path)
    if mode is not None and not os.access(target, os.W_OK):  # as open() would refuse it
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
    with _reported_as(path):
        handle, temporary = _create_beside(target)
    try:
        with os.fdopen(handle, "wb") as file:
            if mode is not None:  # the replaced file's permissions, not open's
                os.chmod(temporary, stat.S_IMODE(mode))
            yield file
            file.flush()
            os.fsync(file.fileno())
        with _reported_as(path):
            os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):  # never hide the error that got here
            os.unlink(temporary)
        raise


def _written_in_place(path, mode):
    """Whether ``path`` cannot be replaced by a rename: a device, a pipe, or a descriptor such as ``/dev/stdout``."""
    if mode is not None and not stat.S_ISREG(mode):
        return True
    # /dev/stdout redirected to a file resolves to that file, which must be written through, not replaced.
    return _DESCRIPTOR.match(os.path.abspath(path)) is not None


def _create_beside(target):
    """A new file in ``target``'s folder, created like ``open`` would (umask applied): (fd, path)."""
    folder = os.path.dirname(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = os.path.join(folder, f".skattn-{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue


@contextlib.contextmanager
def _reported_as(path):
    """Re-raise an OSError so that it names ``path``, not a temporary file beside it."""
    try:
        yield
    except OSError as error:
        raise _naming(error, path) from None


def _naming(error, path):
    if error.errno is None:
        return error
    return type(error)(error.errno, error.strerror or os.strerror(error.errno), path)
