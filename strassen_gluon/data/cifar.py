"""CIFAR-10: find, check, download and serve the python-version batch files.

Where the data is looked for (the first that is set wins):

1. the ``data_dir`` argument (the commands' ``--data_dir``);
2. the environment variable ``STRASSEN_CIFAR10_DIR``;
3. ``~/.mxnet/datasets/cifar10`` (MXNet's dataset cache folder).

That folder may hold the seven files directly (``data_batch_1`` ... ``data_batch_5``,
``test_batch``, ``batches.meta``) or hold ``cifar-10-batches-py/`` with them, as the official
archive extracts. File checksums are not compared: any copy that has the right structure loads
(some copies store the images in another order, so their md5s differ from the official ones).

Every file is checked before anything is returned, so training never starts on bad data:

* files missing (and no download, or the download failed) -> :class:`CifarNotFoundError`, a
  ``FileNotFoundError`` naming the folder, the missing files and how to provide them;
* a file that does not unpickle, lacks keys, or has wrong types, shapes, counts or labels ->
  :class:`CifarFormatError`, a ``ValueError`` naming the file and what is wrong.

``strict_counts=True`` (the default, for real runs) also requires the official sizes: 10,000
images per file, so 50,000 train and 10,000 test. Tests with tiny generated files pass
``strict_counts=False``; every other check still applies. Commands that train should expose the
flag under the same name.

Batches (:class:`CifarBatches`) stay on the MXNet context and are augmented a whole batch at a
time with NDArray operators, as airbench does, with no Python loop over images.
"""
import collections
import dataclasses
import hashlib
import http.client
import os
import pathlib
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request

import mxnet as mx
import numpy as np

from ..errors import DataError

ENV_VAR = 'STRASSEN_CIFAR10_DIR'
DEFAULT_DATA_DIR = os.path.join('~', '.mxnet', 'datasets', 'cifar10')
CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CIFAR10_MD5 = 'c58f30108f718f92721af3b95e74349a'
ARCHIVE_NAME = 'cifar-10-python.tar.gz'
ARCHIVE_FOLDER = 'cifar-10-batches-py'
TRAIN_FILES = tuple('data_batch_%d' % i for i in range(1, 6))
TEST_FILE = 'test_batch'
META_FILE = 'batches.meta'
REQUIRED_FILES = TRAIN_FILES + (TEST_FILE, META_FILE)

IMAGES_PER_FILE = 10000
PIXELS_PER_IMAGE = 3 * 32 * 32
NUM_CLASSES = 10

# The original's normalisation (SPEC 2.2), per channel R, G, B on the 0-255 scale.
CIFAR_MEAN = (125.3, 123.0, 113.9)
CIFAR_STD = (63.0, 62.1, 66.7)


class CifarNotFoundError(DataError, FileNotFoundError):
    """CIFAR-10 files are missing (and were not downloaded).

    ``folder`` is the folder that was checked, ``missing`` the missing file names.
    """

    def __init__(self, message, folder=None, missing=()):
        super().__init__(message)
        self.folder = folder
        self.missing = list(missing)

    def __str__(self):
        return self.args[0]


class CifarFormatError(DataError, ValueError):
    """A CIFAR-10 file exists but is not a valid python-version batch; ``path`` names it."""

    def __init__(self, path, problem):
        super().__init__('%s: %s. Replace this file with a good copy (or delete the folder\'s '
                         'CIFAR-10 files and download them again).' % (path, problem))
        self.path = path


class CifarDownloadError(DataError, OSError):
    """The archive could not be fetched, failed its md5 check, or was unsafe to extract."""


