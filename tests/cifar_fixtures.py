"""Tiny fake CIFAR-10 folders in the real on-disk format, for tests of anything that loads data.

The files are protocol-2 pickles whose strings are Python 2 ``str`` objects (pickle opcodes
SHORT_BINSTRING / BINSTRING), exactly like the official files: ``pickle.load(f,
encoding='bytes')`` returns a dict with keys b'data', b'labels', ..., and the image array is
stored through ``numpy.core.multiarray._reconstruct``.

    from cifar_fixtures import write_fake_cifar
    fake = write_fake_cifar(tmp_path, n_train_per_batch=20, n_test=30)
    data = load_cifar10(tmp_path, download=False, strict_counts=False)
"""
import collections
import os
import pickle
import struct

import numpy as np

CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer',
           'dog', 'frog', 'horse', 'ship', 'truck']
TRAIN_FILES = ['data_batch_%d' % i for i in range(1, 6)]

FakeCifar = collections.namedtuple(
    'FakeCifar', 'train_images train_labels test_images test_labels classes')


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 str, as the CIFAR-10 files (made with Python 2) store them.

    The pure-Python pickler is used because its opcode table can be extended per class.
    """
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack('<i', len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def dump_py2_pickle(obj, path):
    with open(path, 'wb') as f:
        _Python2Pickler(f, protocol=2).dump(obj)


def write_batch(path, rows, labels, batch_label=b'fake batch'):
    """One data_batch_* / test_batch file: rows uint8 (N, 3072) in R, G, B plane order."""
    rows = np.asarray(rows)
    record = {
        b'batch_label': batch_label,
        b'labels': [int(label) for label in labels],
        b'data': rows,
        b'filenames': [b'fake_%05d.png' % i for i in range(len(rows))],
    }
    dump_py2_pickle(record, path)


def write_meta(path, names=CLASSES):
    dump_py2_pickle({b'num_cases_per_batch': 10000,
                     b'label_names': [name.encode() for name in names],
                     b'num_vis': 3072}, path)


def _balanced_labels(rng, n):
    return rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int32)


def write_fake_cifar(dirpath, n_train_per_batch=20, n_test=30, seed=0):
    """Write the seven files (random pixels, every class about equally often) into ``dirpath``
    and return what was written as FakeCifar (images uint8 (N, 3, 32, 32), labels int32)."""
    os.makedirs(dirpath, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_rows, train_labels = [], []
    for name in TRAIN_FILES:
        rows = rng.integers(0, 256, size=(n_train_per_batch, 3072), dtype=np.uint8)
        labels = _balanced_labels(rng, n_train_per_batch)
        write_batch(os.path.join(dirpath, name), rows, labels, b'training ' + name.encode())
        train_rows.append(rows)
        train_labels.append(labels)
    test_rows = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    test_labels = _balanced_labels(rng, n_test)
    write_batch(os.path.join(dirpath, 'test_batch'), test_rows, test_labels, b'testing batch')
    write_meta(os.path.join(dirpath, 'batches.meta'))
    return FakeCifar(np.concatenate(train_rows).reshape(-1, 3, 32, 32),
                     np.concatenate(train_labels), test_rows.reshape(-1, 3, 32, 32),
                     test_labels, list(CLASSES))
