"""Accuracy parity of bfloat16 and float32 training on real data: the same short schedules in
both dtypes, several seeds each, through the real commands (issue 17, item 4).

CIFAR-10 (--task cifar), per seed and dtype: resnet20 trained on a class-balanced subset
(default 12 epochs on 10,000 images, the paper's steps scaled), then st_resnet20 converted from
it with the default --init_from fine-tune (1 + 2 + 1 epochs, the dense network teaching). Every
run is scored on the full test set.

Penn Treebank (--task lm), per seed and dtype: the language model (--quant_mode 5, full
precision, or another with --quant_mode) trained for --batches batches of 20 x 35 words, then
scored on the full validation and test sets.

Finished runs are skipped and interrupted ones resumed, so the script can be stopped and started
again.

    python bench/dtype_parity.py --data_dir ../shared/data/cifar10 --out runs/parity
    python bench/dtype_parity.py ... --seeds 1,2,3 --epochs 12 --subset 10000
    python bench/dtype_parity.py --task lm --data_dir ../shared/data/ptb --out runs/lm_parity
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

DTYPES = ('float32', 'bfloat16')


def run(argv, run_dir, module='strassen_gluon.cifar10'):
    """Run the command `module` unless `run_dir` is finished; resume it when it was started."""
    if os.path.isfile(os.path.join(run_dir, 'summary.json')):
        return
    if os.path.isfile(os.path.join(run_dir, 'config.json')):
        argv = ['--resume', run_dir]
    else:
        argv = argv + ['--log_dir', os.path.dirname(run_dir),
                       '--run_name', os.path.basename(run_dir)]
    command = [sys.executable, '-m', module, '--quiet'] + argv
    print('$', ' '.join(command), flush=True)
    subprocess.run(command, check=True)


def summary(run_dir):
    with open(os.path.join(run_dir, 'summary.json')) as f:
        return json.load(f)


def spread(values, scale=100):
    """'mean ± sample standard deviation' of `values` times `scale` (percent by default)."""
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return '%.2f ± %.2f' % (scale * mean, scale * sd)


def language_model(args, seeds):
    common = ['--data_dir', args.data_dir, '--quant_mode', str(args.quant_mode), '--max_epochs',
              '1', '--max_batches', str(args.batches)] + args.extra.split()
    runs = {}
    for seed in seeds:
        for dtype in DTYPES:
            runs[dtype, seed] = os.path.join(args.out, '%s-s%d-qm%d' % (dtype, seed,
                                                                       args.quant_mode))
            run(common + ['--seed', str(seed), '--dtype', dtype], runs[dtype, seed],
                module='langmod.train')
    print('\n| dtype | valid ppl | test ppl | words/s | seeds |\n|---|---|---|---:|---|')
    for dtype in DTYPES:
        done = [summary(runs[dtype, s]) for s in seeds]
        print('| %s | %s | %s | %.0f | %s |' % (
            dtype, spread([d['metrics']['val_ppl'] for d in done], scale=1),
            spread([d['metrics']['test_ppl'] for d in done], scale=1),
            statistics.mean(d['throughput']['value'] for d in done), args.seeds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', choices=('cifar', 'lm'), default='cifar')
    parser.add_argument('--data_dir', required=True)
    parser.add_argument('--out', required=True, help='folder of the runs (reused on a rerun)')
    parser.add_argument('--seeds', default='1,2,3')
    parser.add_argument('--epochs', type=int, default=12, help='cifar: dense epochs')
    parser.add_argument('--subset', type=int, default=10000, help='cifar: training images')
    parser.add_argument('--batches', type=int, default=200, help='lm: training batches')
    parser.add_argument('--quant_mode', type=int, default=5, help='lm: the quant_mode')
    parser.add_argument('--extra', default='', help='more options for every run (tiny data)')
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(',')]
    if args.task == 'lm':
        return language_model(args, seeds)
    common = ['--data_dir', args.data_dir, '--train_subset', str(args.subset)] + args.extra.split()
    for seed in seeds:
        for dtype in DTYPES:
            dense = os.path.join(args.out, '%s-s%d-resnet20' % (dtype, seed))
            run(common + ['--model', 'resnet20', '--epochs_fp', str(args.epochs),
                          '--seed', str(seed), '--dtype', dtype], dense)
            run(common + ['--model', 'st_resnet20', '--init_from', dense, '--seed', str(seed),
                          '--dtype', dtype], os.path.join(args.out, '%s-s%d-st' % (dtype, seed)))
    print('\n| dtype | resnet20 val acc (%) | st_resnet20 converted (%) | images/s dense | '
          'images/s st | seeds |\n|---|---|---|---:|---:|---|')
    for dtype in DTYPES:
        dense = [summary(os.path.join(args.out, '%s-s%d-resnet20' % (dtype, s))) for s in seeds]
        st = [summary(os.path.join(args.out, '%s-s%d-st' % (dtype, s))) for s in seeds]
        print('| %s | %s | %s | %.0f | %.0f | %s |' % (
            dtype, spread([d['metrics']['val_acc'] for d in dense]),
            spread([d['metrics']['val_acc'] for d in st]),
            statistics.mean(d['throughput']['value'] for d in dense),
            statistics.mean(d['throughput']['value'] for d in st), args.seeds))


if __name__ == '__main__':
    main()
