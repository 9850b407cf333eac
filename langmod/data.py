"""Penn Treebank for the character-aware language model, read as Kim's BatchLoaderUnk does.

* Files: ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt`` in the data folder (the names
  of Mikolov's archive), or Kim's ``train.txt``, ``valid.txt``, ``test.txt``.
* Each line is split on white space; ``<unk>`` becomes the word '|'; the characters '{' and '}'
  are removed (they mark word start and end); an end-of-sentence word ('+') ends every line.
* Word ids: '|' = 0, then the other words by decreasing count over all three files, at most
  n_words in all (rarer words map to 0 but keep their characters).
* Character ids: pad 0, start '{' 1, end '}' 2, '|' 3, then characters by decreasing count, at
  most n_chars in all (rarer characters are dropped from the spelling).
* A word is [start, its characters, end], zero-padded to max_word_l = min(max_word_l, longest
  word + 2); a longer word is cut and its last slot set to end.
* The target of each word is the next word; the last word's target wraps to the first word.

Batching (:class:`Batches`): the stream is cut into `batch_size` contiguous rows, read in chunks
of `seq_length` time steps, **in order from chunk 0** (the original started at chunk 1 and ended
with chunk 0, SPEC defect 11). Train and valid are cut to a multiple of batch_size·seq_length as
in the original. The test split keeps every word: it is padded to whole chunks and the padded
positions carry a zero in the chunk's mask, so every test word is scored exactly once (the
original replicated the test stream across the batch and also scored the padding).

This module needs only numpy; arrays are time-major: chars (T, N, max_word_l), targets (T, N).
"""
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

SPLITS = ('train', 'valid', 'test')
FILE_NAMES = {split: ('ptb.%s.txt' % split, '%s.txt' % split) for split in SPLITS}
PAD, START, END, UNK = ' ', '{', '}', '|'
_WHITESPACE = re.compile(r'\s+')


def split_files(data_dir):
    """{split: path} of the three files in `data_dir`; a clear error naming what is missing."""
    found, missing = {}, []
    for split in SPLITS:
        paths = [os.path.join(data_dir, name) for name in FILE_NAMES[split]]
        existing = [p for p in paths if os.path.isfile(p)]
        if existing:
            found[split] = existing[0]
        else:
            missing.append(' or '.join(FILE_NAMES[split]))
    if missing:
        raise FileNotFoundError(
            'Penn Treebank files missing in %s: %s. Put Kim\'s PTB files there (ptb.train.txt, '
            'ptb.valid.txt, ptb.test.txt as in Mikolov\'s archive and a shared data/ptb copy, or '
            'train.txt, valid.txt, test.txt as in yoonkim/lstm-char-cnn data/ptb), or point '
            '--data_dir at a folder that has them.'
            % (os.path.abspath(data_dir), '; '.join(missing)))
    for split, path in found.items():
        if os.path.getsize(path) == 0:
            raise ValueError('Penn Treebank file %s (the %s split) is empty' % (path, split))
    return found


def read_words(path, eos='+'):
    """The raw words of one file, with <unk> as '|' and `eos` appended to every line."""
    words = []
    try:
        with open(path, encoding='utf8') as f:
            for line in f:
                line = line.replace('<unk>', UNK).replace(START, '').replace(END, '')
                words.extend(w for w in _WHITESPACE.split(line) if w)
                if eos:
                    words.append(eos)
    except UnicodeDecodeError:
        raise ValueError('Penn Treebank file %s is not UTF-8 text: %s (the PTB files are plain '
                         'ASCII; replace this file with a good copy)'
                         % (path, _first_bad_byte(path))) from None
    if not words:
        raise ValueError('Penn Treebank file %s holds no words' % path)
    return words


def _first_bad_byte(path):
    """Where the UTF-8 decoding of `path` fails: 'byte 0xe9 on line 12'."""
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        raw.decode('utf8')
    except UnicodeDecodeError as err:
        return 'byte 0x%02x on line %d' % (raw[err.start], raw.count(b'\n', 0, err.start) + 1)
    return 'undecodable bytes'


def _spelling(word):
    """The characters that spell `word`: Kim's '|word' form (an unknown word with its
    characters, separated by one character) keeps only the characters after it."""
    return word[2:] if word[0] == UNK and len(word) > 1 else word


