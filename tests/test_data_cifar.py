"""strassen_gluon.data.cifar: loading, checks, download, subsets and augmented batches.

All data is tiny and generated in the real on-disk format (tests/cifar_fixtures.py).
"""
import hashlib
import io
import os
import pickle
import tarfile

import mxnet as mx
import numpy as np
import pytest

from cifar_fixtures import CLASSES, write_batch, write_fake_cifar, write_meta
from strassen_gluon.data import cifar
from strassen_gluon.data import (CIFAR_MEAN, CIFAR_STD, CifarBatches, CifarDownloadError,
                                 CifarFormatError, CifarNotFoundError, download_cifar10,
                                 load_cifar10, pad_crop_flip, subset)

MEAN = np.array(CIFAR_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array(CIFAR_STD, dtype=np.float32).reshape(1, 3, 1, 1)


def load(folder, **kwargs):
    return load_cifar10(folder, download=False, strict_counts=False, **kwargs)


# ----------------------------------------------------------------------------- loading

def test_loads_written_files(tmp_path):
    fake = write_fake_cifar(tmp_path, n_train_per_batch=20, n_test=30)
    data = load(tmp_path)
    assert data.train_images.dtype == np.uint8 and data.train_images.shape == (100, 3, 32, 32)
    assert data.train_labels.dtype == np.int32 and data.train_labels.shape == (100,)
    assert data.test_images.shape == (30, 3, 32, 32) and data.test_labels.dtype == np.int32
    np.testing.assert_array_equal(data.train_images, fake.train_images)
    np.testing.assert_array_equal(data.train_labels, fake.train_labels)
    np.testing.assert_array_equal(data.test_images, fake.test_images)
    np.testing.assert_array_equal(data.test_labels, fake.test_labels)
    assert data.classes == CLASSES
    assert data.folder == str(tmp_path)


def test_row_planes_become_chw(tmp_path):
    # A row is 1024 red, 1024 green, 1024 blue values, each 32x32 row-major.
    write_fake_cifar(tmp_path, n_train_per_batch=10, n_test=10)
    row = np.concatenate([np.arange(1024) % 251, np.full(1024, 100), np.full(1024, 200)])
    rows = np.zeros((10, 3072), np.uint8)
    rows[3] = row
    write_batch(tmp_path / 'data_batch_2', rows, np.arange(10))
    image = load(tmp_path).train_images[10 + 3]
    y, x = np.mgrid[:32, :32]
    np.testing.assert_array_equal(image[0], (32 * y + x) % 251)
    assert (image[1] == 100).all() and (image[2] == 200).all()


def test_files_inside_archive_folder_are_found(tmp_path):
    fake = write_fake_cifar(tmp_path / 'cifar-10-batches-py', n_train_per_batch=10, n_test=10)
    data = load(tmp_path)
    np.testing.assert_array_equal(data.test_images, fake.test_images)
    assert data.folder == str(tmp_path / 'cifar-10-batches-py')


def test_folder_from_environment_then_default(tmp_path, monkeypatch):
    write_fake_cifar(tmp_path, n_train_per_batch=10, n_test=10)
    monkeypatch.setenv('STRASSEN_CIFAR10_DIR', str(tmp_path))
    assert load(None).folder == str(tmp_path)
    assert cifar.resolve_data_dir('/elsewhere') == '/elsewhere'
    monkeypatch.delenv('STRASSEN_CIFAR10_DIR')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert cifar.resolve_data_dir() == str(tmp_path / 'home' / '.mxnet' / 'datasets' / 'cifar10')


def test_strict_counts_rejects_small_files(tmp_path):
    write_fake_cifar(tmp_path, n_train_per_batch=10, n_test=10)
    with pytest.raises(CifarFormatError, match=r'data_batch_1.*\(10, 3072\).*\(10000, 3072\)'):
        load_cifar10(tmp_path, download=False)


def test_missing_files_error_lists_exactly_them(tmp_path):
    write_fake_cifar(tmp_path, n_train_per_batch=10, n_test=10)
    os.remove(tmp_path / 'data_batch_3')
    os.remove(tmp_path / 'test_batch')
    with pytest.raises(FileNotFoundError) as caught:
        load(tmp_path)
    err = caught.value
    assert isinstance(err, CifarNotFoundError)
    assert err.missing == ['data_batch_3', 'test_batch']
    message = str(err)
    assert str(tmp_path) in message
    assert 'data_batch_3, test_batch not found' in message
    for remedy in ('--data_dir', 'STRASSEN_CIFAR10_DIR', 'download'):
        assert remedy in message


def test_truncated_file(tmp_path):
    write_fake_cifar(tmp_path, n_train_per_batch=10, n_test=10)
    path = tmp_path / 'data_batch_4'
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CifarFormatError, match='data_batch_4: cannot unpickle'):
        load(tmp_path)


