"""Text side of skattn: document checks, tokenizer training and batch encoding.

Nothing here knows about the model; everything returns plain Python or NumPy.
"""

import functools
import json
import numbers
import re
from collections import Counter

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
CONTINUATION = "##"

# Scripts written without spaces between words. Han and kana are split into single
# characters (as BERT does for Chinese); Thai, Lao, Khmer and Myanmar runs are left
# whole so the subword model learns their units from the data.
_ISOLATED_SCRIPTS = r"[\p{Han}\p{Hiragana}\p{Katakana}]"
_WORDPIECE_MAX_CHARS = 1000


def check_documents(X, *, name="X", index=None):
    """Validate a collection of documents and return it as a list of str.

    Parameters
    ----------
    X : list, tuple, numpy array, pandas Series or single-column DataFrame of str
        The documents. Empty strings are valid documents.
    name : str, default="X"
        Name used in error messages.
    index : sequence, default=None
        A label for each document (a pandas index), named in error messages
        instead of its position.

    Returns
    -------
    documents : list of str

    Raises
    ------
    TypeError
        If ``X`` is a single string or bytes, not an iterable of documents, or
        holds an element that is not a str (None, NaN, a number, bytes...).
    ValueError
        If ``X`` is empty or is 2-D with more than one column, or a document
        holds a lone surrogate code point (not valid Unicode text).
    """
    if isinstance(X, (str, bytes)):
        raise TypeError(
            f"{name} must be an iterable of text documents (list, tuple, array or "
            f"pandas Series of str), got a single {type(X).__name__}. Wrap it in a "
            f"list: [{name.lower()}]."
        )
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # pandas DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"{name} must be 1-D or have a single column of text, got a "
                f"DataFrame with {X.shape[1]} columns."
            )
        X = X.iloc[:, 0]
    if isinstance(X, np.ndarray):
        if X.ndim == 2:
            if X.shape[1] != 1:
                raise ValueError(
                    f"{name} must be 1-D or have a single column of text, got an "
                    f"array of shape {X.shape}."
                )
            X = X[:, 0]
        elif X.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got an array of shape {X.shape}.")
    if hasattr(X, "tolist"):
        documents = X.tolist()
    else:
        try:
            documents = list(X)
        except TypeError:
            raise TypeError(
                f"{name} must be an iterable of text documents, got "
                f"{type(X).__name__}."
            ) from None
    if len(documents) == 0:
        raise ValueError(f"{name} is empty: at least one document is required.")
    for position, doc in enumerate(documents):
        element = f"element {position}" if index is None else f"element at index {index[position]!r}"
        if not isinstance(doc, str):
            kind = "NaN" if isinstance(doc, numbers.Real) and doc != doc else repr(doc)
            raise TypeError(
                f"{name} must contain only str documents; {element} is "
                f"{kind} of type {type(doc).__name__}."
            )
        if not doc.isascii():
            _check_encodable(doc, element, name)
    return documents


def _check_encodable(document, element, name):
    try:
        document.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{name} {element} is not valid Unicode text: it holds a lone surrogate "
            f"{document[error.start]!r} at character {error.start} (usually text decoded "
            f"with errors='surrogateescape' or a broken JSON escape). Fix the text, for "
            f"example with text.encode('utf-8', 'replace').decode()."
        ) from None


def _normalizer(lowercase):
    return normalizers.Sequence(
        [
            normalizers.NFKC(),
            # Strips control characters and spaces Han characters; accents are
            # kept because they carry meaning outside English.
            normalizers.BertNormalizer(
                clean_text=True,
                handle_chinese_chars=True,
                strip_accents=False,
                lowercase=lowercase,
            ),
        ]
    )


def _pre_tokenizer():
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.BertPreTokenizer(),
            pre_tokenizers.Split(Regex(_ISOLATED_SCRIPTS), behavior="isolated"),
        ]
    )


