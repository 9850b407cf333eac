"""Short real-data comparison: ST-ResNet-20 against the full-precision ResNet-20 on CIFAR-10.

    .venv/bin/python bench/cifar_short.py --data_dir ../shared/data/cifar10 --subset 10000 \\
        --epochs_fp 1 --epochs_quant 1 --epochs_frozen 1

Both models train on the same class-balanced subset with the same seed through the command
``python -m strassen_gluon.cifar10`` (in process); the Strassen model runs its three phases and
the dense model one phase of as many epochs in total, with the learning rate of the Strassen run's
phases epoch by epoch (0.1, then 0.01 and 0.001 where the ternary and frozen phases start). Prints both accuracies side by side with
the training images/s of each, and the images/s of the input pipeline alone (batches built and
augmented, the device synchronised, no model), so the two can be compared: if the pipeline is
many times faster than training, it is not the bottleneck.

Timings are wall-clock on whatever else the machine is doing; say so when quoting them.
"""
import argparse
import json
import os
import sys
import time

import mxnet as mx

from strassen_gluon import cifar10
from strassen_gluon.data import CifarBatches, load_cifar10, subset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data_dir', default=os.environ.get(
        'STRASSEN_CIFAR10_DIR', os.path.join(REPO, '..', 'shared', 'data', 'cifar10')))
    p.add_argument('--subset', type=int, default=10000, help='training images')
    p.add_argument('--epochs_fp', type=int, default=1)
    p.add_argument('--epochs_quant', type=int, default=1)
    p.add_argument('--epochs_frozen', type=int, default=1)
    p.add_argument('--batch_size', type=int, default=128)
    p.add_argument('--max_batches', type=int, default=None)
    p.add_argument('--max_eval_batches', type=int, default=None)
    p.add_argument('--pipeline_batches', type=int, default=60,
                   help='batches timed for the input pipeline alone')
    p.add_argument('--log_dir', default=os.path.join('runs', 'bench'))
    p.add_argument('--seed', type=int, default=321)
    return p.parse_args(argv)


def pipeline_images_per_s(data, batch_size, batches, seed):
    """Images/s of the training batches alone: gather, pad, crop, flip, normalise."""
    loader = CifarBatches(data.train_images, data.train_labels, batch_size, train=True,
                          seed=seed, max_batches=batches + 1)
    it = iter(loader)
    next(it)                       # untimed warm-up
    mx.nd.waitall()
    start, count = time.time(), 0
    for x, y in it:
        count += x.shape[0]
    mx.nd.waitall()                # the augmentation is asynchronous: wait before the clock
    return count / (time.time() - start)


def train(model, args, epochs, run_name, extra=()):
    argv = list(extra) + ['--model', model, '--data_dir', args.data_dir, '--train_subset', str(args.subset),
            '--epochs_fp', str(epochs[0]), '--epochs_quant', str(epochs[1]),
            '--epochs_frozen', str(epochs[2]), '--batch_size', str(args.batch_size),
            '--seed', str(args.seed), '--log_dir', args.log_dir, '--run_name', run_name,
            '--gpu_index', '-1']
    if args.max_batches:
        argv += ['--max_batches', str(args.max_batches)]
    if args.max_eval_batches:
        argv += ['--max_eval_batches', str(args.max_eval_batches)]
    rc = cifar10.main(argv)
    if rc:
        raise SystemExit('training %s failed (exit status %d)' % (model, rc))
    with open(os.path.join(args.log_dir, run_name, cifar10.SUMMARY_NAME)) as f:
        return json.load(f)


def main(argv=None):
    args = parse_args(argv)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    total = args.epochs_fp + args.epochs_quant + args.epochs_frozen
    st = train('st_resnet20', args, (args.epochs_fp, args.epochs_quant, args.epochs_frozen),
               'bench-st_resnet20-' + stamp)
    # The dense model gets the Strassen run's learning rate epoch by epoch (0.1, then 0.01 from
    # the ternary phase's first epoch, then 0.001 from the frozen phase's).
    steps = [args.epochs_fp, args.epochs_fp + args.epochs_quant]
    fp = train('resnet20', args, (total, 0, 0), 'bench-resnet20-' + stamp,
               extra=['--lr_steps_fp', ','.join(str(s) for s in steps)])
    data = subset(load_cifar10(args.data_dir, download=False), args.subset, seed=args.seed)
    pipe = pipeline_images_per_s(data, args.batch_size, args.pipeline_batches, args.seed)

    rows = [('', 'st_resnet20', 'resnet20'),
            ('epochs (phases)', '+'.join(str(v['epochs']) for v in st['phases'].values()),
             str(total)),
            ('final val acc', '%.2f%%' % (100 * st['val_acc']), '%.2f%%' % (100 * fp['val_acc'])),
            ('best val acc', '%.2f%%' % (100 * st['best_val_acc']),
             '%.2f%%' % (100 * fp['best_val_acc'])),
            ('train images/s', '%.0f' % st['images_per_s'], '%.0f' % fp['images_per_s']),
            ('train seconds', '%.0f' % st['train_seconds'], '%.0f' % fp['train_seconds'])]
    if st.get('cost') and fp.get('cost'):
        rows += [('mults / image', '{:,}'.format(st['mults']), '{:,}'.format(fp['mults'])),
                 ('adds / image', '{:,}'.format(st['adds']), '{:,}'.format(fp['adds'])),
                 ('model size MB', '%.3f' % (st['bits'] / 8e6), '%.3f' % (fp['bits'] / 8e6))]
    width = max(len(r[0]) for r in rows)
    print('\nCIFAR-10, %d training images, full test set%s, CPU'
          % (args.subset, '' if not args.max_eval_batches else ' (first %d batches)'
             % args.max_eval_batches))
    for r in rows:
        print('%-*s  %14s  %14s' % (width, r[0], r[1], r[2]))
    print('input pipeline alone: %.0f images/s (%.1fx the faster model\'s training speed)'
          % (pipe, pipe / max(st['images_per_s'], fp['images_per_s'])))
    return 0


if __name__ == '__main__':
    sys.exit(main())