def corrupt(tmp_path, name, rows=None, labels=None, record=None):
    write_fake_cifar(tmp_path, n_train_per_batch=10, n_test=10)
    if record is not None:
        with open(tmp_path / name, 'wb') as f:
            pickle.dump(record, f, protocol=2)
        return
    write_batch(tmp_path / name, np.zeros((10, 3072), np.uint8) if rows is None else rows,
                np.arange(10) if labels is None else labels)


@pytest.mark.parametrize('kwargs, problem', [
    (dict(rows=np.zeros((10, 3000), np.uint8)), r"shape \(10, 3000\)"),
    (dict(rows=np.zeros((10, 32, 32, 3), np.uint8)), r"shape \(10, 32, 32, 3\)"),
    (dict(rows=np.zeros((10, 3072), np.float32)), 'dtype float32, expected uint8'),
    (dict(labels=[0, 1, 2, 3, 4, 5, 6, 7, 8, 10]), r'1 labels outside 0-9, e\.g\. \[10\]'),
    (dict(labels=[-1] * 10), 'labels outside 0-9'),
    (dict(labels=list(range(9))), '9 labels for 10 images'),
    (dict(record={b'data': np.zeros((10, 3072), np.uint8)}), 'missing key.*labels'),
    (dict(record=[1, 2, 3]), 'expected a pickled dict'),
])
def test_bad_batch_contents(tmp_path, kwargs, problem):
    corrupt(tmp_path, 'test_batch', **kwargs)
    with pytest.raises(CifarFormatError, match='test_batch: .*' + problem):
        load(tmp_path)


def test_meta_needs_ten_names(tmp_path):
    write_fake_cifar(tmp_path, n_train_per_batch=10, n_test=10)
    write_meta(tmp_path / 'batches.meta', CLASSES[:9])
    with pytest.raises(CifarFormatError, match="batches.meta: 'label_names' must be a list of 10"):
        load(tmp_path)


def test_refuses_pickles_that_import_other_objects(tmp_path):
    import datetime
    corrupt(tmp_path, 'data_batch_1', record={b'data': datetime.date(2020, 1, 1)})
    with pytest.raises(CifarFormatError, match='refusing to load datetime.date'):
        load(tmp_path)


def test_python3_pickles_with_str_keys_load(tmp_path):
    fake = write_fake_cifar(tmp_path, n_train_per_batch=10, n_test=10)
    record = {'data': fake.test_images.reshape(10, 3072), 'labels': fake.test_labels.tolist()}
    with open(tmp_path / 'test_batch', 'wb') as f:
        pickle.dump(record, f, protocol=2)
    np.testing.assert_array_equal(load(tmp_path).test_images, fake.test_images)


# ----------------------------------------------------------------------------- download