def _model_and_trainer(kind, vocab_size, alphabet, continuations):
    """The untrained subword model, its trainer and decoder.

    ``alphabet`` and ``continuations`` make the WordPiece and BPE trainers
    deterministic, see :func:`_alphabet`.
    """
    if kind == "unigram":
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token=UNK, show_progress=False
        )
        return models.Unigram(), trainer, decoders.Metaspace()
    common = dict(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + continuations,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet),
        continuing_subword_prefix=CONTINUATION,
        show_progress=False,
    )
    if kind == "wordpiece":
        model = models.WordPiece(unk_token=UNK, max_input_chars_per_word=_WORDPIECE_MAX_CHARS)
        return model, trainers.WordPieceTrainer(**common), decoders.WordPiece()
    if kind == "bpe":
        # Without byte fallback, characters unseen in training map to [UNK].
        model = models.BPE(unk_token=UNK, continuing_subword_prefix=CONTINUATION)
        return model, trainers.BpeTrainer(**common), decoders.WordPiece()
    raise ValueError(f"Unknown tokenizer {kind!r}; expected 'wordpiece', 'bpe' or 'unigram'.")


def _alphabet(documents, normalizer, pre_tokenizer, limit):
    """Choose the initial alphabet and its continuation tokens, deterministically.

    The WordPiece and BPE trainers give ids to continuation tokens (``##c``) in
    hash-map order, and ties between merges are broken by id, so the learned
    vocabulary changes from process to process (tokenizers issue 1794). Passing
    every needed ``##c`` as a reserved token gives them fixed ids up front; the
    characters themselves are ranked here by frequency, ties by code point.

    Returns
    -------
    alphabet : list of str
        The ``limit`` most frequent characters of the normalized documents.
    continuations : list of str
        ``##c`` for each character ``c`` of ``alphabet`` that can continue a
        word, i.e. is not split off by the pre-tokenizer.
    """
    counts = Counter()
    for document in documents:
        counts.update(normalizer.normalize_str(document))
    ranked = sorted((c for c in counts if not c.isspace()), key=lambda c: (-counts[c], c))
    alphabet = sorted(ranked[:limit])
    continuations = [
        CONTINUATION + c for c in alphabet if len(pre_tokenizer.pre_tokenize_str("a" + c)) == 1
    ]
    return alphabet, continuations


def _canonical(tokenizer):
    """Return ``tokenizer`` with a vocabulary that does not depend on the process.

    Even with a fixed vocabulary (see :func:`_alphabet`) the WordPiece trainer
    numbers tokens in hash-map order, and the Unigram trainer's scores differ
    in their last bits between runs (parallel sums). Ids are reassigned in
    sorted token order after the special tokens and Unigram scores are
    rounded, so two fits on the same texts give the same tokenizer in any
    process.
    """
    spec = json.loads(tokenizer.to_str())
    model = spec["model"]
    if model["type"] == "Unigram":
        pieces = [(token, round(score, 8)) for token, score in model["vocab"]]
        head = sorted((p for p in pieces if p[0] in SPECIAL_TOKENS), key=lambda p: SPECIAL_TOKENS.index(p[0]))
        tail = sorted((p for p in pieces if p[0] not in SPECIAL_TOKENS), key=lambda p: (-p[1], p[0]))
        model["vocab"] = [list(p) for p in head + tail]
        model["unk_id"] = UNK_ID
    else:
        tokens = [t for t in SPECIAL_TOKENS if t in model["vocab"]]
        tokens += sorted(t for t in model["vocab"] if t not in SPECIAL_TOKENS)
        model["vocab"] = {token: index for index, token in enumerate(tokens)}
    # Continuation tokens were reserved only to fix their ids during training:
    # they are ordinary vocabulary, not special tokens matched in raw text.
    spec["added_tokens"] = [a for a in spec["added_tokens"] if a["content"] in SPECIAL_TOKENS]
    for added in spec["added_tokens"]:
        added["id"] = SPECIAL_TOKENS.index(added["content"])
    return Tokenizer.from_str(json.dumps(spec))


