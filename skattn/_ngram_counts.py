"""Word n-gram counts of many documents at once, as integer arrays.

scikit-learn's ``CountVectorizer`` builds every n-gram's string, counts it in
a Python dictionary and, with ``max_features``, sorts all the distinct n-grams
by name. Here each word is looked up once and becomes an integer id; an
n-gram of ``n`` words is the id of its first ``n - 1`` words (its prefix)
combined with the id of its last word. Fitting numbers the n-grams of each
length with ``np.unique``; transforming finds them with ``np.searchsorted`` in
tables built once from the vocabulary. Only the n-grams kept get a name.

This module imports no PyTorch, so that the ONNX predictor can use it.
"""

import array
import collections
import itertools
import typing
import weakref

import numpy as np
import scipy.sparse
from sklearn.preprocessing import normalize


class _DocumentWords:
    """The word ids of a list of documents, flattened, and the document of each.

    Parameters
    ----------
    ids : ndarray of int64
        One id per word occurrence, document after document; -1 for a word
        that the lookup does not know.
    lengths : ndarray of int64
        Number of words in each document.
    """

    def __init__(self, ids, lengths):
        self.ids = ids
        self.document_of = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        self.document_end = np.cumsum(lengths)  # one past each document's last word

    @classmethod
    def read(cls, analyzer, documents, word_ids):
        """Split each document into words and map them to ids.

        Parameters
        ----------
        analyzer : skattn._ngrams.WordNgrams
            Its ``words(document)`` splits a document.
        documents : list of str
        word_ids : callable
            ``word_ids(words)`` gives an iterable of the ids of ``words``.

        Returns
        -------
        _DocumentWords
        """
        ids, lengths = array.array("q"), array.array("q")
        for document in documents:
            words = analyzer.words(document)
            ids.extend(word_ids(words))
            lengths.append(len(words))
        return cls(np.array(ids, dtype=np.int64), np.array(lengths, dtype=np.int64))

    def extend(self, starts, prefixes, n):
        """The ``n``-grams that continue the ``n - 1``-grams at ``starts`` by one word.

        Parameters
        ----------
        starts : ndarray of int64
            Where ``n - 1``-grams start in :attr:`ids`.
        prefixes : ndarray of int64
            Their numbers, aligned with ``starts``.
        n : int

        Returns
        -------
        starts, prefixes : ndarray of int64
            Those of ``starts`` and ``prefixes`` whose document has a word
            after the ``n - 1``-gram.
        last : ndarray of int64
            The id of that word.
        """
        inside = starts + (n - 1) < self.document_end[self.document_of[starts]]
        starts, prefixes = starts[inside], prefixes[inside]
        return starts, prefixes, self.ids[starts + (n - 1)]


def _count_matrix(documents, columns, shape):
    """A canonical float32 CSR matrix counting each ``(document, column)`` pair."""
    ones = np.ones(len(documents), dtype=np.int32)  # integer sums stay exact past float32's 2**24
    counts = scipy.sparse.csr_matrix((ones, (documents, columns)), shape=shape)
    counts.sum_duplicates()
    return counts.astype(np.float32)


def tfidf_rows(counts, idf):
    """Sublinear TF-IDF, L2-normalised rows, of a canonical CSR matrix of n-gram counts (changed in place)."""
    np.log(counts.data, out=counts.data)
    counts.data += 1  # sublinear tf: 1 + log(count)
    counts.data *= np.asarray(idf, dtype=np.float64)[counts.indices]  # as scikit-learn: float64 idf, float32 rows
    return normalize(counts, copy=False) if counts.shape[0] else counts


class _Level(typing.NamedTuple):
    """The n-grams of one length ``n`` in a corpus."""

    n: int
    starts: np.ndarray  # where each occurrence starts among the corpus's words
    numbers: np.ndarray  # the number of the n-gram there, from 0 to count - 1
    count: int  # distinct n-grams of this length
    examples: typing.Optional[np.ndarray]  # a start of each n-gram; None for single words, numbered as words


