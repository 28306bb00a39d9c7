"""Tokenizer training, encoding and batching (skattn._text)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from tokenizers import Tokenizer

from skattn._text import (
    CLS_ID,
    EncodedTexts,
    PAD_ID,
    SEP_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    _WORD_BOUNDARY,
    _normalizer,
    _pre_tokenizer,
    default_pad_multiple,
    encode,
    length_batches,
    pad,
    tokenizer_from_json,
    train_tokenizer,
)

from .conftest import TEXTS, TOPIC_TEXTS

CHINESE = ["我爱北京天安门", "今天天气很好", "股票市场大幅下跌", "中国队赢得了比赛"] * 3
JAPANESE = ["これはテストです", "東京は日本の首都です", "猫が好きです"] * 3
THAI = ["ภาษาไทยไม่มีช่องว่าง", "ฉันชอบกินข้าวผัด", "วันนี้อากาศดีมาก"] * 3


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_special_tokens_have_fixed_ids(kind):
    tokenizer = train_tokenizer(TOPIC_TEXTS, kind=kind, vocab_size=120, lowercase=True)
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    ids = encode(tokenizer, ["stocks fell"], max_length=16).windows[0]
    assert ids[0] == CLS_ID and ids[-1] == SEP_ID
    assert tokenizer.get_vocab_size() <= 120


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_truncation_to_max_length(kind):
    tokenizer = train_tokenizer(TOPIC_TEXTS, kind=kind, vocab_size=120, lowercase=True)
    long_text = " ".join(TOPIC_TEXTS)
    encoded = encode(tokenizer, [long_text], max_length=8)
    (ids,) = encoded.windows
    assert len(ids) == 8
    assert ids[0] == CLS_ID and ids[-1] == SEP_ID
    assert encoded.offsets.tolist() == [0, 1]


def test_chunking_keeps_every_token_in_overlapping_windows():
    tokenizer = train_tokenizer(TOPIC_TEXTS, kind="wordpiece", vocab_size=120, lowercase=True)
    text = " ".join(TOPIC_TEXTS[:6])
    every_id = tokenizer.encode(text, add_special_tokens=False).ids
    encoded = encode(tokenizer, [text, "rain"], max_length=10, chunk=True)
    n_windows = encoded.offsets[1]
    assert n_windows > 3 and encoded.offsets[2] == n_windows + 1
    windows = encoded.windows[:n_windows]
    assert all(len(w) <= 10 and w[0] == CLS_ID and w[-1] == SEP_ID for w in windows)
    # Consecutive windows overlap by (10 - 2) // 4 = 2 tokens.
    assert windows[0][-3:-1].tolist() == windows[1][1:3].tolist()
    covered = windows[0][1:-1].tolist() + [t for w in windows[1:] for t in w[3:-1].tolist()]
    assert covered == every_id
    assert encoded.document_lengths().tolist() == [sum(len(w) for w in windows), len(encoded.windows[-1])]


def test_han_and_kana_are_split_into_characters():
    tokenizer = train_tokenizer(CHINESE + JAPANESE, kind="wordpiece", vocab_size=300, lowercase=True)
    tokens = tokenizer.encode("我爱北京").tokens
    assert tokens == ["[CLS]", "我", "爱", "北", "京", "[SEP]"]
    assert "[UNK]" not in tokenizer.encode("これはテストです").tokens


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "unigram"])
def test_thai_without_spaces_gets_subwords_not_unknowns(kind):
    tokenizer = train_tokenizer(THAI, kind=kind, vocab_size=300, lowercase=True)
    unseen = "ฉันชอบอากาศดี"  # "I like good weather": words from two training texts
    tokens = tokenizer.encode(unseen).tokens[1:-1]
    assert "[UNK]" not in tokens
    assert 1 < len(tokens) < len(unseen)


def test_nfkc_and_lowercase():
    tokenizer = train_tokenizer(TEXTS, kind="wordpiece", vocab_size=200, lowercase=True)
    # Full-width letters are NFKC-folded to ASCII, then lowercased.
    assert tokenizer.encode("ＧＯＯＤ Film").ids == tokenizer.encode("good film").ids
    cased = train_tokenizer(TEXTS, kind="wordpiece", vocab_size=200, lowercase=False)
    assert cased.encode("Good").ids != cased.encode("good").ids


_TRAIN_IN_SUBPROCESS = """
import hashlib, sys
from skattn._text import train_tokenizer
from skattn.datasets import load_r8
texts = load_r8()[0][:800]
for kind in ("wordpiece", "bpe", "unigram"):
    tokenizer = train_tokenizer(texts, kind=kind, vocab_size=1500, lowercase=True)
    print(kind, hashlib.sha256(tokenizer.to_str().encode()).hexdigest())