def make_archive(tmp_path, members=None):
    """A cifar-10-python.tar.gz look-alike holding fake files; returns (path, md5, fake)."""
    source = tmp_path / 'source'
    fake = write_fake_cifar(source / 'cifar-10-batches-py', n_train_per_batch=10, n_test=10)
    archive = tmp_path / 'served' / 'cifar-10-python.tar.gz'
    archive.parent.mkdir()
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(source / 'cifar-10-batches-py', arcname='cifar-10-batches-py')
        for name, payload in (members or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return archive, hashlib.md5(archive.read_bytes()).hexdigest(), fake


def test_official_download_constants():
    assert cifar.CIFAR10_URL == 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
    assert cifar.CIFAR10_MD5 == 'c58f30108f718f92721af3b95e74349a'


def test_download_from_file_url(tmp_path):
    archive, md5, fake = make_archive(tmp_path)
    root = tmp_path / 'data'
    data = load_cifar10(root, strict_counts=False, url=archive.as_uri(), md5=md5)
    np.testing.assert_array_equal(data.train_images, fake.train_images)
    assert data.folder == str(root / 'cifar-10-batches-py')
    assert sorted(os.listdir(root)) == ['cifar-10-batches-py', 'cifar-10-python.tar.gz']
    # Loading again finds the files and does not download.
    archive.unlink()
    assert len(load_cifar10(root, strict_counts=False, url=archive.as_uri(), md5=md5)
               .test_labels) == 10


def test_download_with_wrong_md5_is_deleted(tmp_path):
    archive, _, _ = make_archive(tmp_path)
    root = tmp_path / 'data'
    with pytest.raises(CifarDownloadError, match='has md5 .*expected 0123'):
        download_cifar10(root, url=archive.as_uri(), md5='0123' * 8)
    assert not root.exists()  # the folder the download created is gone again
    root.mkdir()
    with pytest.raises(CifarNotFoundError, match='md5'):
        load_cifar10(root, strict_counts=False, url=archive.as_uri(), md5='0123' * 8)
    assert os.listdir(root) == []  # a folder that was there before stays


@pytest.mark.parametrize('name', ['../escaped.txt', '/tmp/absolute_escape.txt',
                                  'cifar-10-batches-py/../../escaped.txt'])
def test_archive_members_outside_folder_are_rejected(tmp_path, name):
    archive, md5, _ = make_archive(tmp_path, {name: b'payload'})
    root = tmp_path / 'data'
    with pytest.raises(CifarDownloadError, match='outside the extraction folder'):
        download_cifar10(root, url=archive.as_uri(), md5=md5)
    assert not (tmp_path / 'escaped.txt').exists()
    assert not os.path.exists('/tmp/absolute_escape.txt')
    assert not (root / 'cifar-10-batches-py').exists()


@pytest.mark.parametrize('url', ['http://127.0.0.1:9/cifar-10-python.tar.gz',
                                 'file:///nonexistent/cifar-10-python.tar.gz'])
def test_unreachable_download_gives_one_clear_message(tmp_path, url):
    root = tmp_path / 'data'
    with pytest.raises(CifarNotFoundError) as caught:
        load_cifar10(root, url=url)
    message = str(caught.value)
    assert 'CIFAR-10 data is missing in %s' % root in message
    assert 'test_batch' in message and 'batches.meta' in message
    assert 'Downloading it failed: could not fetch %s' % url in message
    for remedy in ('cifar-10-batches-py', '--data_dir', 'STRASSEN_CIFAR10_DIR'):
        assert remedy in message
    assert caught.value.__cause__ is None  # the message stands alone
    assert not root.exists()


def test_failed_download_removes_every_folder_it_created(tmp_path):
    root = tmp_path / 'a' / 'b' / 'cifar'
    with pytest.raises(CifarDownloadError, match='could not fetch'):
        download_cifar10(root, url='file:///nonexistent/cifar-10-python.tar.gz')
    assert os.listdir(tmp_path) == []


def test_missing_files_advice_names_the_option_and_the_python_argument(tmp_path):
    with pytest.raises(CifarNotFoundError) as caught:
        load_cifar10(tmp_path, download=False)
    advice = str(caught.value).splitlines()[-1]
    assert 'leave out --no_download' in advice and 'download=True in Python' in advice


# ----------------------------------------------------------------------------- subsets

def test_subset_is_class_balanced_and_seeded(tmp_path):
    write_fake_cifar(tmp_path, n_train_per_batch=20, n_test=10)
    data = load(tmp_path)
    small = subset(data, 23, seed=5)
    counts = np.bincount(small.train_labels, minlength=10)
    assert counts.sum() == 23 and set(counts) == {2, 3}
    rows = {img.tobytes(): lab for img, lab in zip(data.train_images, data.train_labels)}
    assert all(rows[img.tobytes()] == lab for img, lab in zip(small.train_images,
                                                               small.train_labels))
    np.testing.assert_array_equal(subset(data, 23, seed=5).train_images, small.train_images)
    assert not np.array_equal(subset(data, 23, seed=6).train_images, small.train_images)
    assert small.test_images is data.test_images
    with pytest.raises(ValueError, match='1..100'):
        subset(data, 101)


# ----------------------------------------------------------------------------- batches

def reference_augment(x, offset_y, offset_x, flip, pad=4):
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.stack([padded[i, :, oy:oy + 32, ox:ox + 32]
                    for i, (oy, ox) in enumerate(zip(offset_y, offset_x))])
    return np.where(np.asarray(flip, bool)[:, None, None, None], out[..., ::-1], out)


def random_images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def test_pad_crop_flip_matches_numpy():
    x = random_images(6).astype(np.float32)
    offset_y, offset_x = np.array([0, 8, 4, 2, 7, 0]), np.array([0, 8, 4, 5, 1, 8])
    flip = np.array([0, 1, 0, 1, 1, 0])
    out = pad_crop_flip(mx.nd.array(x), offset_y, offset_x, flip).asnumpy()
    np.testing.assert_array_equal(out, reference_augment(x, offset_y, offset_x, flip))
    np.testing.assert_array_equal(out[2], x[2])  # offset (pad, pad) without flip is the image
    np.testing.assert_array_equal(out[0, :, :4, :], 0)  # top-left crop shows the zero border
    np.testing.assert_array_equal(out[1, :, 4:, :4], 0)  # flipped bottom-right: border on left


def test_flip_only_mirrors_columns():
    x = random_images(2).astype(np.float32)
    out = pad_crop_flip(mx.nd.array(x), [4, 4], [4, 4], [1, 0]).asnumpy()
    np.testing.assert_array_equal(out[0], x[0][:, :, ::-1])
    np.testing.assert_array_equal(out[1], x[1])


def test_shapes_lengths_and_dtypes():
    images, labels = random_images(50), np.arange(50) % 10
    train = CifarBatches(images, labels, 16, train=True)
    test = CifarBatches(images, labels, 16, train=False)
    assert len(train) == 3 and len(test) == 4
    assert [x.shape[0] for x, _ in train] == [16, 16, 16]
    test_batches = list(test)
    assert [x.shape for x, _ in test_batches][-1] == (2, 3, 32, 32)
    x, y = test_batches[0]
    assert x.dtype == np.float32 and y.dtype == np.float32 and y.shape == (16,)
    assert len(CifarBatches(images, labels, 16, train=True, max_batches=2)) == 2
    assert len(list(CifarBatches(images, labels, 16, train=False, max_batches=1))) == 1


def test_constant_image_normalises_to_expected_value():
    images = np.zeros((4, 3, 32, 32), np.uint8)
    images[:, 0], images[:, 1], images[:, 2] = 200, 100, 50
    x, _ = next(iter(CifarBatches(images, np.zeros(4), 4, train=False)))
    expected = [(200 - 125.3) / 63.0, (100 - 123.0) / 62.1, (50 - 113.9) / 66.7]
    for channel, value in enumerate(expected):
        np.testing.assert_allclose(x.asnumpy()[:, channel], value, rtol=1e-6)


@pytest.mark.parametrize('pad_fill', ['black', 'mean'])
def test_training_batch_follows_its_plan(pad_fill):
    images, labels = random_images(40), np.arange(40) % 10
    batches = CifarBatches(images, labels, 8, train=True, seed=3, pad_fill=pad_fill)
    batches.set_epoch(2)
    plan = batches.epoch_plan(2)
    got = list(batches)[1]
    part = slice(8, 16)
    order = plan.order[part]
    raw = images[order].astype(np.float32)
    if pad_fill == 'black':  # pad the 0-255 image with 0, then normalise
        expected = (reference_augment(raw, plan.offset_y[part], plan.offset_x[part],
                                      plan.flip[part]) - MEAN) / STD
    else:  # normalise, then pad with 0
        expected = reference_augment((raw - MEAN) / STD, plan.offset_y[part],
                                     plan.offset_x[part], plan.flip[part])
    np.testing.assert_allclose(got[0].asnumpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[1].asnumpy(), labels[order])
    assert set(plan.offset_y) <= set(range(9)) and set(plan.flip) <= {0, 1}
    assert len(set(plan.offset_y)) > 1 and plan.flip.min() == 0 and plan.flip.max() == 1


def test_epochs_reshuffle_reproducibly():
    images, labels = random_images(40), np.arange(40)

    def epoch_batches(loader):
        return [(x.asnumpy(), y.asnumpy()) for x, y in loader]

    first = CifarBatches(images, labels, 8, train=True, seed=1)
    epoch0, epoch1 = epoch_batches(first), epoch_batches(first)
    resumed = CifarBatches(images, labels, 8, train=True, seed=1)
    resumed.set_epoch(1)
    for (xa, ya), (xb, yb) in zip(epoch1, epoch_batches(resumed)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    labels0 = np.concatenate([y for _, y in epoch0])
    assert sorted(labels0) == list(range(40))  # a permutation: no repeats within an epoch
    assert not np.array_equal(labels0, np.concatenate([y for _, y in epoch1]))
    other_seed = epoch_batches(CifarBatches(images, labels, 8, train=True, seed=2))
    assert not np.array_equal(labels0, np.concatenate([y for _, y in other_seed]))


def test_max_batches_keeps_the_first_batches():
    images, labels = random_images(40), np.arange(40)
    full = list(CifarBatches(images, labels, 8, train=True, seed=4))
    short = list(CifarBatches(images, labels, 8, train=True, seed=4, max_batches=2))
    assert len(short) == 2
    np.testing.assert_array_equal(short[1][0].asnumpy(), full[1][0].asnumpy())


def test_test_mode_covers_every_image_once_in_order():
    images, labels = random_images(37), np.arange(37) % 10
    batches = list(CifarBatches(images, labels, 10, train=False))
    x = np.concatenate([x.asnumpy() for x, _ in batches])
    y = np.concatenate([y.asnumpy() for _, y in batches])
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x, (images.astype(np.float32) - MEAN) / STD, rtol=1e-6, atol=1e-6)


def test_rejects_bad_inputs():
    images = random_images(10)
    with pytest.raises(ValueError, match='uint8'):
        CifarBatches(images.astype(np.float32), np.zeros(10), 4, train=True)
    with pytest.raises(ValueError, match='labels must have shape'):
        CifarBatches(images, np.zeros(9), 4, train=True)
    with pytest.raises(ValueError, match='at least one full batch'):
        CifarBatches(images, np.zeros(10), 16, train=True)
    with pytest.raises(ValueError, match='pad_fill'):
        CifarBatches(images, np.zeros(10), 4, train=True, pad_fill='edge')