class _NumberedNgrams:
    """Every distinct n-gram of a corpus, numbered across the lengths of ``ngram_range``.

    Parameters
    ----------
    words : _DocumentWords
    names : list of str
        The word of each word id.
    ngram_range : tuple of (int, int)
    """

    def __init__(self, words, names, ngram_range):
        self.words, self.names = words, names
        low, high = ngram_range
        self.levels = []
        starts, numbers = np.arange(len(words.ids), dtype=np.int64), words.ids
        for n in range(1, high + 1):
            if n == 1:
                count, examples = len(names), None
            else:
                starts, prefixes, last = words.extend(starts, numbers, n)
                keys = prefixes * len(names) + last
                distinct, examples, numbers = np.unique(keys, return_index=True, return_inverse=True)
                numbers = numbers.reshape(-1)  # NumPy 2.0 gave the inverse the input's shape
                count, examples = len(distinct), starts[examples]
            if n >= low:
                self.levels.append(_Level(n, starts, numbers, count, examples))
        self.offsets = np.cumsum([0] + [level.count for level in self.levels], dtype=np.int64)

    def __len__(self):
        return int(self.offsets[-1])

    def totals(self):
        """How often each n-gram occurs in the corpus."""
        return np.concatenate([np.bincount(level.numbers, minlength=level.count) for level in self.levels])

    def names_of(self, numbers):
        """The n-grams ``numbers``, as their words joined by spaces."""
        found = [None] * len(numbers)
        level_of = np.searchsorted(self.offsets, numbers, side="right") - 1
        for index, level in enumerate(self.levels):
            mine = np.flatnonzero(level_of == index)
            local = numbers[mine] - self.offsets[index]
            if level.examples is None:
                strings = [self.names[word] for word in local.tolist()]
            else:
                starts = level.examples[local]
                spelled = (map(self.names.__getitem__, self.words.ids[starts + k].tolist()) for k in range(level.n))
                strings = list(map(" ".join(["{}"] * level.n).format, *spelled))
            for position, string in zip(mine.tolist(), strings):
                found[position] = string
        return found

    def occurrences(self, column_of):
        """``(documents, columns)`` of every occurrence of an n-gram whose ``column_of`` is not -1."""
        documents, columns = [], []
        for level, offset in zip(self.levels, self.offsets):
            column = column_of[level.numbers + offset]
            kept = column >= 0
            documents.append(self.words.document_of[level.starts[kept]])
            columns.append(column[kept])
        return np.concatenate(documents), np.concatenate(columns)


def _most_frequent(ngrams, max_features):
    """The numbers and names of the n-grams to keep, sorted by name.

    The ``max_features`` most frequent; of those tied at the cut, the first
    by name.
    """
    totals = ngrams.totals()
    if max_features is not None and len(totals) > max_features:
        cut = np.partition(totals, len(totals) - max_features)[len(totals) - max_features]
        above, tied = np.flatnonzero(totals > cut), np.flatnonzero(totals == cut)
        tied_names = ngrams.names_of(tied)
        chosen = sorted(range(len(tied)), key=tied_names.__getitem__)[: max_features - len(above)]
        kept = np.concatenate([above, tied[chosen]])
        kept_names = ngrams.names_of(above) + [tied_names[position] for position in chosen]
    else:
        kept = np.arange(len(totals))
        kept_names = ngrams.names_of(kept)
    order = sorted(range(len(kept)), key=kept_names.__getitem__)
    return kept[order], [kept_names[position] for position in order]


def fit_tfidf(analyzer, documents, max_features):
    """The n-grams of ``documents`` to keep, their idf and the TF-IDF rows of ``documents``.

    Keeps the ``max_features`` n-grams with the largest total counts; of those
    tied at the cut, the first by name. The idf is scikit-learn's smoothed
    one, ``log((1 + n_documents) / (1 + document_frequency)) + 1``, computed
    in float32 as ``TfidfVectorizer(dtype=np.float32)`` does.

    Parameters
    ----------
    analyzer : skattn._ngrams.WordNgrams
    documents : list of str
    max_features : int or None

    Returns
    -------
    terms : list of str
        The n-grams kept, sorted by name: column ``j`` is ``terms[j]``.
    idf : ndarray of float64, shape (len(terms),)
    features : scipy.sparse.csr_matrix of float32, shape (len(documents), len(terms))

    Raises
    ------
    ValueError
        "empty vocabulary" when ``documents`` have no n-gram of the range.
    """
    word_table = collections.defaultdict()
    word_table.default_factory = word_table.__len__  # a new word gets the next id
    words = _DocumentWords.read(analyzer, documents, lambda found: map(word_table.__getitem__, found))
    ngrams = _NumberedNgrams(words, list(word_table), analyzer.ngram_range)
    if len(ngrams) == 0:
        raise ValueError("empty vocabulary")
    kept, terms = _most_frequent(ngrams, max_features)
    column_of = np.full(len(ngrams), -1, dtype=np.int64)
    column_of[kept] = np.arange(len(kept), dtype=np.int64)
    counts = _count_matrix(*ngrams.occurrences(column_of), (len(documents), len(terms)))
    document_frequency = np.bincount(counts.indices, minlength=len(terms)).astype(np.float32)
    idf = np.log(np.float32(len(documents) + 1) / (document_frequency + np.float32(1))) + np.float32(1)
    idf = idf.astype(np.float64)
    return terms, idf, tfidf_rows(counts, idf)