@dataclasses.dataclass(frozen=True, repr=False)
class CifarData:
    """Images as uint8 (N, 3, 32, 32) in RGB plane order, labels int32 (N,), class names."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list
    folder: str = ''

    def __repr__(self):
        return 'CifarData(train=%d, test=%d, classes=%d, folder=%r)' % (
            len(self.train_labels), len(self.test_labels), len(self.classes), self.folder)


# ----------------------------------------------------------------------------- locating files

def resolve_data_dir(data_dir=None):
    """The folder to use: ``data_dir``, else $STRASSEN_CIFAR10_DIR, else the MXNet cache."""
    chosen = data_dir or os.environ.get(ENV_VAR) or DEFAULT_DATA_DIR
    return os.path.abspath(os.path.expanduser(os.fspath(chosen)))


def _missing_files(folder):
    return [name for name in REQUIRED_FILES if not os.path.isfile(os.path.join(folder, name))]


def find_batch_folder(root):
    """Return ``(folder, missing)``: whichever of root and root/cifar-10-batches-py lacks fewer
    files (root on a tie), and the names it lacks."""
    candidates = [root, os.path.join(root, ARCHIVE_FOLDER)]
    return min(((folder, _missing_files(folder)) for folder in candidates),
               key=lambda found: len(found[1]))


def _not_found_message(folder, missing, root=None, download_failure=None):
    """The one message for missing data; ``root`` is given when both candidates were searched."""
    where = folder
    if root is not None:
        where += ' (also looked in %s)' % (os.path.join(root, ARCHIVE_FOLDER)
                                           if folder == root else root)
    root = folder if root is None else root
    lines = ['CIFAR-10 data is missing in %s: %s not found.' % (where, ', '.join(missing))]
    if download_failure:
        lines.append('  Downloading it failed: %s.' % download_failure)
    lines += [
        '  To provide the data, do one of:',
        '  - copy the python-version files (%s; the contents of %s/) into %s;'
        % (', '.join(REQUIRED_FILES), ARCHIVE_FOLDER, root),
        '  - pass --data_dir DIR (data_dir=DIR in Python) naming a folder that holds them '
        'or holds %s/;' % ARCHIVE_FOLDER,
        '  - set the environment variable %s=DIR;' % ENV_VAR,
    ]
    if download_failure:
        lines.append('  - or retry when this machine can reach the download address.')
    else:
        lines.append('  - or allow the download (leave out --no_download; download=True in '
                     'Python; needs internet: %s).' % CIFAR10_URL)
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- reading files

class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds, so a tampered file cannot run code."""
    ALLOWED = {
        ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
        ('numpy', 'ndarray'), ('numpy', 'dtype'),
        # Python 3 writes bytes as _codecs.encode(str, 'latin1') under protocol 2.
        ('_codecs', 'encode'),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                'refusing to load %s.%s (a CIFAR-10 batch holds only a dict of numpy arrays, '
                'lists, numbers and strings)' % (module, name))
        return super().find_class(module, name)


def _read_dict(path):
    try:
        with open(path, 'rb') as f:
            obj = _BatchUnpickler(f, encoding='bytes').load()
    except Exception as err:  # truncation and corruption surface as many exception types
        raise CifarFormatError(path, 'cannot unpickle it (%s: %s); the file is truncated or '
                                     'corrupt' % (type(err).__name__, err)) from None
    if not isinstance(obj, dict):
        raise CifarFormatError(path, 'expected a pickled dict, found %s' % type(obj).__name__)
    # Files written by Python 2 have bytes keys, files written by Python 3 may have str keys.
    return {key.decode('latin1') if isinstance(key, bytes) else key: value
            for key, value in obj.items()}


def _require_keys(path, record, keys):
    absent = [key for key in keys if key not in record]
    if absent:
        raise CifarFormatError(path, 'missing key(s) %s; keys present: %s'
                               % (', '.join(absent), ', '.join(sorted(map(str, record)))))


