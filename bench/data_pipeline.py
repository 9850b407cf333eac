"""Images per second of the CIFAR-10 training-batch pipeline alone: no model, no training.

Measures what CifarBatches(train=True) costs per image (gather, pad, random crop, flip,
normalise on the MXNet context), to compare with the training step's speed.

    python bench/data_pipeline.py --data_dir DIR [--batch_size 128] [--batches 200] [--ctx cpu]

Timing: a few untimed warm-up batches first; mx.nd.waitall() before each clock read, because
MXNet runs operators asynchronously.
"""
import argparse
import time

import mxnet as mx

from strassen_gluon.data import CifarBatches, load_cifar10


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data_dir', default=None,
                        help='CIFAR-10 folder (default: $STRASSEN_CIFAR10_DIR, else '
                             '~/.mxnet/datasets/cifar10)')
    parser.add_argument('--no_strict_counts', dest='strict_counts', action='store_false',
                        help='accept a copy without the official 50000/10000 images (tiny '
                             'test data)')
    parser.add_argument('--batch_size', type=int, default=128)
    parser.add_argument('--batches', type=int, default=200, help='timed batches')
    parser.add_argument('--warmup', type=int, default=5, help='untimed batches before timing')
    parser.add_argument('--ctx', default='cpu', help="'cpu' or 'gpu:N'")
    parser.add_argument('--pad_fill', default='black', choices=('black', 'mean'))
    return parser.parse_args(argv)


def parse_ctx(text):
    kind, _, index = text.partition(':')
    return mx.gpu(int(index or 0)) if kind == 'gpu' else mx.cpu()


def main(argv=None):
    args = parse_args(argv)
    tic = time.perf_counter()
    data = load_cifar10(args.data_dir, download=False, strict_counts=args.strict_counts)
    load_seconds = time.perf_counter() - tic
    print('loaded %s in %.2f s' % (data, load_seconds))

    ctx = parse_ctx(args.ctx)
    batches = CifarBatches(data.train_images, data.train_labels, args.batch_size, train=True,
                           ctx=ctx, seed=0, pad_fill=args.pad_fill)
    per_epoch = len(batches)
    timed_images = 0
    seen = 0
    epoch = 0
    start = None
    while seen < args.warmup + args.batches:
        batches.set_epoch(epoch)
        for x, _ in batches:
            if seen == args.warmup:
                mx.nd.waitall()
                start = time.perf_counter()
            if seen >= args.warmup:
                timed_images += x.shape[0]
            seen += 1
            if seen == args.warmup + args.batches:
                break
        epoch += 1
    mx.nd.waitall()
    seconds = time.perf_counter() - start
    print('train pipeline (augment, batch %d, %s, %d batches/epoch): %d images in %.2f s = '
          '%.0f images/s' % (args.batch_size, ctx, per_epoch, timed_images, seconds,
                             timed_images / seconds))


if __name__ == '__main__':
    main()