@dataclass
class Vocab:
    idx2word: list
    idx2char: list
    max_word_l: int
    word2idx: dict = field(init=False)
    char2idx: dict = field(init=False)

    def __post_init__(self):
        self.word2idx = {w: i for i, w in enumerate(self.idx2word)}
        self.char2idx = {c: i for i, c in enumerate(self.idx2char)}

    @property
    def word_vocab_size(self):
        return len(self.idx2word)

    @property
    def char_vocab_size(self):
        return len(self.idx2char)

    def word_id(self, word):
        if word[0] == UNK:
            return 0
        return self.word2idx.get(word, 0)

    def char_ids(self, word):
        """[start, characters, end] of `word`, cut or zero-padded to max_word_l."""
        ids = [1] + [self.char2idx[c] for c in _spelling(word) if c in self.char2idx] + [2]
        n = self.max_word_l
        if len(ids) >= n:
            ids = ids[:n]
            ids[-1] = 2
        return ids + [0] * (n - len(ids))


def build_vocab(word_lists, max_word_l=65, n_words=30000, n_chars=100):
    """Word and character vocabularies over all splits, as BatchLoaderUnk builds them."""
    word_counts, char_counts = Counter(), Counter()
    longest = 0
    for words in word_lists:
        types = Counter(words)
        for word, count in types.items():
            if word[0] != UNK:
                word_counts[word] += count
            for char in _spelling(word).replace(UNK, ''):
                char_counts[char] += count
            longest = max(longest, len(word) + 2)
    idx2word = [UNK] + [w for w, _ in word_counts.most_common(n_words - 1)]
    idx2char = [PAD, START, END, UNK] + [c for c, _ in char_counts.most_common(n_chars - 4)]
    return Vocab(idx2word, idx2char, min(longest, max_word_l))


def encode(words, vocab):
    """(word ids int32 (n,), char ids int32 (n, max_word_l)) of a list of raw words."""
    types = {}
    type_ids = np.fromiter((types.setdefault(w, len(types)) for w in words), dtype=np.int64,
                           count=len(words))
    spellings = list(types)
    word_ids = np.array([vocab.word_id(w) for w in spellings], dtype=np.int32)[type_ids]
    char_ids = np.array([vocab.char_ids(w) for w in spellings], dtype=np.int32)[type_ids]
    return word_ids, char_ids


@dataclass
class Corpus:
    vocab: Vocab
    splits: dict      # split -> (word ids, char ids)
    files: dict       # split -> path


def load_corpus(data_dir, max_word_l=65, n_words=30000, n_chars=100, eos='+'):
    """Read the three PTB files of `data_dir` into ids."""
    files = split_files(data_dir)
    words = {split: read_words(files[split], eos) for split in SPLITS}
    vocab = build_vocab([words[s] for s in SPLITS], max_word_l, n_words, n_chars)
    return Corpus(vocab, {s: encode(words[s], vocab) for s in SPLITS}, files)


class Batches:
    """One split cut into `batch_size` contiguous rows, served in chunks of `seq_length`.

    ``chunk(i)`` returns (chars (T, N, L) int32, targets (T, N) int32, mask (T, N) float32 or
    None); chunks come in order 0, 1, ..., len - 1. With ``keep_all=False`` the stream is cut
    to a multiple of batch_size·seq_length (train, valid); with ``keep_all=True`` it is padded
    instead and the mask marks the real words (test).
    """

    def __init__(self, word_ids, char_ids, batch_size, seq_length, keep_all=False):
        n = len(word_ids)
        self.batch_size, self.seq_length = batch_size, seq_length
        if keep_all:
            cols = -(-n // batch_size)
            cols = -(-cols // seq_length) * seq_length
        else:
            cols = n // (batch_size * seq_length) * seq_length
            if cols == 0:
                raise ValueError('the split has %d words, fewer than one batch of batch_size x '
                                 'seq_length = %d x %d' % (n, batch_size, seq_length))
            n = batch_size * cols
        words = word_ids[:n]
        targets = np.empty_like(words)
        targets[:-1], targets[-1] = words[1:], words[0]
        total = batch_size * cols
        mask = np.zeros(total, dtype=np.float32)
        mask[:n] = 1
        chars = np.zeros((total, char_ids.shape[1]), dtype=np.int32)
        chars[:n] = char_ids[:n]
        targets = np.concatenate([targets, np.zeros(total - n, dtype=targets.dtype)])
        # (rows, cols) -> time-major (cols, rows): a chunk is a contiguous slice.
        self.chars = np.ascontiguousarray(chars.reshape(batch_size, cols, -1).transpose(1, 0, 2))
        self.targets = np.ascontiguousarray(targets.reshape(batch_size, cols).T)
        self.mask = None if n == total else np.ascontiguousarray(mask.reshape(batch_size, cols).T)
        self.words = n

    def __len__(self):
        return self.chars.shape[0] // self.seq_length

    def chunk(self, i):
        if not 0 <= i < len(self):
            raise IndexError('chunk %d of %d' % (i, len(self)))
        t = slice(i * self.seq_length, (i + 1) * self.seq_length)
        return self.chars[t], self.targets[t], None if self.mask is None else self.mask[t]