def read_batch_file(path, strict_counts=True):
    """Read one data_batch_* / test_batch file: images uint8 (N, 3, 32, 32), labels int32."""
    record = _read_dict(path)
    _require_keys(path, record, ('data', 'labels'))
    data = record['data']
    if not isinstance(data, np.ndarray):
        raise CifarFormatError(path, "'data' is a %s, expected a numpy array"
                               % type(data).__name__)
    if data.dtype != np.uint8:
        raise CifarFormatError(path, "'data' has dtype %s, expected uint8" % data.dtype)
    rows_ok = data.shape[0] == IMAGES_PER_FILE if strict_counts else data.shape[0] >= 1
    if data.ndim != 2 or data.shape[1] != PIXELS_PER_IMAGE or not rows_ok:
        expected = '(%d, %d)' % (IMAGES_PER_FILE, PIXELS_PER_IMAGE) if strict_counts \
            else '(N, %d) with N >= 1' % PIXELS_PER_IMAGE
        raise CifarFormatError(path, "'data' has shape %s, expected %s"
                               % (tuple(data.shape), expected))
    labels = np.asarray(record['labels'])
    if labels.ndim != 1 or labels.dtype.kind not in 'iu':
        raise CifarFormatError(path, "'labels' must be a flat list of integers (got dtype %s, "
                                     "shape %s)" % (labels.dtype, labels.shape))
    if len(labels) != len(data):
        raise CifarFormatError(path, "%d labels for %d images" % (len(labels), len(data)))
    bad = labels[(labels < 0) | (labels >= NUM_CLASSES)]
    if bad.size:
        raise CifarFormatError(path, '%d labels outside 0-%d, e.g. %s'
                               % (bad.size, NUM_CLASSES - 1, bad[:5].tolist()))
    # Each row is 1024 red, 1024 green, 1024 blue values, each plane 32x32 row-major: CHW.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int32)


def read_class_names(path):
    """The 10 class names from batches.meta, as str."""
    record = _read_dict(path)
    _require_keys(path, record, ('label_names',))
    names = record['label_names']
    if not isinstance(names, (list, tuple)) or len(names) != NUM_CLASSES \
            or not all(isinstance(name, (bytes, str)) for name in names):
        raise CifarFormatError(path, "'label_names' must be a list of %d strings, found %r"
                               % (NUM_CLASSES, names))
    return [name.decode('utf-8') if isinstance(name, bytes) else name for name in names]


def read_cifar10_folder(folder, strict_counts=True):
    """Read and check the seven files in ``folder`` (no search, no download)."""
    folder = os.path.abspath(folder)
    missing = _missing_files(folder)
    if missing:
        raise CifarNotFoundError(_not_found_message(folder, missing), folder, missing)
    train = [read_batch_file(os.path.join(folder, name), strict_counts) for name in TRAIN_FILES]
    test_images, test_labels = read_batch_file(os.path.join(folder, TEST_FILE), strict_counts)
    classes = read_class_names(os.path.join(folder, META_FILE))
    return CifarData(train_images=np.concatenate([images for images, _ in train]),
                     train_labels=np.concatenate([labels for _, labels in train]),
                     test_images=test_images, test_labels=test_labels,
                     classes=classes, folder=folder)


def load_cifar10(data_dir=None, download=True, strict_counts=True, url=CIFAR10_URL,
                 md5=CIFAR10_MD5):
    """Load CIFAR-10, downloading it into the data folder first if files are missing.

    data_dir: see the module docstring for how the folder is chosen.
    download: fetch ``url`` (md5-checked) when files are missing; False raises instead.
    strict_counts: also require the official 50,000 / 10,000 images (False for tiny test data).
    Raises CifarNotFoundError (a FileNotFoundError) or CifarFormatError (a ValueError).
    """
    root = resolve_data_dir(data_dir)
    folder, missing = find_batch_folder(root)
    if missing:
        if not download:
            raise CifarNotFoundError(_not_found_message(folder, missing, root), folder, missing)
        try:
            folder = download_cifar10(root, url=url, md5=md5)
        except CifarDownloadError as err:
            # One message with the location, the reason and the remedies; the reason is in it.
            raise CifarNotFoundError(_not_found_message(folder, missing, root, str(err)),
                                     folder, missing) from None
    return read_cifar10_folder(folder, strict_counts)


# ----------------------------------------------------------------------------- download