def train_tokenizer(documents, *, kind, vocab_size, lowercase):
    """Train a subword tokenizer on ``documents``.

    Parameters
    ----------
    documents : list of str
        Training texts.
    kind : {"wordpiece", "bpe", "unigram"}
        Subword model.
    vocab_size : int
        Maximum vocabulary size, special tokens included.
    lowercase : bool
        Whether to lowercase texts before tokenization.

    Returns
    -------
    tokenizer : tokenizers.Tokenizer
        A tokenizer whose special token ids are ``PAD_ID``, ``UNK_ID``,
        ``CLS_ID``, ``SEP_ID`` and ``MASK_ID``, without truncation:
        :func:`encode` decides what a model reads of each document.
    """
    normalizer, pre_tokenizer = _normalizer(lowercase), _pre_tokenizer()
    alphabet, continuations = [], []
    if kind != "unigram":
        limit = max(1, (vocab_size - len(SPECIAL_TOKENS)) // 2)
        alphabet, continuations = _alphabet(documents, normalizer, pre_tokenizer, limit)
    model, trainer, decoder = _model_and_trainer(kind, vocab_size, alphabet, continuations)
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoder
    try:
        tokenizer.train_from_iterator(documents, trainer=trainer, length=len(documents))
    except Exception as error:  # tokenizers raises a plain Exception here
        if kind == "unigram" and "not large enough" in str(error):
            characters = set()
            for document in documents:
                characters.update(normalizer.normalize_str(document))
            characters = {character for character in characters if not character.isspace()}
            raise ValueError(
                f"tokenizer='unigram' needs a vocabulary holding every character of the training "
                f"texts ({len(characters):,} distinct) beside its special tokens; got vocab_size="
                f"{vocab_size}. Raise vocab_size, or use 'wordpiece' or 'bpe', which limit their alphabet."
            ) from None
        raise
    tokenizer = _canonical(tokenizer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", special_tokens=[(CLS, CLS_ID), (SEP, SEP_ID)]
    )
    return read_as_text(tokenizer)


def read_as_text(tokenizer):
    """``tokenizer``, set to read ``[PAD]``, ``[CLS]`` and the other special tokens written in a document as text.

    Left as it is, a tokenizer takes "[PAD]" in a document for the padding
    token, which the model skips, and "[SEP]" for the end of a window. The
    setting is not part of the tokenizer's JSON, so it is made wherever a
    tokenizer is built or read back (:func:`tokenizer_from_json`), and
    checked again before encoding.
    """
    if not getattr(tokenizer, "encode_special_tokens", True):
        tokenizer.encode_special_tokens = True
    return tokenizer


def tokenizer_from_json(text):
    """The tokenizer saved as ``text`` (``Tokenizer.to_str``), set by :func:`read_as_text`."""
    return read_as_text(Tokenizer.from_str(text))


class EncodedTexts:
    """Token ids of documents, each held as one or more windows.

    A document shorter than ``max_length`` tokens is one window. With
    ``chunk=True`` in :func:`encode` a longer one is split into overlapping
    windows, each starting with ``[CLS]`` and ending with ``[SEP]``.

    Parameters
    ----------
    windows : list of numpy.ndarray of int32
        All windows, those of each document contiguous and in order.
    offsets : numpy.ndarray of int64, shape (n_documents + 1,)
        Document ``i`` owns ``windows[offsets[i]:offsets[i + 1]]``.
    max_width : int, default=None
        Longest allowed padded batch width, see :func:`pad`.
    """

    def __init__(self, windows, offsets, max_width=None):
        self.windows = windows
        self.offsets = offsets
        self.max_width = max_width
        self.lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))

    def __len__(self):
        return len(self.offsets) - 1

    def token_budget(self, batch_size):
        """Tokens allowed in one batch: ``batch_size`` full-length windows."""
        return batch_size * self.max_width

    def document_lengths(self):
        """Total number of tokens of each document, shape (n_documents,)."""
        return np.add.reduceat(self.lengths, self.offsets[:-1]) if len(self) else np.zeros(0, np.int64)

    def subset(self, rows):
        """The documents ``rows``, as a new EncodedTexts."""
        windows = [w for r in rows for w in self.windows[self.offsets[r] : self.offsets[r + 1]]]
        counts = self.offsets[np.asarray(rows) + 1] - self.offsets[np.asarray(rows)]
        return EncodedTexts(windows, np.concatenate([[0], np.cumsum(counts)]), self.max_width)

    def as_sequences(self):
        """Every window as a document of its own (for masked language modelling)."""
        return EncodedTexts(self.windows, np.arange(len(self.windows) + 1), self.max_width)

    def batch(self, rows, pad_multiple=None):
        """Padded windows of the documents ``rows`` and the document of each window.

        ``pad_multiple`` is passed on to :func:`pad`.

        Returns
        -------
        ids : numpy.ndarray of int64, shape (n_windows, max_window_length)
        owner : numpy.ndarray of int64, shape (n_windows,)
            Position in ``rows`` of the document each window belongs to.
        """
        starts, stops = self.offsets[rows], self.offsets[np.asarray(rows) + 1]
        windows = [self.windows[j] for start, stop in zip(starts, stops) for j in range(start, stop)]
        owner = np.repeat(np.arange(len(rows)), stops - starts)
        return pad(windows, self.max_width, pad_multiple), owner


