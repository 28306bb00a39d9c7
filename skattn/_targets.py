"""Validation of ``y`` for both estimators: classes, unlabeled rows, encoded targets."""

import numpy as np
import scipy.sparse
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d

# scikit-learn's semi-supervised convention: in a numeric y, -1 marks an unlabeled sample.
UNLABELED = -1


class Targets:
    """Validated ``y``: classes, which rows are labeled, and the training targets.

    Build it with :meth:`from_y`.

    Attributes
    ----------
    labels : numpy.ndarray
        ``y`` as given, 1-D or 2-D.
    classes : numpy.ndarray
        Sorted class labels; label column indices if multilabel.
    labeled : numpy.ndarray of bool
        False where a numeric 1-D ``y`` holds ``-1`` (unlabeled).
    encoded : numpy.ndarray
        Class indices (int64), or the indicator matrix as float32 if
        multilabel; meaningful on labeled rows only.
    multilabel : bool
    """

    def __init__(self, labels, classes, labeled, encoded, multilabel):
        self.labels = labels
        self.classes = classes
        self.labeled = labeled
        self.encoded = encoded
        self.multilabel = multilabel

    @classmethod
    def from_y(cls, y, n_documents, *, estimator, classes=None, allow_unlabeled=True, allow_multilabel=True):
        """Validate ``y`` for ``n_documents`` documents.

        Parameters
        ----------
        y : array-like of shape (n_documents,) or (n_documents, n_labels)
            A label-indicator matrix may be sparse.
        n_documents : int
        estimator : str
            Name of the estimator, for error messages.
        classes : numpy.ndarray, default=None
            The set of classes, fixed beforehand (``partial_fit``): every
            label of ``y`` must belong to it.
        allow_unlabeled : bool, default=True
            Whether ``-1`` in a numeric ``y`` marks an unlabeled row; if False,
            or if ``classes`` holds ``-1``, it is a class like any other.
        allow_multilabel : bool, default=True
            Whether a 2-D label-indicator ``y`` is accepted.

        Raises
        ------
        ValueError
            If ``y`` is None, has another length than the documents, mixes
            strings and numbers, holds a missing label (None, NaN, pandas'
            NA), an infinite or continuous value, or has fewer than 2 classes.
        """
        if y is None:
            raise ValueError(f"{estimator} requires y to be passed, but the target y is None.")
        if classes is not None and np.isin(UNLABELED, np.asarray(classes, dtype=object)):
            allow_unlabeled = False  # -1 declared a class is one
        y = y.to_numpy() if hasattr(y, "iloc") else y
        if scipy.sparse.issparse(y):  # a label-indicator matrix, as MLPClassifier takes it
            y = y.toarray()
        if not isinstance(y, np.ndarray) or y.dtype == object:
            _check_one_label_type(y, allow_unlabeled)
        y = np.asarray(y)
        if y.dtype.kind in "fc":
            # Before scikit-learn's target checks, whose cast of NaN to int warns.
            _check_finite(y, allow_unlabeled and y.ndim == 1)
        if y.ndim == 2 and y.shape[1] > 1:
            if not allow_multilabel:
                raise ValueError(f"y must be 1-D class labels, got an array of shape {y.shape}.")
            return cls._multilabel(y, n_documents, classes)
        y = column_or_1d(y, warn=True)
        _check_length(len(y), n_documents)
        check_classification_targets(y)
        labeled = np.ones(len(y), dtype=bool)
        if allow_unlabeled and y.dtype.kind in "iuf":
            labeled = y != UNLABELED
        found = np.unique(y[labeled])
        if classes is None:
            classes = found
            if len(classes) < 2:
                described = "no labeled samples" if len(classes) == 0 else f"only {classes.tolist()[0]!r}"
                note = ""
                if not labeled.all():
                    note = f" ({np.count_nonzero(~labeled)} samples are labeled -1, which marks unlabeled texts)"
                raise ValueError(f"y must hold at least 2 classes; got {described}{note}.")
        else:
            unknown = np.setdiff1d(found, classes)
            if len(unknown):
                raise ValueError(f"y contains labels {unknown.tolist()} that are not in classes={classes.tolist()}.")
        encoded = np.zeros(len(y), dtype=np.int64)
        encoded[labeled] = np.searchsorted(classes, y[labeled])
        return cls(y, classes, labeled, encoded, multilabel=False)

    @classmethod
    def _multilabel(cls, y, n_documents, classes):
        _check_length(len(y), n_documents)
        if type_of_target(y) != "multilabel-indicator":
            raise ValueError(
                f"A 2-D y must be a binary label-indicator matrix (multilabel); got "
                f"{type_of_target(y)!r} targets of shape {y.shape}."
            )
        n_labels = y.shape[1]
        if classes is not None and not np.array_equal(classes, np.arange(n_labels)):
            raise ValueError(f"For multilabel y with {n_labels} columns, classes must be range({n_labels}).")
        encoded = np.asarray(y, dtype=np.float32)
        return cls(y, np.arange(n_labels), np.ones(len(y), dtype=bool), encoded, multilabel=True)


