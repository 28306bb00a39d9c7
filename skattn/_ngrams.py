"""The features of the wide path: TF-IDF word n-grams of whole documents.

Beside the attention encoder, :class:`~skattn.AttentionClassifier` can score a
document with a linear model over TF-IDF-weighted word n-grams of the whole
document (``_ngram_path.NgramPath``, the ``wide`` part of
``_heads.SequenceClassifier``). This module, ``_ngram_counts.py`` and
``_ngram_path.py`` are the only ones that know about n-grams; the first two
import no PyTorch, so that the ONNX predictor (``skattn.onnx``) computes the
same features without it. The fitted vectorizer is a scikit-learn
``TfidfVectorizer``, whose matrices ``_ngram_counts.py`` computes faster; the
word splitting is skattn's, so that scripts written without spaces (Chinese,
Japanese) yield one "word" per character, as the subword tokenizer sees them,
instead of one per sentence.
"""

import functools
import hashlib
import re
import unicodedata

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from ._ngram_counts import fit_tfidf, lookup_of, tfidf_rows

# Largest number of n-gram features kept, the most frequent in the training
# texts: bounds the linear path to MAX_NGRAM_FEATURES * n_classes weights.
MAX_NGRAM_FEATURES = 2**18

# Han, Hiragana and Katakana: one word per character, as the subword
# tokenizer's pre-tokenizer splits them (Python's re has no \p{Han}).
_ISOLATED = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_WORD = re.compile(f"[{_ISOLATED}]|[^\\W{_ISOLATED}]+")
# What the two patterns of :func:`_word_pattern` reduce to on ASCII text, which
# holds no isolated, combining or format character; several times faster there.
_ASCII_WORD = re.compile(r"\w+")
_ASCII_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")
# Where Unicode puts combining marks (Mn, Mc, Me) and format characters (Cf):
# everything outside these ranges is CJK ideographs, Hangul syllables,
# surrogates or private use (tests/test_ngrams.py checks against a full scan).
_COMBINING_SCAN = ((0, 0x3400), (0x4DC0, 0x4E00), (0xA000, 0xAC00), (0xD7A4, 0xD800), (0xF900, 0x20000), (0xE0000, 0xE1000))
_EMOJI_MODIFIERS = (0x1F3FB, 0x1F3FF)  # skin tones (category Sk), which belong to the emoji before them


def _character_class(code_points):
    """A regular-expression character class body for sorted ``code_points``, as ranges."""
    ranges = []
    for point in code_points:
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1][1] = point
        else:
            ranges.append([point, point])
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


@functools.cache
def _word_pattern(marks):
    """The regular expression that finds words, without or with punctuation marks and symbols.

    With ``marks``, combining marks stay with the letters they modify (vowel
    signs of Indic scripts, Thai tones, Arabic harakat); zero-width joiners
    and non-joiners inside a word keep it whole (Persian); a punctuation
    mark, symbol or emoji is a word of its own, with its variation selector,
    skin tone and zero-width-joined emoji; other format characters (soft
    hyphen, zero-width space) are dropped.
    """
    if not marks:
        return _WORD
    combining, formats = [], []
    for start, stop in _COMBINING_SCAN:
        for point in range(start, stop):
            category = unicodedata.category(chr(point))
            if category in ("Mn", "Mc", "Me"):
                combining.append(point)
            elif category == "Cf":
                formats.append(point)
    extend = _character_class(combining + list(range(_EMOJI_MODIFIERS[0], _EMOJI_MODIFIERS[1] + 1)))
    formats = _character_class(formats)
    word = f"[^\\W{_ISOLATED}](?:[^\\W{_ISOLATED}]|[{extend}\u200c\u200d])*"
    isolated = f"[{_ISOLATED}][{extend}]*"
    mark = f"[^\\w\\s{extend}{formats}](?:[{extend}]|\u200d[^\\w\\s{extend}{formats}])*"
    return re.compile(f"{isolated}|{word}|{mark}")


class WordNgrams:
    """Split a document into word n-grams, joined by spaces.

    Texts are NFKC-normalised and optionally lowercased, as by skattn's
    subword tokenizer. A word is a run of letters, digits and underscores,
    except that every Han, Hiragana or Katakana character is a word of its
    own, so that texts written without spaces yield words too; with
    ``marks``, so is every other character but whitespace (punctuation,
    symbols, emoji), else those are dropped. This is plain Python ``re``,
    cheaper than calling the tokenizer's pre-tokenizer once per document.

    Parameters
    ----------
    ngram_range : tuple of (int, int)
        Smallest and largest ``n``.
    lowercase : bool
        Whether to lowercase texts first.
    marks : bool, default=True
        Whether punctuation marks and symbols are words.
    """

    # Analyzers pickled before ``marks`` existed dropped the marks.
    marks = False

    def __init__(self, ngram_range, lowercase, marks=True):
        self.ngram_range = tuple(ngram_range)
        self.lowercase = lowercase
        self.marks = marks

    def words(self, document):
        """The words of ``document``, in order."""
        if document.isascii():  # NFKC leaves ASCII as it is
            text = document.lower() if self.lowercase else document
            return (_ASCII_WORD_OR_MARK if self.marks else _ASCII_WORD).findall(text)
        text = unicodedata.normalize("NFKC", document)
        return _word_pattern(self.marks).findall(text.lower() if self.lowercase else text)

    def __call__(self, document):
        words = self.words(document)
        low, high = self.ngram_range
        grams = list(words) if low == 1 else []
        for n in range(max(low, 2), high + 1):
            grams += map(" ".join, zip(*(words[start:] for start in range(n))))
        return grams