def encode(tokenizer, documents, *, max_length, chunk=False):
    """Encode documents into windows of token ids with the Rust batch encoder.

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer
        A tokenizer from :func:`train_tokenizer`, without truncation.
    documents : list of str
    max_length : int
        Tokens per window, ``[CLS]`` and ``[SEP]`` included.
    chunk : bool, default=False
        If False, each document is truncated to its first ``max_length``
        tokens, and only a prefix of a long text is tokenized. If True, the
        whole document is tokenized and cut into windows of ``max_length``
        tokens overlapping by a quarter of their content.

    Returns
    -------
    encoded : EncodedTexts
    """
    content = max_length - 2
    tokenizer = read_as_text(tokenizer)
    if chunk:
        token_ids = [e.ids for e in tokenizer.encode_batch_fast(_private_copies(documents), add_special_tokens=False)]
    else:
        token_ids = _leading_token_ids(tokenizer, documents, content)
    windows, counts = [], np.zeros(len(documents) + 1, dtype=np.int64)
    for index, ids in enumerate(token_ids):
        for start in window_starts(len(ids), content):
            windows.append(np.array([CLS_ID, *ids[start : start + content], SEP_ID], dtype=np.int32))
            counts[index + 1] += 1
    return EncodedTexts(windows, np.cumsum(counts), max_length)


def window_starts(n_tokens, content):
    """Where each window of :func:`encode` starts in a document of ``n_tokens`` tokens.

    Windows hold ``content`` tokens (besides ``[CLS]`` and ``[SEP]``) and
    overlap by a quarter of that; a document always has at least one.
    """
    starts, start = [0], 0
    while start + content < n_tokens:
        start += content - content // 4
        starts.append(start)
    return starts


# A word ends before any of these characters, whatever follows: whitespace,
# ASCII and common CJK punctuation (isolated by the pre-tokenizer) and CJK
# ideographs (each its own word). Nothing here combines with what precedes it
# under NFKC, so a text cut just before one tokenizes into the same leading
# tokens as the whole text. The whitespace is Python's \s less the control
# characters among it (\x0b, \x0c, \x1c-\x1f, \x85), which the normalizer
# deletes instead of reading as spaces, so that they join the words around them.
_WORD_BOUNDARY = re.compile(
    r"[\t\n\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
    r"!-/:-@\[-`{-~\u3000-\u3002\u4e00-\u9fff\uff01-\uff0f\uff1a-\uff20]"
)


def _leading_token_ids(tokenizer, documents, n_tokens):
    """The first ``n_tokens`` token ids of each document, without special tokens.

    Tokenizing a 10 MB text to keep its first few hundred tokens would take
    seconds, so a long text is cut at a word boundary after a generous
    number of characters, and the cut is moved twice as far until it yields
    ``n_tokens`` tokens or reaches the end of the text. The tokens are
    exactly those of the whole text, since the cut falls between two words.
    """
    width = 16 * n_tokens + 256
    texts = _private_copies([_cut_at_word_boundary(document, width) for document in documents])
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    result = [encoding.ids[:n_tokens] for encoding in encodings]
    short = [i for i, text in enumerate(texts) if len(result[i]) < n_tokens and len(text) < len(documents[i])]
    while short:
        width *= 2
        texts = _private_copies([_cut_at_word_boundary(documents[i], width) for i in short])
        for i, encoding in zip(short, tokenizer.encode_batch_fast(texts, add_special_tokens=False)):
            result[i] = encoding.ids[:n_tokens]
        short = [i for i, text in zip(short, texts) if len(result[i]) < n_tokens and len(text) < len(documents[i])]
    return result


