"""Converting a trained dense ResNet-20 into ST-ResNet-20 against training it from scratch.

    .venv/bin/python bench/convert_short.py --data_dir ../shared/data/cifar10

On the class-balanced 10k-image CIFAR-10 subset (full test set), all through
``strassen_gluon.cifar10.train``:

1. resnet20 for 12 epochs (lr 0.1, x0.1 after epochs 8 and 11), or --dense_run of an earlier
   run of this benchmark;
2. st_resnet20 converted from it (``init_from``) and fine-tuned with the command's default
   ``FINE_TUNE`` schedule (4 epochs, the dense network as distillation teacher), at r = c_out
   with p = 1 and p = 2, and at r = 0.5 c_out with p = 1;
3. st_resnet20 from scratch on the same 12-epoch budget as the dense run (8 full-precision,
   3 ternary, 1 frozen; the same learning rate epoch by epoch as the dense run).

Prints one table: final validation accuracy (in the ternary stage for the Strassen rows), its
difference to the dense network, the epochs, the training images/s and the multiplications per
image. Timings are wall-clock on whatever else the machine is doing; say so when quoting them.
"""
import argparse
import os
import sys
import time

from strassen_gluon import cifar10
from strassen_gluon.train.run import read_summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DENSE = dict(epochs_fp=12, lr_steps_fp=[8, 11])
SCRATCH = dict(epochs_fp=8, epochs_quant=3, epochs_frozen=1, lr_steps_fp=[], lr_steps_quant=[],
               lr_steps_frozen=[])
CONVERTED = (('p=1, r=c_out', {}), ('p=2, r=c_out', {'out_patch': 2}),
             ('p=1, r=0.5 c_out', {'nbr_mul': 0.5}))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data_dir', default=os.environ.get(
        'STRASSEN_CIFAR10_DIR', os.path.join(REPO, '..', 'shared', 'data', 'cifar10')))
    p.add_argument('--no_strict_counts', dest='strict_counts', action='store_false',
                   help='accept a copy without the official 50000/10000 images (tiny test data)')
    p.add_argument('--subset', type=int, default=10000, help='training images')
    p.add_argument('--batch_size', type=int, default=128)
    p.add_argument('--dense_run', default=None,
                   help='a finished resnet20 run folder to convert (skips step 1)')
    p.add_argument('--skip_scratch', action='store_true', help='leave out step 3')
    p.add_argument('--max_batches', type=int, default=None, help='for a quick try only')
    p.add_argument('--max_eval_batches', type=int, default=None, help='for a quick try only')
    p.add_argument('--log_dir', default=os.path.join('runs', 'bench-convert'))
    p.add_argument('--seed', type=int, default=321)
    return p.parse_args(argv)


def train(args, name, **fields):
    config = cifar10.CifarConfig(
        data_dir=args.data_dir, download=False, strict_counts=args.strict_counts,
        train_subset=args.subset, batch_size=args.batch_size, seed=args.seed,
        log_dir=args.log_dir, run_name='%s-%s' % (name, time.strftime('%Y%m%d-%H%M%S')),
        devices='-1', quiet=True, max_batches=args.max_batches,
        max_eval_batches=args.max_eval_batches, **fields)
    print('\n== %s: %s' % (name, ', '.join('%s=%s' % kv for kv in sorted(fields.items()))),
          flush=True)
    return cifar10.train(config)


def row(label, summary, dense_acc):
    acc = summary['metrics']['val_acc']
    epochs = '+'.join(str(p['epochs']) for p in summary['stage_plan'])
    return (label, '%.2f%%' % (100 * acc),
            '%+.2f' % (100 * (acc - dense_acc)) if dense_acc is not None else '',
            epochs, '%.0f' % summary['throughput']['value'],
            '{:,}'.format(summary['cost']['mults']) if summary['cost'] else '?')


def main(argv=None):
    args = parse_args(argv)
    if args.dense_run:
        dense = read_summary(os.path.join(args.dense_run, 'summary.json'))
    else:
        dense = train(args, 'resnet20', model='resnet20', **DENSE)
    dense_acc = dense['metrics']['val_acc']
    rows = [row('resnet20 (dense, trained)', dense, None)]
    for label, kwargs in CONVERTED:
        tuned = train(args, 'st_resnet20-converted', model='st_resnet20',
                      init_from=dense['run_dir'], **dict(cifar10.FINE_TUNE, **kwargs))
        rows.append(row('st_resnet20 %s, converted' % label, tuned, dense_acc))
    if not args.skip_scratch:
        scratch = train(args, 'st_resnet20-scratch', model='st_resnet20', **SCRATCH)
        rows.append(row('st_resnet20 p=1, r=c_out, from scratch', scratch, dense_acc))

    head = ('model', 'val acc', 'vs dense', 'epochs', 'train img/s', 'mults/image')
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    print('\nCIFAR-10, %d-image class-balanced subset, %s test set, CPU; fine-tune: %s'
          % (args.subset, 'full' if not args.max_eval_batches else 'part of the',
             ' '.join('%s=%s' % kv for kv in cifar10.FINE_TUNE.items())))
    for r in [head] + rows:
        print('| ' + ' | '.join(str(v).ljust(w) for v, w in zip(r, widths)) + ' |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