def ngram_spans(document, ngram_range, lowercase, marks):
    """Where each word n-gram of ``document`` occurs, as :class:`WordNgrams` names it.

    Words are found as :class:`WordNgrams` finds them, in the normalised text
    of each whitespace-separated chunk (NFKC never combines across
    whitespace). Where normalising a chunk keeps its length, as for most
    text, each word's span is exact; where it does not (a decomposed accent,
    half-width kana, a ligature), every word of the chunk gets the whole
    chunk's span.

    Returns
    -------
    spans : dict of str to list of (int, int)
        For each n-gram, the ``(start, end)`` character spans of its
        occurrences in ``document``, from the first character of its first
        word to the last of its last word.
    """
    words = []
    for chunk in re.finditer(r"\S+", document):
        text = unicodedata.normalize("NFKC", chunk.group())
        text = text.lower() if lowercase else text
        exact = len(text) == len(chunk.group())
        for match in _word_pattern(marks).finditer(text):
            start, end = (chunk.start() + match.start(), chunk.start() + match.end()) if exact else chunk.span()
            words.append((match.group(), start, end))
    spans = {}
    low, high = ngram_range
    for n in range(low, high + 1):
        for start in range(len(words) - n + 1):
            gram = words[start : start + n]
            spans.setdefault(" ".join(word for word, _, _ in gram), []).append((gram[0][1], gram[-1][2]))
    return spans


# ngram_range="auto": word 1-2 grams, or 1-3 grams of characters for texts written
# without spaces (where a "word" is one Han or Kana character), as character
# 1-3 grams serve Chinese better than 1-2 grams (benchmarks/README.md).
AUTO_WORD_RANGE = (1, 2)
AUTO_CHARACTER_RANGE = (1, 3)
_ISOLATED_CHARACTER = re.compile(f"[{_ISOLATED}]")
AUTO_SAMPLE_DOCUMENTS = 2000