def _private_copies(texts):
    """``texts`` with each non-ASCII text replaced by a copy of its own.

    Reading a non-ASCII ``str``, the tokenizer makes CPython cache a UTF-8
    copy inside the string object, where it stays as long as the string:
    encoding the caller's own texts would grow them for good. A copy is
    dropped, cache and all, with the batch.
    """
    return [text if text.isascii() else "".join((text, "")) for text in texts]


def _cut_at_word_boundary(text, width):
    """``text`` up to its last word boundary within ``width`` characters.

    Falls back to the first boundary after ``width``, then to the whole text.
    """
    if len(text) <= width:
        return text
    last = None
    for match in _WORD_BOUNDARY.finditer(text, 1, width + 1):
        last = match.start()
    if last is None:
        match = _WORD_BOUNDARY.search(text, width + 1)
        last = None if match is None else match.start()
    return text if last is None else text[:last]


def length_batches(lengths, batch_size, *, shuffle, generator=None, token_budget=None, pool_size=50):
    """Group document indices into batches of similar length.

    Parameters
    ----------
    lengths : numpy.ndarray of int
        Number of tokens of each document.
    batch_size : int
        Maximum number of documents per batch.
    shuffle : bool
        If False, documents are sorted by length and batched in that order,
        which minimises padding at inference. If True, indices are shuffled,
        sorted by length within pools of ``pool_size`` batches, and the
        resulting batches are shuffled: little padding, random batches.
    generator : numpy.random.Generator, default=None
        Source of randomness when ``shuffle`` is True.
    token_budget : int, default=None
        Maximum number of tokens per batch (a batch holds at least one
        document); bounds memory when documents are split into many windows.
    pool_size : int, default=50
        Batches per sorting pool when shuffling.

    Returns
    -------
    batches : list of numpy.ndarray of int
    """
    lengths = np.asarray(lengths)
    if shuffle:
        order = generator.permutation(len(lengths))
        pool = batch_size * pool_size
        pools = [order[i : i + pool] for i in range(0, len(order), pool)]
    else:
        pools = [np.arange(len(lengths))]
    batches = []
    for chunk in pools:
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(split_by_tokens(chunk, lengths[chunk], batch_size, token_budget))
    if shuffle:
        batches = [batches[i] for i in generator.permutation(len(batches))]
    return batches


def split_by_tokens(sorted_rows, sorted_lengths, batch_size, token_budget):
    """Cut length-sorted rows into consecutive groups of at most ``batch_size``
    rows and, when ``token_budget`` is set, at most that many tokens (but at
    least one row)."""
    if token_budget is None or sorted_lengths.sum() <= token_budget:
        return [sorted_rows[i : i + batch_size] for i in range(0, len(sorted_rows), batch_size)]
    batches, start, used = [], 0, 0
    for end, length in enumerate(sorted_lengths):
        if end > start and (end - start == batch_size or used + length > token_budget):
            batches.append(sorted_rows[start:end])
            start, used = end, 0
        used += length
    batches.append(sorted_rows[start:])
    return batches


@functools.lru_cache(maxsize=None)
def default_pad_multiple():
    """``_fast.PAD_MULTIPLE``, or 1 without the fast paths (batches as wide as their longest window).

    Looked up on first use: ``_fast`` imports PyTorch, which the ONNX
    predictor does without (it passes ``multiple`` itself).
    """
    try:
        from ._fast import PAD_MULTIPLE
    except ImportError:
        return 1
    return PAD_MULTIPLE


def pad(sequences, max_width=None, multiple=None):
    """Right-pad integer sequences into a matrix.

    Parameters
    ----------
    sequences : list of numpy.ndarray of int
    max_width : int, default=None
        Widest allowed matrix (the number of learned positions); the width is
        the longest sequence rounded up to a multiple of ``multiple``, but
        not beyond ``max_width``.
    multiple : int, default=None
        None for :func:`default_pad_multiple`.

    Returns
    -------
    ids : numpy.ndarray of int64, shape (n_sequences, width)
        Token ids, ``PAD_ID`` after each sequence's end.
    """
    longest = max(len(s) for s in sequences)
    multiple = default_pad_multiple() if multiple is None else multiple
    width = -(-longest // multiple) * multiple
    if max_width is not None:
        width = max(longest, min(width, max_width))
    ids = np.full((len(sequences), width), PAD_ID, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
    return ids