def _check_one_label_type(y, allow_unlabeled):
    """Refuse missing labels, and a y that mixes strings and numbers, which NumPy would turn into strings."""
    values = np.asarray(y, dtype=object)
    if values.ndim != 1:
        return
    missing = next((i for i, value in enumerate(values) if _is_missing(value)), None)
    if missing is not None:
        raise _missing_label_error(f"element {missing}", values[missing], allow_unlabeled)
    _check_not_mixed(values, "y")


def check_classes(classes):
    """Validate ``partial_fit``'s ``classes`` and return them sorted and unique.

    Raises
    ------
    ValueError
        If ``classes`` is not 1-D, holds a missing (None, NaN, pandas' NA)
        or infinite value, or mixes strings and numbers.
    """
    values = np.asarray(classes, dtype=object)
    if values.ndim != 1:
        raise ValueError(f"classes must be a 1-D list of labels, got an array of shape {values.shape}.")
    for i, value in enumerate(values):
        if _is_missing(value) or (isinstance(value, (float, np.floating)) and np.isinf(value)):
            raise ValueError(f"classes holds {value!r} at element {i}; every class must be a finite label.")
    _check_not_mixed(values, "classes")
    return np.unique(np.asarray(classes))


def _check_not_mixed(values, name):
    is_string = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
    if is_string.any() and not is_string.all():
        first_string, first_other = np.argmax(is_string), np.argmin(is_string)
        raise ValueError(
            f"{name} mixes label types (string and number): element {first_string} is "
            f"{values[first_string]!r}, element {first_other} is {values[first_other]!r}. "
            f"Use labels of one type."
        )


def _check_finite(y, allow_unlabeled):
    """Refuse NaN (a missing label) and infinite values in a numeric y."""
    bad = ~np.isfinite(y)
    if not bad.any():
        return
    position = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"element {position[0]}" if len(position) == 1 else f"row {position[0]}, column {position[1]}"
    value = y[position]
    if np.isnan(value):
        raise _missing_label_error(where, value.item(), allow_unlabeled)
    raise ValueError(f"y holds an infinite value ({where} is {value.item()!r}); labels must be finite.")


def _missing_label_error(where, value, allow_unlabeled):
    hint = "Leave those documents out"
    if allow_unlabeled:
        hint += (
            ", or label them -1 in an integer y: unlabeled documents train the tokenizer (and "
            "pretrain `encoder`), not the classification"
        )
    return ValueError(f"y has a missing label ({where} is {value!r}). {hint}.")


def _check_length(n_labels, n_documents):
    if n_labels != n_documents:
        raise ValueError(
            f"X and y have inconsistent lengths: {n_documents} documents and {n_labels} labels."
        )


def _is_missing(value):
    """Whether a label is None, NaN or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value)  # True for NaN only
    except TypeError:
        return True  # pandas.NA, whose comparisons give NA, which refuses bool()
