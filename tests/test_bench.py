"""Every benchmark script in bench/ runs end to end with tiny arguments.

Benchmarks are not tests of speed: these runs only make sure that a change in the library cannot
break a script silently (a renamed field, a changed run-folder schema, a moved function). Each
script runs as a subprocess, as a user would start it, on tiny data written in the real formats
(CIFAR-10 python pickles, PTB text files), and its printed table or JSON output is checked.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_fixtures import write_fake_cifar
from test_langmod import TINY as LM_TINY, write_corpus

BENCH = Path(__file__).resolve().parent.parent / 'bench'
TIMEOUT = 300  # seconds per script; each takes a few seconds to about 20 s on 2 busy cores
TINY_CIFAR = ['--data_dir', '{cifar}', '--no_strict_counts', '--subset', '20',
              '--max_batches', '1', '--max_eval_batches', '1', '--log_dir', '{tmp}/runs']

# script[:variant]: (arguments, text every successful run prints). {cifar}, {ptb}, {tmp} are
# filled in.
SMOKE = {
    'layers.py': (['--batch', '2', '--channels', '4', '--sizes', '4', '--repeats', '1'],
                  'spn-ternary'),
    'cifar_short.py': (TINY_CIFAR + ['--batch_size', '10', '--pipeline_batches', '1'],
                       'input pipeline alone'),
    'convert_short.py': (TINY_CIFAR + ['--batch_size', '10'], 'from scratch'),
    'data_pipeline.py': (['--data_dir', '{cifar}', '--no_strict_counts', '--batch_size', '8',
                          '--batches', '3', '--warmup', '1'], 'images/s'),
    'deploy.py': (['--batches', '1', '--rounds', '1', '--iters', '1', '--per_layer'],
                  'sum of shared layers'),
    'langmod_speed.py': (['--data_dir', '{ptb}', '--batches', '2', '--eval_batches', '1',
                          '--json', '{tmp}/lm.json', '--'] + LM_TINY, 'qm2 Strassen'),
    'reproducible.py': (['--cifar_dir', '{cifar}', '--no_strict_counts', '--ptb_dir', '{ptb}'],
                        'parameters'),
    'dtype.py': (['--batch', '2', '--repeats', '1', '--models', 'resnet20',
                  'st_resnet20-p1-ternary'], 'ratio'),
    'dtype_parity.py': (['--data_dir', '{cifar}', '--out', '{tmp}/parity', '--seeds', '1',
                         '--epochs', '1', '--subset', '100',
                         '--extra=--no_strict_counts --batch_size 20 --max_eval_batches 1'],
                        '| bfloat16 |'),
    'dtype_parity.py:lm': (['--task', 'lm', '--data_dir', '{ptb}', '--out', '{tmp}/lm_parity',
                            '--seeds', '1', '--batches', '2',
                            '--extra=' + ' '.join(LM_TINY + ['--max_eval_batches', '1'])],
                           '| bfloat16 |'),
    'matmul_success.py': (['--seeds', '1', '--restarts', '1', '--population', '8', '--harder',
                           '--harder-seeds', '1', '--budget', '0.5', '--flip', '--flip-seeds',
                           '1', '--flip-budget', '1', '--flip-report-budget', '0.5',
                           '--flip-only', '2x2x2,3x3x4', '--per-candidate', '1',
                           '--fp-steps', '100', '--anneal-steps', '100',
                           '--ternary-steps', '100', '--out', '{tmp}/matmul.json'], 'summary:'),
}


# reproducible.py runs its commands from the current folder (langmod/train.py relative to it).
FROM_REPO = {'reproducible.py'}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('bench-data')
    # reproducible.py trains on a 512-image subset with 64-image batches, and the LM on 3
    # batches of 20 x 35 words: enough images and lines for both.
    write_fake_cifar(root / 'cifar', n_train_per_batch=110, n_test=30)
    return {'cifar': str(root / 'cifar'),
            'ptb': write_corpus(root / 'ptb', lines=(800, 300, 300))}


def test_every_bench_script_has_a_smoke_run():
    assert sorted(p.name for p in BENCH.glob('*.py')) == sorted({k.split(':')[0] for k in SMOKE})


@pytest.mark.parametrize('smoke', sorted(SMOKE))
def test_bench_script_runs(smoke, data, tmp_path):
    args, expected = SMOKE[smoke]
    script = smoke.split(':')[0]
    argv = [a.format(tmp=tmp_path, **data) for a in args]
    done = subprocess.run([sys.executable, str(BENCH / script)] + argv,
                          cwd=BENCH.parent if script in FROM_REPO else tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=dict(os.environ, TMPDIR=str(tmp_path),   # temporary run folders
                                   PYTHONWARNINGS='ignore::DeprecationWarning'))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert expected in done.stdout, done.stdout[-2000:]
    check = CHECKS.get(script)
    if check:
        check(tmp_path)


def _langmod_results(tmp_path):
    results = json.loads((tmp_path / 'lm.json').read_text())['results']
    assert [r['quant_mode'] for r in results] == [5, 2]
    for r in results:
        assert math.isfinite(r['test_ppl']) and r['tokens_per_s'] > 0
        assert isinstance(r['mults_per_step'], int) and r['mults_per_step'] > 0
    # The Strassen LM needs fewer multiplications per time step than the dense one.
    assert results[1]['mults_per_step'] < results[0]['mults_per_step']


def _matmul_results(tmp_path):
    results = json.loads((tmp_path / 'matmul.json').read_text())
    assert len(results['2x2x2x7']) == 1 and len(results['flip_2x2x2x7']) == 1
    # The packaged Strassen algorithm and the hand-written 2x2x3 one verify (exit 0).
    assert set(results['verify_exit_codes'].values()) == {0}


CHECKS = {'langmod_speed.py': _langmod_results, 'matmul_success.py': _matmul_results}
