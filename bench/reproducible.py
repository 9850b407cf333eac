"""Fingerprint of a fixed-seed CIFAR-10 run and language-model run: the sha256 of the final
parameters (by name, as float32 bytes) and of every logged training/evaluation metric.

Run it before and after a refactor that must not change results; the fingerprints must match.

    python bench/reproducible.py --cifar_dir ../shared/data/cifar10 --ptb_dir ../shared/data/ptb

The commands run in subprocesses exactly as a user types them, from the current folder (so an
older checkout's code runs when this is started inside it).
"""
import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile

# What a run computed, per epoch (timings and bookkeeping fields are left out).
RESULTS = ('stage', 'epoch', 'lr', 'train_loss', 'train_acc', 'train_ppl', 'val_acc', 'val_ppl',
           'test_ppl', 'top1', 'top5')


def newest_params(run_dir):
    folders = sorted(glob.glob(os.path.join(run_dir, 'ckpt-*')))
    return os.path.join(folders[-1], 'model.params')


def fingerprint(run_dir):
    import mxnet as mx
    params = mx.nd.load(newest_params(run_dir))
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.split(':', 1)[-1].encode())
        digest.update(params[name].asnumpy().astype('float32').tobytes())
    metrics = hashlib.sha256()
    with open(os.path.join(run_dir, 'log.jsonl')) as f:
        for line in f:
            record = json.loads(line)
            if 'phase_index' in record:   # written before stages were called stages
                record = dict(record, stage=record['phase'], stage_index=record['phase_index'])
            if 'stage_index' not in record:
                continue
            kept = {k: float(v) if isinstance(v, (int, float)) else v
                    for k, v in record.items() if k in RESULTS}   # 2 and 2.0 are one rate
            metrics.update(json.dumps(kept, sort_keys=True).encode())
    return digest.hexdigest()[:16], metrics.hexdigest()[:16]


def run(command, env=None):
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit('failed (%d): %s\n%s' % (result.returncode, ' '.join(command), result.stderr))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cifar_dir', required=True)
    parser.add_argument('--ptb_dir', required=True)
    parser.add_argument('--no_strict_counts', action='store_true',
                        help='accept a CIFAR-10 copy without the official 50000/10000 images '
                             '(tiny test data)')
    args = parser.parse_args(argv)
    # The older spelling, which every checkout's cifar10 command accepts.
    data_checks = ['--no-strict_counts'] if args.no_strict_counts else []
    work = tempfile.mkdtemp(prefix='reproducible-')
    py = sys.executable
    run([py, '-m', 'strassen_gluon.cifar10', '--data_dir', args.cifar_dir, '--log_dir', work,
         '--run_name', 'cifar', '--train_subset', '512', '--epochs_fp', '1', '--epochs_quant',
         '1', '--epochs_frozen', '1', '--max_eval_batches', '2', '--batch_size', '64',
         '--quiet'] + data_checks)
    run([py, os.path.join('langmod', 'train.py'), '--data_dir', args.ptb_dir, '--log_dir', work,
         '--run_name', 'lm', '--quant_mode', '2', '--epochs_pre', '1', '--max_epochs', '1',
         '--max_batches', '3', '--max_eval_batches', '2', '--rnn_size', '64',
         '--feature_maps', '10', '20', '--kernels', '1', '2', '--out_nbr_mul', '50',
         '--learning_rate_pre', '1', '--quiet'])
    for name in ('cifar', 'lm'):
        params, metrics = fingerprint(os.path.join(work, name))
        print('%-6s parameters %s  metrics %s' % (name, params, metrics))


if __name__ == '__main__':
    main()
