"""ImageNet from MXNet RecordIO files (.rec + .idx, as written by MXNet's im2rec.py).

Decoding and augmentation run in C++ threads inside `mx.io.ImageRecordIter`:

* training: random resized crop (area 8-100 %, aspect ratio 3/4-4/3) to image_size, random
  horizontal flip, brightness/contrast/saturation jitter 0.4 and PCA lighting noise 0.1 (the
  usual ResNet recipe, as gluoncv's train_imagenet.py; the paper does not state its
  augmentation);
* validation: shorter side resized to image_size / 0.875 (256 for 224), then the centre crop
  ("validation accuracy from center crops", SPEC 2.5).

Both normalise with the ImageNet channel mean and standard deviation. For data-parallel training
on several machines each worker reads its own part of the file (`num_parts`, `part_index`).
:class:`RecordBatches` serves (data, label) batches in the form `train/loop.py` takes.

`write_tiny_recordio` makes a small RecordIO data set of random JPEGs for tests and smoke runs.
"""
import os

import mxnet as mx
import numpy as np

from ..errors import DataError

# RGB statistics of ImageNet on the 0-255 scale.
IMAGENET_MEAN = (123.68, 116.779, 103.939)
IMAGENET_STD = (58.393, 57.12, 57.375)
CENTER_CROP_FRACTION = 0.875
CLASS_COLOUR_SEED = 1234


def default_idx_path(rec_path):
    """The index file next to a .rec file: `train.rec` -> `train.idx`."""
    return os.path.splitext(rec_path)[0] + '.idx'


def count_records(idx_path):
    """Number of records of a RecordIO file, read off its index (one line per record)."""
    with open(idx_path) as f:
        return sum(1 for line in f if line.strip())


def record_iter(rec_path, batch_size, image_size=224, train=True, idx_path=None, num_parts=1,
                part_index=0, num_workers=4, seed=0):
    """An `mx.io.ImageRecordIter` over `rec_path` with the augmentation of the module docstring.

    `batch_size` is the batch of this process (all its devices together). The last batch of an
    epoch is filled up from the start of the data and marked by `batch.pad`; the training loop
    uses only whole batches (see `batches_per_epoch`) and evaluation skips the padding.
    """
    idx_path = idx_path or default_idx_path(rec_path)
    for path in (rec_path, idx_path):
        if not os.path.isfile(path):
            raise FileNotFoundError('RecordIO file %s not found' % path)
    if not 0 <= part_index < num_parts:
        raise ValueError('part_index %r must be in [0, num_parts=%r)' % (part_index, num_parts))
    options = dict(
        path_imgrec=rec_path, path_imgidx=idx_path, data_shape=(3, image_size, image_size),
        batch_size=batch_size, num_parts=num_parts, part_index=part_index,
        preprocess_threads=max(1, num_workers), seed=seed, verbose=False,
        mean_r=IMAGENET_MEAN[0], mean_g=IMAGENET_MEAN[1], mean_b=IMAGENET_MEAN[2],
        std_r=IMAGENET_STD[0], std_g=IMAGENET_STD[1], std_b=IMAGENET_STD[2])
    if train:
        options.update(shuffle=True, random_resized_crop=True, min_random_area=0.08,
                       max_random_area=1.0, min_aspect_ratio=3.0 / 4.0, max_aspect_ratio=4.0 / 3.0,
                       rand_mirror=True, brightness=0.4, contrast=0.4, saturation=0.4,
                       pca_noise=0.1)
    else:
        options.update(shuffle=False, resize=int(round(image_size / CENTER_CROP_FRACTION)),
                       rand_crop=False)  # no random crop = centre crop
    return mx.io.ImageRecordIter(**options)