def _md5_of(path):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url, archive, md5, timeout):
    """Download to a temporary name next to ``archive``; rename only after the md5 matches."""
    partial = None
    try:
        try:
            handle, partial = tempfile.mkstemp(prefix=ARCHIVE_NAME + '.', suffix='.part',
                                               dir=os.path.dirname(archive))
            digest = hashlib.md5(usedforsecurity=False)
            with os.fdopen(handle, 'wb') as out, \
                    urllib.request.urlopen(url, timeout=timeout) as source:
                for chunk in iter(lambda: source.read(1 << 20), b''):
                    digest.update(chunk)
                    out.write(chunk)
        except (OSError, ValueError, http.client.HTTPException) as err:
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            raise CifarDownloadError('could not fetch %s (%s)' % (url, reason)) from err
        if digest.hexdigest() != md5.lower():
            raise CifarDownloadError('the file from %s has md5 %s, expected %s (damaged or not '
                                     'the official archive); it was deleted'
                                     % (url, digest.hexdigest(), md5))
        os.replace(partial, archive)
    finally:
        if partial is not None and os.path.exists(partial):
            os.remove(partial)


def _check_member(member):
    name = member.name
    parts = pathlib.PurePosixPath(name.replace('\\', '/')).parts
    if name.startswith(('/', '\\')) or os.path.isabs(name) or (parts and ':' in parts[0]) \
            or '..' in parts:
        raise CifarDownloadError('archive member %r points outside the extraction folder; '
                                 'refusing to extract' % name)
    if not (member.isfile() or member.isdir()):
        raise CifarDownloadError('archive member %r is a link or special file; refusing to '
                                 'extract' % name)