class NgramLookup:
    """Tables that find the column of each n-gram of a vocabulary from word ids.

    Level 1 numbers the words of the vocabulary's n-grams; level ``k`` holds,
    sorted, the keys ``prefix * n_words + word`` of the ``k``-word prefixes of
    its n-grams, where ``prefix`` is the prefix's position in level ``k - 1``.

    Parameters
    ----------
    vocabulary : dict of str to int
        N-gram (words joined by spaces) to column.
    """

    def __init__(self, vocabulary):
        self.vocabulary, self.size = vocabulary, len(vocabulary)
        terms, columns = list(vocabulary), np.fromiter(vocabulary.values(), dtype=np.int64, count=len(vocabulary))
        # An n-gram's words are joined by single spaces and never contain one.
        flat = " ".join(terms).split(" ") if terms else []
        distinct = list(dict.fromkeys(flat))
        self.word_ids = dict(zip(distinct, range(len(distinct))))
        self.n_words = len(distinct)
        lengths = np.fromiter(map(str.count, terms, itertools.repeat(" ")), dtype=np.int64, count=len(terms)) + 1
        flat = np.fromiter(map(self.word_ids.__getitem__, flat), dtype=np.int64, count=len(flat))
        first = np.cumsum(lengths) - lengths  # where each term's words start in ``flat``
        self.longest = int(lengths.max(initial=0))
        self.keys = [None, None]  # level k's sorted keys; level 1 needs none
        self.columns = [None]  # level k's column of each entry, -1 for a prefix that is not a term itself
        prefixes = flat[first]
        for k in range(1, self.longest + 1):
            if k > 1:
                longer = lengths >= k
                keys = prefixes[longer] * self.n_words + flat[first[longer] + (k - 1)]
                table = np.sort(keys)
                table = table[np.concatenate(([True], table[1:] != table[:-1]))]
                prefixes = np.full(len(terms), -1, dtype=np.int64)
                prefixes[longer] = np.searchsorted(table, keys)
                self.keys.append(table)
            column = np.full(self.n_words if k == 1 else len(self.keys[k]), -1, dtype=np.int64)
            exact = lengths == k
            column[prefixes[exact]] = columns[exact]
            self.columns.append(column)

    def counts(self, analyzer, documents):
        """The n-gram counts of ``documents``.

        Parameters
        ----------
        analyzer : skattn._ngrams.WordNgrams
            Splits the documents; its ``ngram_range`` says which n-grams count.
        documents : list of str

        Returns
        -------
        scipy.sparse.csr_matrix of float32, shape (len(documents), len(vocabulary))
            Canonical: indices sorted, no duplicates.
        """
        words = _DocumentWords.read(
            analyzer, documents, lambda found: map(self.word_ids.get, found, itertools.repeat(-1))
        )
        low, high = analyzer.ngram_range
        rows, columns = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
        known = words.ids >= 0
        starts, prefixes = np.flatnonzero(known), words.ids[known]
        for n in range(1, min(high, self.longest) + 1):
            if n > 1:
                starts, prefixes, last = words.extend(starts, prefixes, n)
                known = last >= 0
                starts, keys = starts[known], prefixes[known] * self.n_words + last[known]
                table = self.keys[n]
                positions = np.minimum(np.searchsorted(table, keys), len(table) - 1)
                found = table[positions] == keys
                starts, prefixes = starts[found], positions[found]
            if n >= low:
                column = self.columns[n][prefixes]
                is_term = column >= 0
                rows.append(words.document_of[starts[is_term]])
                columns.append(column[is_term])
        return _count_matrix(np.concatenate(rows), np.concatenate(columns), (len(documents), self.size))


_LOOKUPS = weakref.WeakKeyDictionary()


def lookup_of(vectorizer):
    """The :class:`NgramLookup` of a fitted vectorizer, built on first use and kept while it lives.

    Rebuilt when ``vectorizer.vocabulary_`` is replaced or changes size; a
    vocabulary edited in place, entries swapped, needs ``vocabulary_`` set
    again to be seen.
    """
    lookup = _LOOKUPS.get(vectorizer)
    vocabulary = vectorizer.vocabulary_
    if lookup is None or lookup.vocabulary is not vocabulary or lookup.size != len(vocabulary):
        lookup = NgramLookup(vocabulary)
        _LOOKUPS[vectorizer] = lookup
    return lookup