"""


def test_trained_vocabulary_is_identical_in_two_fresh_processes():
    # The tokenizers trainers number tokens in hash-map order (tokenizers
    # issue 1794); hash seeds differ between processes, so this catches it.
    runs = [
        subprocess.run([sys.executable, "-c", _TRAIN_IN_SUBPROCESS], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert len(runs[0].splitlines()) == 3


def test_length_batches_sorted_for_inference():
    lengths = np.array([5, 1, 4, 2, 3])
    batches = length_batches(lengths, 2, shuffle=False)
    assert [b.tolist() for b in batches] == [[1, 3], [4, 2], [0]]


def test_length_batches_shuffled_cover_every_index_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=1000)
    batches = length_batches(lengths, 16, shuffle=True, generator=rng)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    # Within a batch lengths are close: far less padding than random batches.
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded < 1.3 * lengths.sum()


def test_length_batches_token_budget():
    lengths = np.array([5, 100, 3, 50, 7])
    batches = length_batches(lengths, 4, shuffle=False, token_budget=60)
    assert [b.tolist() for b in batches] == [[2, 0, 4], [3], [1]]


def test_encoded_texts_batch_and_subset():
    windows = [np.array([2, 9, 3]), np.array([2, 8, 3]), np.array([2, 7, 6, 3]), np.array([2, 3])]
    encoded = EncodedTexts(windows, np.array([0, 2, 3, 4]), max_width=4)  # document 0 has two windows
    ids, owner = encoded.batch(np.array([1, 0]))
    assert ids.tolist() == [[2, 7, 6, 3], [2, 9, 3, PAD_ID], [2, 8, 3, PAD_ID]]
    assert owner.tolist() == [0, 1, 1]
    assert encoded.document_lengths().tolist() == [6, 4, 2]
    assert encoded.subset([2, 0]).offsets.tolist() == [0, 1, 3]
    assert len(encoded.as_sequences()) == 4


def test_pad():
    ids = pad([np.array([2, 7, 3]), np.array([2, 3])], max_width=3)
    assert ids.tolist() == [[2, 7, 3], [2, 3, PAD_ID]]
    assert ids.dtype == np.int64
    # Widths are rounded up to a multiple of PAD_MULTIPLE (16 with the fast
    # paths, 1 without), within max_width.
    PAD_MULTIPLE = default_pad_multiple()
    rounded = -(-17 // PAD_MULTIPLE) * PAD_MULTIPLE
    assert pad([np.arange(17)], max_width=100).shape == (1, rounded)
    assert pad([np.arange(17)], max_width=17 + PAD_MULTIPLE // 2).shape == (1, min(rounded, 17 + PAD_MULTIPLE // 2))
    assert pad([np.arange(3)]).shape == (1, -(-3 // PAD_MULTIPLE) * PAD_MULTIPLE)
    assert pad([np.arange(3)], multiple=1).shape == (1, 3) and pad([np.arange(3)], multiple=8).shape == (1, 8)


def test_tokenizer_json_round_trip():
    tokenizer = train_tokenizer(TEXTS, kind="bpe", vocab_size=200, lowercase=True)
    restored = Tokenizer.from_str(tokenizer.to_str())
    assert restored.encode("a good film").ids == tokenizer.encode("a good film").ids
    # No truncation: encode() decides what a model reads of each document.
    assert json.loads(restored.to_str())["truncation"] is None


def _recording(tokenizer, seen):
    """A stand-in for ``tokenizer`` that records the length of every text it encodes."""

    class Recording:
        def encode_batch_fast(self, texts, add_special_tokens):
            seen.extend(len(text) for text in texts)
            return tokenizer.encode_batch_fast(texts, add_special_tokens=add_special_tokens)

    return Recording()


@pytest.mark.parametrize(
    "text",
    [
        " ".join(TOPIC_TEXTS) * 200,  # about 100 kB of English
        "".join(CHINESE) * 1000,  # no spaces, one word per character
        "stocks " + "x" * 50_000 + " fell",  # one enormous word
        # A control character the normalizer deletes joins the two runs into one word.
        "stocks " + "x" * 800 + "\x1c" + "y" * 800 + " fell",
    ],
    ids=["english", "chinese", "giant-word", "control-joined-word"],
)
def test_truncation_tokenizes_a_prefix_and_keeps_the_same_tokens(text):
    tokenizer = train_tokenizer(TOPIC_TEXTS + CHINESE, kind="wordpiece", vocab_size=300, lowercase=True)
    seen = []
    (window,) = encode(_recording(tokenizer, seen), [text], max_length=32).windows
    every_id = tokenizer.encode(text, add_special_tokens=False).ids
    assert window.tolist() == [CLS_ID, *every_id[:30], SEP_ID]
    if "x" * 1000 not in text:
        assert max(seen) < 2_000  # a prefix, not the whole text



def test_special_tokens_written_in_a_document_are_read_as_text():
    tokenizer = train_tokenizer(TOPIC_TEXTS, kind="wordpiece", vocab_size=300, lowercase=True)
    restored = tokenizer_from_json(tokenizer.to_str())  # as after pickling or loading a model file
    for reader in (tokenizer, restored):
        (window,) = encode(reader, ["stocks [PAD] fell [SEP] [CLS] [MASK]"], max_length=32).windows
        assert window[0] == CLS_ID and window[-1] == SEP_ID
        assert not set(window[1:-1].tolist()) & set(range(len(SPECIAL_TOKENS))) - {UNK_ID}


def test_every_word_boundary_of_truncation_ends_a_word_for_the_tokenizer():
    # Truncation cuts long texts before these characters; one that the
    # normalizer deleted instead would cut a word in two.
    normalizer, pre_tokenizer = _normalizer(lowercase=True), _pre_tokenizer()
    boundaries = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000 and _WORD_BOUNDARY.match(chr(c))]
    joined = [
        hex(ord(c))
        for c in boundaries
        if [w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(f"ab{c}cd"))][:1] != ["ab"]
    ]
    assert len(boundaries) > 20_000 and joined == []


@pytest.mark.parametrize("chunk", [False, True])
def test_encoding_leaves_the_callers_texts_as_they_were(chunk):
    # CPython caches a UTF-8 copy inside a non-ASCII str that the tokenizer
    # reads; encoding the caller's own objects would grow them for good.
    tokenizer = train_tokenizer(TOPIC_TEXTS + CHINESE, kind="wordpiece", vocab_size=300, lowercase=True)
    texts = ["".join(("café crème ", str(i))) for i in range(50)] + ["".join(("我爱北京", str(i))) for i in range(50)]
    sizes = [sys.getsizeof(text) for text in texts]
    encode(tokenizer, texts, max_length=16, chunk=chunk)
    assert [sys.getsizeof(text) for text in texts] == sizes
