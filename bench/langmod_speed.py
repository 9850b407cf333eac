"""Training speed and early perplexity of the full-precision and the Strassen language model.

Runs ``langmod/train.py`` once per quant mode (default 5, the full-precision char-aware LM, and
2, the Strassen LM with ternary W_b and W_c), one after the other in this one invocation, each
for the same budget: one epoch of ``--batches`` training batches at the same learning rate, then
the validation (and test) perplexity. Both runs use the CPU unless --gpu_index is given.

tokens/s is train.py's figure: training tokens (batch_size x seq_length per batch) per second
from the end of the first batch (which builds the graph) to the end of the last, with a device
sync at both ends. The machine may be shared: run the modes back to back and compare only
numbers from the same invocation.

    python bench/langmod_speed.py --data_dir ../shared/data/ptb --batches 100
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from strassen_gluon.train.run import SUMMARY_NAME, epoch_log, read_summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'langmod', 'train.py')
NAMES = {5: 'full precision (charlm)', 2: 'Strassen, ternary W_b W_c (st_charlm)',
         1: 'full-precision SPN (st_charlm)', 6: 'W_c = I, ternary W_b', 7: 'TWN'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data_dir', default=os.path.join(ROOT, 'langmod', 'data', 'ptb'),
                   help='folder with the PTB files (default: langmod/data/ptb)')
    p.add_argument('--modes', type=int, nargs='+', default=[5, 2], help='quant modes to run')
    p.add_argument('--batches', type=int, default=100, help='training batches per model')
    p.add_argument('--eval_batches', type=int, default=0,
                   help='validation/test batches (0: the whole sets)')
    p.add_argument('--learning_rate', type=float, default=2.0)
    p.add_argument('--gpu_index', type=int, default=-1, help='-1: CPU')
    p.add_argument('--json', default=None, help='also write the results to this JSON file')
    p.add_argument('--keep_runs', default=None,
                   help='keep the run folders here (default: a temporary folder, removed)')
    p.add_argument('extra', nargs=argparse.REMAINDER,
                   help='after --: more train.py options for every run (e.g. -- --rnn_size 200)')
    return p.parse_args(argv)


def run_mode(mode, args, log_dir):
    extra = [a for a in args.extra if a != '--']
    cmd = [sys.executable, TRAIN, '--quant_mode', str(mode), '--max_epochs', '1',
           '--max_batches', str(args.batches), '--max_eval_batches', str(args.eval_batches),
           '--learning_rate', str(args.learning_rate), '--gpu_index', str(args.gpu_index),
           '--data_dir', os.path.abspath(args.data_dir), '--log_dir', log_dir,
           '--run_name', 'qm%d' % mode, '--print_every', '0', '--quiet'] + extra
    start = time.time()
    subprocess.run(cmd, check=True)
    run_dir = os.path.join(log_dir, 'qm%d' % mode)
    epoch = epoch_log(run_dir)[-1]          # the run's one epoch (the common run-folder schema)
    summary = read_summary(os.path.join(run_dir, SUMMARY_NAME))
    ops = summary.get('cost') or {}         # per time step for the LM
    return dict(quant_mode=mode, model=NAMES.get(mode, 'quant_mode %d' % mode),
                tokens_per_s=epoch['tokens_per_s'], train_ppl=epoch['train_ppl'],
                val_ppl=epoch['val_ppl'], test_ppl=summary['metrics']['test_ppl'],
                epoch_seconds=epoch['seconds'], wall_seconds=time.time() - start,
                mults_per_step=ops.get('mults'), adds_per_step=ops.get('adds'),
                command=' '.join(cmd))


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = args.keep_runs or tmp
        results = []
        for mode in args.modes:
            results.append(run_mode(mode, args, log_dir))
            r = results[-1]
            print('quant_mode %d done: %.0f tokens/s, val ppl %.2f' %
                  (mode, r['tokens_per_s'], r['val_ppl']), flush=True)
    print('\n%d training batches per model, lr %g, %s evaluation batches; load average at end '
          '%.2f' % (args.batches, args.learning_rate, args.eval_batches or 'all',
                    os.getloadavg()[0]))
    print('%-40s %10s %10s %10s %14s %14s' % ('model', 'tokens/s', 'train ppl', 'val ppl',
                                               'mults/step', 'adds/step'))
    for r in results:
        print('%-40s %10.0f %10.1f %10.1f %14s %14s' % (
            'qm%d %s' % (r['quant_mode'], r['model']), r['tokens_per_s'], r['train_ppl'],
            r['val_ppl'], r['mults_per_step'], r['adds_per_step']))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(batches=args.batches, eval_batches=args.eval_batches,
                           learning_rate=args.learning_rate, results=results), f, indent=1)
    return results


if __name__ == '__main__':
    main()