def batches_per_epoch(num_records, batch_size, num_parts=1):
    """Whole batches per epoch that every one of `num_parts` workers can read from its part.

    All workers of a synchronous job must take the same number of steps, or the last step of the
    longer ones waits for ever; each worker's part holds at least floor(num_records / num_parts)
    records.
    """
    steps = (num_records // num_parts) // batch_size
    if steps < 1:
        raise ValueError('%d records split into %d parts do not fill one batch of %d'
                         % (num_records, num_parts, batch_size))
    return steps


def write_tiny_recordio(prefix, num_images=48, classes=4, min_size=40, max_size=72, seed=0):
    """Write `prefix.rec` and `prefix.idx`: random JPEGs of random sizes with labels 0..classes-1.

    Each class has its own mean colour, the same in every file (whatever the seed), so a network
    can learn something from the images and be checked on another file. Returns (rec_path,
    idx_path).
    """
    colours = np.random.RandomState(CLASS_COLOUR_SEED).randint(40, 216, size=(classes, 3))
    rng = np.random.RandomState(seed)
    rec_path, idx_path = prefix + '.rec', prefix + '.idx'
    writer = mx.recordio.MXIndexedRecordIO(idx_path, rec_path, 'w')
    try:
        for i in range(num_images):
            label = i % classes
            h, w = rng.randint(min_size, max_size + 1, size=2)
            noise = rng.randint(-40, 41, size=(h, w, 3))
            image = np.clip(colours[label] + noise, 0, 255).astype(np.uint8)  # BGR, as cv2
            header = mx.recordio.IRHeader(flag=0, label=float(label), id=i, id2=0)
            writer.write_idx(i, mx.recordio.pack_img(header, image, quality=90, img_fmt='.jpg'))
    finally:
        writer.close()
    return rec_path, idx_path


class RecordBatches:
    """(data, label) NDArray batches of a RecordIO file, in the form the training loop takes.

    Training (`train=True`): each epoch is a fresh shuffled iterator seeded by (seed, epoch), so
    a resumed run sees the same order, and yields exactly `len(self)` whole batches (wrapping
    around if a part runs short), so that all workers of a synchronous job take the same number
    of steps. Evaluation: one pass over the whole file in order, without the padding that fills
    up the last batch. `max_batches` caps the batches per epoch (smoke tests). As with any
    MXNet data iterator, a batch's arrays are refilled when the next batch is drawn: use (or
    copy) each batch before drawing the next.
    """

    def __init__(self, rec_path, batch_size, image_size=224, train=True, idx_path=None,
                 num_parts=1, part_index=0, num_workers=4, seed=0, max_batches=None):
        self.idx_path = idx_path or default_idx_path(rec_path)
        self.train = train
        self._options = dict(rec_path=rec_path, batch_size=batch_size, image_size=image_size,
                             train=train, idx_path=self.idx_path, num_parts=num_parts,
                             part_index=part_index, num_workers=num_workers)
        self.seed, self.epoch = seed, 0
        for path in (rec_path, self.idx_path):
            if not os.path.isfile(path):
                raise DataError('%s: no such file (a RecordIO file and its .idx index are '
                                'needed; tools/im2rec.py of MXNet writes both)' % path)
        records = count_records(self.idx_path)
        if train:
            self.batches = batches_per_epoch(records, batch_size, num_parts)
        else:
            self.batches = -(-records // batch_size)
        if max_batches is not None:
            self.batches = min(self.batches, max_batches)

    def set_epoch(self, epoch):
        """Select the shuffle of epoch `epoch` (called by the training loop)."""
        self.epoch = int(epoch)

    def __len__(self):
        return self.batches

    def __iter__(self):
        if self.train:
            seed = (self.seed * 1000003 + self.epoch) % (2 ** 31)
            return self._whole_batches(record_iter(seed=seed, **self._options))
        # A fresh iterator for every pass: after reset() MXNet 1.9's ImageRecordIter starts the
        # next pass where the padding of the last batch ended and reports a stale `pad`.
        return self._unpadded_batches(record_iter(**self._options))

    def _whole_batches(self, it):
        taken = 0
        while taken < self.batches:
            empty = True
            for batch in it:
                empty = False
                yield batch.data[0], batch.label[0]
                taken += 1
                if taken == self.batches:
                    return
            if empty:
                raise RuntimeError('%s: no batches in this part' % self._options['rec_path'])
            it.reset()  # only when a part holds fewer whole batches than counted (it should not)

    def _unpadded_batches(self, it):
        for i, batch in enumerate(it):
            if i == self.batches:
                return
            data, label = batch.data[0], batch.label[0]
            if batch.pad:
                keep = data.shape[0] - batch.pad
                data, label = data[:keep], label[:keep]
            yield data, label