def _extract(archive, root):
    try:
        tar = tarfile.open(archive, 'r:gz')
    except (tarfile.TarError, OSError) as err:
        raise CifarDownloadError('cannot open %s as a tar.gz archive (%s)' % (archive, err))
    with tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member)
        scratch = tempfile.mkdtemp(prefix='.cifar10-extract-', dir=root)
        try:
            extra = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
            tar.extractall(scratch, members=members, **extra)
            extracted = os.path.join(scratch, ARCHIVE_FOLDER)
            lacking = _missing_files(extracted)
            if lacking:
                raise CifarDownloadError('the archive %s lacks %s/%s'
                                         % (archive, ARCHIVE_FOLDER, ', '.join(lacking)))
            target = os.path.join(root, ARCHIVE_FOLDER)
            if not os.path.exists(target):
                os.replace(extracted, target)
            else:
                # Replace every file so the folder never mixes batches of different copies.
                for name in os.listdir(extracted):
                    os.replace(os.path.join(extracted, name), os.path.join(target, name))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def download_cifar10(root, url=CIFAR10_URL, md5=CIFAR10_MD5, timeout=60.0):
    """Fetch and safely extract the archive into ``root``; return root/cifar-10-batches-py.

    An archive already in ``root`` with the right md5 is reused. Raises CifarDownloadError.
    A failed or interrupted download removes the folders it created (if still empty): nothing
    is left behind but a complete, md5-checked archive.
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    created = _folders_to_create(root)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as err:
        raise CifarDownloadError('cannot create %s (%s)' % (root, err)) from err
    done = False
    try:
        archive = os.path.join(root, ARCHIVE_NAME)
        if not (os.path.isfile(archive) and _md5_of(archive) == md5.lower()):
            _fetch(url, archive, md5, timeout)
        _extract(archive, root)
        done = True
    finally:
        if not done:
            for folder in created:  # deepest first; stops at the first one not empty
                try:
                    os.rmdir(folder)
                except OSError:
                    break
    return os.path.join(root, ARCHIVE_FOLDER)


def _folders_to_create(path):
    """The folders ``os.makedirs(path)`` would create, deepest first."""
    missing = []
    while not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


# ----------------------------------------------------------------------------- subsets

def subset(data, n, seed=0):
    """A class-balanced, seeded random subset of ``n`` training images; the test set is kept.

    Each class present gets n // k images (k classes); the n % k left over go one each to
    randomly chosen classes. The chosen images keep their original relative order.
    """
    labels = data.train_labels
    if not 1 <= n <= len(labels):
        raise ValueError('subset size must be in 1..%d, got %d' % (len(labels), n))
    rng = np.random.default_rng(seed)
    present = np.unique(labels)
    quota = np.full(len(present), n // len(present))
    quota[rng.permutation(len(present))[:n % len(present)]] += 1
    chosen = []
    for cls, count in zip(present, quota):  # a loop over classes, not images
        members = np.flatnonzero(labels == cls)
        if count > len(members):
            raise ValueError('class %d has only %d training images, the subset needs %d'
                             % (cls, len(members), count))
        chosen.append(rng.choice(members, size=count, replace=False))
    keep = np.sort(np.concatenate(chosen))
    return dataclasses.replace(data, train_images=data.train_images[keep],
                               train_labels=labels[keep])


# ----------------------------------------------------------------------------- batches

def pad_crop_flip(x, offset_y, offset_x, flip, pad=4):
    """Zero-pad NCHW ``x`` by ``pad``, cut each sample's HxW window at its offsets, mirror it.

    offset_y, offset_x: ints in [0, 2*pad], one per sample (pad means no shift);
    flip: 0/1 per sample, 1 mirrors left-right. They may be numpy arrays or lists.
    The whole batch is one gather from the padded tensor, with no loop over images: sample i
    reads padded[i, c, offset_y[i] + y, offset_x[i] + x'] with x' = x, or W-1-x when flipped.
    """
    batch, channels, height, width = x.shape
    ctx = x.context
    padded_h, padded_w = height + 2 * pad, width + 2 * pad
    padded = mx.nd.pad(x, mode='constant', pad_width=(0, 0, 0, 0, pad, pad, pad, pad),
                       constant_value=0)
    c, y, w = np.ogrid[:channels, :height, :width]
    within_sample = (c * padded_h + y) * padded_w + w
    sample_start = (np.arange(batch) * channels * padded_h
                    + np.asarray(offset_y)) * padded_w + np.asarray(offset_x)
    mirror_shift = (width - 1) - 2 * np.arange(width)  # moves column x to W-1-x

    def on_ctx(array, shape):
        return mx.nd.array(np.asarray(array).reshape(shape), ctx=ctx, dtype='int32')

    index = mx.nd.broadcast_add(on_ctx(within_sample, (1, channels, height, width)),
                                on_ctx(sample_start, (batch, 1, 1, 1)))
    index = index + mx.nd.broadcast_mul(on_ctx(flip, (batch, 1, 1, 1)),
                                        on_ctx(mirror_shift, (1, 1, 1, width)))
    return mx.nd.take(padded.reshape((-1,)), index)


EpochPlan = collections.namedtuple('EpochPlan', 'order offset_y offset_x flip')
EpochPlan.__doc__ = """Random draws of one training epoch: image order and per-image crop/flip."""


class CifarBatches:
    """Batches of normalised float32 images (B, 3, 32, 32) and float32 labels (B,) on ``ctx``.

    train=True: each epoch reshuffles, then zero-pads by 4, takes a random 32x32 crop and a random
    horizontal flip per image, all as batch-wide NDArray operations; the last partial batch is
    dropped (every batch has ``batch_size`` images, as the update count assumes), so
    len() = N // batch_size.
    train=False: no augmentation, the stored order, and the last partial batch kept, so an
    evaluation sees every image exactly once (the original padded it with repeated images).
    max_batches caps the batches per epoch (for short runs and benchmarks).

    The random draws are a pure function of (seed, epoch) (see :meth:`epoch_plan`), so a resumed
    run that calls ``set_epoch(e)`` sees the same order and augmentation. Iterating the object
    uses ``self.epoch`` and then advances it by one.

    pad_fill: 'black' (default) pads the raw image with 0 before normalising, as the original's
    ImageRecordIter(pad=4, fill_value=0) does (it pads the 0-255 image, then normalises), so the
    border is black, about -2 after normalisation. 'mean' pads the normalised image with 0, i.e.
    with the per-channel mean colour, as many PyTorch CIFAR pipelines do.
    Labels are float32, MXNet's convention, so they compare directly with argmax outputs.
    """

    def __init__(self, images, labels, batch_size, train, ctx=None, seed=0, max_batches=None,
                 pad=4, pad_fill='black'):
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError('images must be uint8 (N, 3, H, W), got %s %s'
                             % (images.dtype, images.shape))
        if labels.shape != (len(images),):
            raise ValueError('labels must have shape (%d,), got %s' % (len(images), labels.shape))
        if batch_size < 1:
            raise ValueError('batch_size must be positive, got %d' % batch_size)
        if train and len(images) < batch_size:
            raise ValueError('training needs at least one full batch: %d images < batch size %d'
                             % (len(images), batch_size))
        if max_batches is not None and max_batches < 1:
            raise ValueError('max_batches must be positive or None, got %r' % (max_batches,))
        if pad_fill not in ('black', 'mean'):
            raise ValueError("pad_fill must be 'black' or 'mean', got %r" % (pad_fill,))
        self.ctx = ctx if ctx is not None else mx.cpu()
        self.batch_size = batch_size
        self.train = bool(train)
        self.seed = seed
        self.max_batches = max_batches
        self.pad = pad
        self.pad_fill = pad_fill
        self.epoch = 0
        self.num_images = len(images)
        # uint8 on the device: a quarter of float32's memory, converted one batch at a time.
        self._images = mx.nd.array(images, ctx=self.ctx, dtype='uint8')
        self._labels = mx.nd.array(labels, ctx=self.ctx, dtype='float32')
        self._mean = mx.nd.array(CIFAR_MEAN, ctx=self.ctx).reshape((1, 3, 1, 1))
        self._std = mx.nd.array(CIFAR_STD, ctx=self.ctx).reshape((1, 3, 1, 1))

    def __len__(self):
        full, rest = divmod(self.num_images, self.batch_size)
        count = full if self.train else full + (rest > 0)
        return count if self.max_batches is None else min(count, self.max_batches)

    @property
    def images_per_epoch(self):
        """How many images one pass yields (all test images, unless max_batches cuts it)."""
        if self.train:
            return len(self) * self.batch_size
        return min(self.num_images, len(self) * self.batch_size)

    def set_epoch(self, epoch):
        """Make the next iteration use ``epoch``'s shuffle and augmentation."""
        self.epoch = int(epoch)

    def epoch_plan(self, epoch):
        """The order and augmentation of a training epoch (drawn for all full batches, so
        max_batches only shortens the epoch and never changes what the first batches see)."""
        rng = np.random.default_rng([self.seed, epoch])
        used = self.num_images // self.batch_size * self.batch_size
        order = rng.permutation(self.num_images)[:used]
        offset_y = rng.integers(0, 2 * self.pad + 1, size=used)
        offset_x = rng.integers(0, 2 * self.pad + 1, size=used)
        flip = rng.integers(0, 2, size=used)
        return EpochPlan(order, offset_y, offset_x, flip)

    def normalize(self, x):
        """(x - mean) / std per channel, for float32 NCHW on the 0-255 scale."""
        return mx.nd.broadcast_div(mx.nd.broadcast_sub(x, self._mean), self._std)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self.batches(epoch)

    def batches(self, epoch=None):
        """Yield (data, label) for one epoch, by default ``self.epoch`` (which is not advanced)."""
        epoch = self.epoch if epoch is None else epoch
        if self.train:
            yield from self._train_batches(epoch)
        else:
            yield from self._test_batches()

    def _train_batches(self, epoch):
        plan = self.epoch_plan(epoch)
        order = mx.nd.array(plan.order, ctx=self.ctx, dtype='int32')  # one copy per epoch
        size = self.batch_size
        for i in range(len(self)):
            part = slice(i * size, (i + 1) * size)
            index = order[part]
            x = mx.nd.take(self._images, index, axis=0).astype('float32')
            if self.pad_fill == 'mean':
                x = self.normalize(x)
            x = pad_crop_flip(x, plan.offset_y[part], plan.offset_x[part], plan.flip[part],
                              self.pad)
            if self.pad_fill == 'black':
                x = self.normalize(x)
            yield x, mx.nd.take(self._labels, index)

    def _test_batches(self):
        size = self.batch_size
        for i in range(len(self)):
            start, stop = i * size, min((i + 1) * size, self.num_images)
            x = self._images[start:stop].astype('float32')
            yield self.normalize(x), self._labels[start:stop]
