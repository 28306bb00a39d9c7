"""Progress on stderr: a bar per epoch on a terminal, one line per epoch elsewhere, and inference bars."""

import multiprocessing
import sys
import threading
import time

# verbose="auto" shows an inference bar from this many documents on.
AUTO_INFERENCE_DOCUMENTS = 10_000


def interactive():
    """Whether a person is likely watching: stderr is a terminal, in the main thread of a main process.

    joblib's, Dask's and multiprocessing's workers are child processes or
    threads, and inherit the terminal: they stay silent under ``"auto"``.
    """
    return (
        _is_terminal(sys.stderr)
        and multiprocessing.parent_process() is None
        and threading.current_thread() is threading.main_thread()
    )


def resolve_verbose(verbose):
    """``verbose`` as an int: ``"auto"`` is 1 where :func:`interactive`, else 0."""
    if isinstance(verbose, str):  # "auto", the only string the parameter takes
        return 1 if interactive() else 0
    return int(verbose)


def inference_bar(verbose, n_documents, chunk, description):
    """A bar over ``n_documents`` for ``predict`` / ``transform``, or one that shows nothing.

    ``"auto"``: from :data:`AUTO_INFERENCE_DOCUMENTS` documents on, where
    :func:`interactive`. An int ``verbose >= 1``: on a terminal, when the
    documents span more than one ``chunk``. Updated once per chunk.
    """
    if isinstance(verbose, str):
        show = n_documents >= AUTO_INFERENCE_DOCUMENTS and interactive()
    else:
        show = verbose >= 1 and n_documents > chunk and _is_terminal(sys.stderr)
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=n_documents, desc=description, file=sys.stderr, leave=False, dynamic_ncols=True, unit="doc")


class Progress:
    """Progress on stderr: a bar per epoch on a terminal, one line per epoch otherwise.

    ``verbose=0`` prints nothing; ``"auto"`` is 1 when :func:`interactive`,
    else 0; ``verbose=1`` shows a bar (loss, tokens/s,
    ETA) when stderr is a terminal and a line per epoch when it is not (logs,
    CI, notebooks); ``verbose>=2`` always prints the per-epoch lines.
    """

    def __init__(self, verbose, description, max_epochs):
        verbose = resolve_verbose(verbose)
        self.verbose = verbose
        self.description = description
        self.max_epochs = max_epochs
        self.interactive = bool(verbose) and _is_terminal(sys.stderr)

    def epoch_bar(self, epoch, n_batches):
        if not self.interactive:
            return _NoBar()
        from tqdm.auto import tqdm

        bar = tqdm(
            total=n_batches,
            desc=f"{self.description} {epoch + 1}/{self.max_epochs}",
            file=sys.stderr,
            leave=self.verbose < 2,
            dynamic_ncols=True,
            unit="batch",
        )
        return _Bar(bar)

    def epoch_line(self, epoch, history, seconds, tokens):
        if not self.verbose or (self.interactive and self.verbose < 2):
            return
        line = f"[{self.description}] epoch {epoch + 1}/{self.max_epochs}  loss {history.loss_curve[-1]:.4f}"
        if history.validation_scores:
            line += f"  validation score {history.validation_scores[-1]:.4f}"
        line += f"  {tokens / max(seconds, 1e-9):,.0f} tokens/s  {seconds:.1f}s"
        print(line, file=sys.stderr, flush=True)


class _Bar:
    """A tqdm bar over an epoch's batches, with the running loss and tokens/s beside it."""

    # Seconds between two reads of the running loss: each read of a value on a
    # GPU waits for the device.
    POSTFIX_SECONDS = 0.5

    def __init__(self, bar):
        self.bar = bar
        self.postfix_at = None

    def update(self, loss, tokens, started):
        """One more batch; ``loss`` is a callable that returns the running loss as a float."""
        now = time.perf_counter()
        last = self.bar.total is not None and self.bar.n + 1 >= self.bar.total
        if last or self.postfix_at is None or now - self.postfix_at >= self.POSTFIX_SECONDS:
            self.postfix_at = now
            self.bar.set_postfix(loss=f"{loss():.4f}", tokens_per_s=f"{tokens / max(now - started, 1e-9):,.0f}", refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()


class _NoBar:
    def update(self, *args):
        pass

    def close(self):
        pass


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
