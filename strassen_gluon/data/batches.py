"""CIFAR-10 batches on the device: augmented a whole batch at a time with NDArray operators, as
airbench does, with no Python loop over images; every epoch's draws are a function of (seed,
epoch), so a resumed run sees the same batches."""
import collections

import mxnet as mx
import numpy as np

from .cifar import CIFAR_MEAN, CIFAR_STD


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
