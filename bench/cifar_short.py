"""Short real-data comparison: ST-ResNet-20 against the full-precision ResNet-20 on CIFAR-10.

    .venv/bin/python bench/cifar_short.py --data_dir ../shared/data/cifar10 --subset 10000 \\
        --epochs_fp 1 --epochs_quant 1 --epochs_frozen 1

Both models train on the same class-balanced subset with the same seed through
``strassen_gluon.cifar10.train``; the Strassen model runs its three stages and the dense model
one stage of as many epochs in total, both with the same learning rate epoch by epoch: 0.1
through the Strassen run's first stage (no step inside it), then 0.01 where its ternary stage
starts and 0.001 where its frozen stage starts. Prints both accuracies side by side with the
training images/s of each, and the images/s of the input pipeline alone (batches built and
augmented, the device synchronised, no model), so the two can be compared: if the pipeline is
many times faster than training, it is not the bottleneck.

Timings are wall-clock on whatever else the machine is doing; say so when quoting them.
"""
import argparse
import os
import sys
import time

import mxnet as mx

from strassen_gluon import cifar10
from strassen_gluon.data import CifarBatches, load_cifar10, subset
from strassen_gluon.train.run import epoch_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data_dir', default=os.environ.get(
        'STRASSEN_CIFAR10_DIR', os.path.join(REPO, '..', 'shared', 'data', 'cifar10')))
    p.add_argument('--no_strict_counts', dest='strict_counts', action='store_false',
                   help='accept a copy without the official 50000/10000 images (tiny test data)')
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


def train(args, run_name, **fields):
    config = cifar10.CifarConfig(
        data_dir=args.data_dir, download=False, strict_counts=args.strict_counts,
        train_subset=args.subset, batch_size=args.batch_size, seed=args.seed, log_dir=args.log_dir, run_name=run_name,
        devices='-1', quiet=True, max_batches=args.max_batches,
        max_eval_batches=args.max_eval_batches, **fields)
    return cifar10.train(config)


def lr_text(summary):
    """The learning rate of every epoch as 'rate x epochs' runs, from the run's log."""
    rates = [r['lr'] for r in epoch_log(summary['run_dir'])]
    runs = []
    for rate in rates:
        if runs and runs[-1][0] == rate:
            runs[-1][1] += 1
        else:
            runs.append([rate, 1])
    return ' '.join('%gx%d' % (rate, n) for rate, n in runs)


def main(argv=None):
    args = parse_args(argv)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    total = args.epochs_fp + args.epochs_quant + args.epochs_frozen
    # One learning rate per epoch for both: 0.1, then 0.01 from the ternary stage's first
    # epoch, then 0.001 from the frozen stage's (no steps inside a stage).
    st = train(args, 'bench-st_resnet20-' + stamp, model='st_resnet20',
               epochs_fp=args.epochs_fp, epochs_quant=args.epochs_quant,
               epochs_frozen=args.epochs_frozen, lr_steps_fp=[], lr_steps_quant=[],
               lr_steps_frozen=[])
    steps = [args.epochs_fp, args.epochs_fp + args.epochs_quant]
    fp = train(args, 'bench-resnet20-' + stamp, model='resnet20', epochs_fp=total,
               lr_steps_fp=[s for s in steps if 0 < s < total])
    data = subset(load_cifar10(args.data_dir, download=False, strict_counts=args.strict_counts),
                  args.subset, seed=args.seed)
    pipe = pipeline_images_per_s(data, args.batch_size, args.pipeline_batches, args.seed)

    def acc(summary):
        return '%.2f%%' % (100 * summary['metrics']['val_acc'])

    def best(summary):
        return '%.2f%%' % (100 * summary['best']['value'])
    rows = [('', 'st_resnet20', 'resnet20'),
            # stage_plan is in training order (summary['stages'] is keyed by name)
            ('epochs (stages)', '+'.join(str(p['epochs']) for p in st['stage_plan']),
             str(total)),
            ('lr per epoch', lr_text(st), lr_text(fp)),
            ('final val acc', acc(st), acc(fp)),
            ('best val acc', best(st), best(fp)),
            ('train images/s', '%.0f' % st['throughput']['value'],
             '%.0f' % fp['throughput']['value']),
            ('train seconds', '%.0f' % st['train_seconds'], '%.0f' % fp['train_seconds'])]
    if st.get('cost') and fp.get('cost'):
        rows += [('mults / image', '{:,}'.format(st['cost']['mults']),
                  '{:,}'.format(fp['cost']['mults'])),
                 ('adds / image', '{:,}'.format(st['cost']['adds']),
                  '{:,}'.format(fp['cost']['adds'])),
                 ('model size MB', '%.3f' % (st['cost']['bits'] / 8e6),
                  '%.3f' % (fp['cost']['bits'] / 8e6))]
    width = max(len(r[0]) for r in rows)
    print('\nCIFAR-10, %d training images, full test set%s, CPU'
          % (args.subset, '' if not args.max_eval_batches else ' (first %d batches)'
             % args.max_eval_batches))
    for r in rows:
        print('%-*s  %14s  %14s' % (width, r[0], r[1], r[2]))
    print('input pipeline alone: %.0f images/s (%.1fx the faster model\'s training speed)'
          % (pipe, pipe / max(st['throughput']['value'], fp['throughput']['value'])))
    return 0


if __name__ == '__main__':
    sys.exit(main())