def written_without_spaces(documents):
    """Whether most words of ``documents`` are single Han, Hiragana or Katakana characters.

    Counts the words of an evenly spaced sample of at most
    :data:`AUTO_SAMPLE_DOCUMENTS` documents: true for Chinese or Japanese
    text, false for text whose words are separated by spaces.
    """
    step = max(1, len(documents) // AUTO_SAMPLE_DOCUMENTS)
    n_words = n_characters = 0
    for document in documents[::step]:
        text = unicodedata.normalize("NFKC", document)
        n_words += len(_WORD.findall(text))
        n_characters += len(_ISOLATED_CHARACTER.findall(text))  # each is a word of its own
    return n_characters > n_words / 2


def resolve_ngram_range(ngram_range, documents):
    """``ngram_range`` itself, or for ``"auto"`` the range that suits ``documents``.

    ``"auto"`` gives :data:`AUTO_CHARACTER_RANGE` when the documents are
    :func:`written_without_spaces`, else :data:`AUTO_WORD_RANGE`.
    """
    if ngram_range != "auto":
        return tuple(ngram_range)
    return AUTO_CHARACTER_RANGE if written_without_spaces(documents) else AUTO_WORD_RANGE


def fitted_ngram_range(vectorizer):
    """The ``(min_n, max_n)`` a vectorizer of :func:`fit_ngram_vectorizer` splits documents with."""
    return vectorizer.analyzer.ngram_range


def fitted_ngram_lowercase(vectorizer):
    """Whether a vectorizer of :func:`fit_ngram_vectorizer` lowercases documents before splitting them."""
    return vectorizer.analyzer.lowercase


def fitted_ngram_marks(vectorizer):
    """Whether a vectorizer of :func:`fit_ngram_vectorizer` counts punctuation marks and symbols as words."""
    return vectorizer.analyzer.marks


def fit_ngram_vectorizer(documents, *, ngram_range, lowercase):
    """Fit a TF-IDF vectorizer of word n-grams on ``documents`` and transform them.

    Term frequencies are sublinear (``1 + log(tf)``), rows are L2-normalised,
    and the :data:`MAX_NGRAM_FEATURES` most frequent n-grams are kept (of
    those tied at the cut, the first by name). The vocabulary, idf and rows
    are those of scikit-learn's ``TfidfVectorizer(sublinear_tf=True,
    max_features=MAX_NGRAM_FEATURES, dtype=np.float32)`` with the same
    analyzer, counted with integer arrays instead of one dictionary update
    per n-gram (``_ngram_counts.py``); only the n-grams tied at the cut may
    differ, where scikit-learn's choice follows NumPy's unstable sort.

    Parameters
    ----------
    documents : list of str
    ngram_range : tuple of (int, int) or "auto"
        See :func:`resolve_ngram_range`.
    lowercase : bool

    Returns
    -------
    vectorizer : sklearn.feature_extraction.text.TfidfVectorizer
        Fitted; its ``transform`` gives float32 CSR matrices.
    features : scipy.sparse.csr_matrix of shape (len(documents), n_features)
        The TF-IDF rows of ``documents``, from the same pass over them.
    """
    analyzer = WordNgrams(resolve_ngram_range(ngram_range, documents), lowercase)
    try:
        terms, idf, features = fit_tfidf(analyzer, documents, MAX_NGRAM_FEATURES)
    except ValueError as error:
        if "empty vocabulary" not in str(error):
            raise
        longest = max(len(analyzer.words(document)) for document in documents)
        if longest == 0:
            problem = "The training texts contain no word (only whitespace)"
        else:
            problem = (
                f"No training text has the {analyzer.ngram_range[0]} words that the smallest n-gram of "
                f"ngram_range={analyzer.ngram_range} needs (the longest has {longest})"
            )
        raise ValueError(
            f"{problem}; lower ngram_range's smallest n, or pass ngram_range=None to train without the n-gram path."
        ) from None
    return _vectorizer(analyzer, terms, idf), features


def transform_ngrams(vectorizer, documents):
    """TF-IDF rows of ``documents``: ``vectorizer.transform``, in fewer Python steps.

    Each word of a document is looked up once and its n-grams are found
    with NumPy (``_ngram_counts.NgramLookup``). The result is the same
    matrix (``tests/test_ngrams.py`` checks it), for a vectorizer made by
    :func:`fit_ngram_vectorizer` (sublinear tf, L2-normalised rows).

    Parameters
    ----------
    vectorizer : sklearn.feature_extraction.text.TfidfVectorizer
        Fitted by :func:`fit_ngram_vectorizer`.
    documents : list of str

    Returns
    -------
    features : scipy.sparse.csr_matrix of float32, shape (len(documents), n_features)
    """
    counts = lookup_of(vectorizer).counts(vectorizer.analyzer, documents)
    return tfidf_rows(counts, vectorizer.idf_)


def ngram_vocabulary(vectorizer):
    """The n-grams of a fitted vectorizer in column order, and their inverse document frequencies."""
    terms = [None] * len(vectorizer.vocabulary_)
    for term, column in vectorizer.vocabulary_.items():
        terms[column] = term
    return terms, np.asarray(vectorizer.idf_, dtype=np.float64)


def restore_ngram_vectorizer(terms, idf, *, ngram_range, lowercase, marks):
    """The vectorizer :func:`ngram_vocabulary` describes, ready for :func:`transform_ngrams`."""
    if len(terms) != len(idf) or len(set(terms)) != len(terms):
        raise ValueError("the n-gram vocabulary and its idf do not match.")
    if not 1 <= ngram_range[0] <= ngram_range[1]:
        raise ValueError(f"the n-gram range {tuple(ngram_range)} is not a valid (min_n, max_n).")
    return _vectorizer(WordNgrams(ngram_range, lowercase, marks=marks), terms, idf)


def _vectorizer(analyzer, terms, idf):
    """A fitted ``TfidfVectorizer`` of ``analyzer`` whose column ``j`` is ``terms[j]``."""
    vectorizer = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, dtype=np.float32)
    vectorizer.vocabulary_ = dict(zip(terms, range(len(terms))))
    vectorizer.idf_ = np.asarray(idf, dtype=np.float64)
    lookup_of(vectorizer)  # built with the vectorizer, fitted or loaded, rather than by its first transform
    return vectorizer


class NgramFeatures:
    """TF-IDF rows of documents, in the form the training loop and :class:`NgramPath` read.

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix of shape (n_documents, n_features)
    """

    def __init__(self, matrix):
        self.matrix = matrix

    def __len__(self):
        return self.matrix.shape[0]

    def subset(self, rows):
        return NgramFeatures(self.matrix[rows])

    def tensors(self, rows, to_device):
        """``(indices, offsets, weights)`` of ``rows`` for ``nn.EmbeddingBag``, via ``to_device``."""
        sub = self.matrix[rows]
        arrays = (sub.indices.astype(np.int64), sub.indptr[:-1].astype(np.int64), sub.data.astype(np.float32, copy=False))
        return tuple(to_device(array) for array in arrays)

    def digest(self):
        digest = hashlib.sha256()
        for array in (self.matrix.indptr, self.matrix.indices, self.matrix.data):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()
