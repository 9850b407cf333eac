"""Runs that cannot be lost, for each of the three training commands, tested by faults.

* SIGKILL at seeded random moments (KILLS per run, each after a random number of logged epochs,
  within the shortest epoch's training time), then resume until done: every epoch is logged
  exactly once and the result equals the uninterrupted run's (final parameters for CIFAR-10
  and ImageNet, test perplexity for the language model).
* A damaged latest.json together with a truncated newest parameter file: the run resumes from
  the previous checkpoint, says so, and ends as the uninterrupted run.
* SIGTERM: stops as Ctrl-C does (status 130, resumable).
* No checkpoint that verifies: exit status 1 naming the file. A changed option that defines the
  model: exit status 2.

Every command runs in its own process, as a user would start it.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from cifar_fixtures import write_fake_cifar
from strassen_gluon.data.imagenet import write_tiny_recordio
from strassen_gluon.errors import EXIT_DATA, EXIT_USAGE
from strassen_gluon.errors import RunFolderError
from strassen_gluon.train import checkpoint as ckpt_module
from strassen_gluon.train.checkpoint import (checkpoint_folders, folder_contents,
                                             latest_checkpoint, load_checkpoint,
                                             save_checkpoint)
from strassen_gluon.train.logs import read_jsonl
from test_langmod import TINY as LM_TINY, write_corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
KILLS = 3
TIMEOUT = 300


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    write_fake_cifar(root / 'cifar', n_train_per_batch=16, n_test=32)
    train_rec, _ = write_tiny_recordio(str(root / 'train'), 16, classes=4, seed=1)
    val_rec, _ = write_tiny_recordio(str(root / 'val'), 8, classes=4, seed=2)
    corpus = write_corpus(root / 'ptb')
    return {'cifar': str(root / 'cifar'), 'train_rec': train_rec, 'val_rec': val_rec,
            'ptb': corpus}


def command(name, data, log_dir, run_name):
    """(argv of a fresh run, the option change that a resume must refuse, epochs in all)."""
    cpu = ['--gpu_index', '-1', '--quiet', '--log_dir', str(log_dir), '--run_name', run_name]
    if name == 'cifar10':
        return ([sys.executable, '-m', 'strassen_gluon.cifar10', '--model', 'st_resnet20',
                 '--data_dir', data['cifar'], '--no_download', '--no-strict_counts',
                 '--batch_size', '16', '--max_batches', '2', '--epochs_fp', '2',
                 '--epochs_quant', '2', '--epochs_frozen', '1'] + cpu,
                ['--model', 'resnet20'], 5)
    if name == 'imagenet':
        return ([sys.executable, '-m', 'strassen_gluon.imagenet', '--model', 'st_resnet18',
                 '--train_rec', data['train_rec'], '--val_rec', data['val_rec'], '--classes',
                 '4', '--image_size', '32', '--batch_size', '4', '--max_batches', '2',
                 '--num_workers', '1', '--epochs_fp', '2', '--epochs_quant', '1',
                 '--epochs_frozen', '1'] + cpu, ['--groups', '2'], 4)
    return ([sys.executable, '-m', 'langmod.train'] + LM_TINY +
            ['--data_dir', data['ptb'], '--quant_mode', '2', '--epochs_pre', '1',
             '--max_epochs', '2', '--epochs_cont', '1', '--max_batches', '3',
             '--max_eval_batches', '2', '--learning_rate', '0.5'] + cpu,
            ['--rnn_size', '9'], 4)


def resume_argv(argv, run_dir):
    return argv[:3] + ['--resume', run_dir, '--gpu_index', '-1', '--quiet']


def run(argv, timeout=TIMEOUT):
    return subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def epochs(run_dir):
    return [(r['stage_index'], r['epoch']) for r in read_jsonl(os.path.join(run_dir,
                                                                            'log.jsonl'))]


def logged_epochs(run_dir):
    """Lines in log.jsonl so far (read while the run may be writing it)."""
    try:
        with open(os.path.join(run_dir, 'log.jsonl'), 'rb') as f:
            return f.read().count(b'\n')
    except FileNotFoundError:
        return 0


def result(name, run_dir):
    """What must equal between an interrupted and an uninterrupted run."""
    if name == 'langmod':
        with open(os.path.join(run_dir, 'summary.json')) as f:
            return json.load(f)['metrics']['test_ppl']
    params = mx.nd.load(os.path.join(latest_checkpoint(run_dir), 'model.params'))
    return {k: v.asnumpy() for k, v in params.items()}


def assert_same(name, got, want):
    if name == 'langmod':
        assert got == pytest.approx(want, rel=1e-6)
        return
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.fixture(scope='module')
def reference(data, tmp_path_factory):
    """Uninterrupted runs of every command: {name: (run_dir, epoch seconds, result)}.

    Epoch seconds is the shortest training pass the run logged: start-up (imports, data) dwarfs
    the tiny epochs, so a wall time per epoch would place kills after the run has ended.
    """
    out = {}
    for name in ('cifar10', 'imagenet', 'langmod'):
        log_dir = tmp_path_factory.mktemp('ref-' + name)
        argv, _, n = command(name, data, log_dir, 'ref')
        proc = run(argv)
        assert proc.returncode == 0, proc.stderr[-3000:]
        run_dir = os.path.join(str(log_dir), 'ref')
        assert len(epochs(run_dir)) == n
        seconds = min(r['seconds'] for r in read_jsonl(os.path.join(run_dir, 'log.jsonl')))
        out[name] = (run_dir, seconds, result(name, run_dir))
    return out


@pytest.mark.parametrize('name', ['cifar10', 'imagenet', 'langmod'])
def test_sigkill_at_random_moments_then_resume(name, data, reference, tmp_path):
    ref_dir, seconds, want = reference[name]
    argv, _, n = command(name, data, tmp_path, 'killed')
    run_dir = os.path.join(str(tmp_path), 'killed')
    rng = random.Random('kill-' + name)
    config_json = os.path.join(run_dir, 'config.json')
    moments = []
    # Kills are placed by progress, not by the clock alone, so that they land in training however
    # long start-up takes on a loaded machine: after k logged epochs (k = 0: once the run folder
    # is written), at a random moment within the shortest epoch's training time. k < n, so an
    # epoch is always still to come when the kill is due.
    for k in sorted(rng.sample(range(n), KILLS)):
        # Before config.json exists the user starts the command again; after, they resume.
        proc = subprocess.Popen(resume_argv(argv, run_dir) if os.path.isfile(config_json)
                                else argv, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        while proc.poll() is None and not (os.path.isfile(config_json)
                                           and logged_epochs(run_dir) >= k):
            time.sleep(0.01)
        moment = rng.uniform(0.0, seconds)
        try:
            proc.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            moments.append('%.3fs after epoch %d' % (moment, k))
            continue
        assert proc.returncode == 0, proc.stderr.read()[-3000:]
        break
    assert moments, 'no kill happened'
    final = run(resume_argv(argv, run_dir) if os.path.isfile(config_json) else argv)
    assert final.returncode == 0, (moments, final.stderr[-3000:])
    # Each epoch logged exactly once, in order, and the same result as without the kills.
    assert epochs(run_dir) == epochs(ref_dir), moments
    assert len(epochs(run_dir)) == n
    assert_same(name, result(name, run_dir), want)


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(data, reference, tmp_path):
    """A scheduler's SIGTERM (or `kill`): status 130, the resume command, the curves, and a
    resumed run that ends as the uninterrupted one."""
    ref_dir, _, want = reference['cifar10']
    argv, _, n = command('cifar10', data, tmp_path, 'term')
    run_dir = os.path.join(str(tmp_path), 'term')
    proc = subprocess.Popen(argv, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and logged_epochs(run_dir) < 1:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=TIMEOUT)[1]
    assert proc.returncode == 130, err[-3000:]
    assert 'Traceback' not in err and '--resume %s' % run_dir in err
    assert os.path.isfile(os.path.join(run_dir, 'curves.png'))
    assert 1 <= len(epochs(run_dir)) < n
    final = run(resume_argv(argv, run_dir))
    assert final.returncode == 0, final.stderr[-3000:]
    assert epochs(run_dir) == epochs(ref_dir)
    assert_same('cifar10', result('cifar10', run_dir), want)


@pytest.mark.parametrize('name', ['cifar10', 'imagenet', 'langmod'])
def test_damaged_pointer_truncated_file_and_fixed_options(name, data, reference, tmp_path):
    ref_dir, _, want = reference[name]
    argv, fixed_change, n = command(name, data, tmp_path, 'part')
    argv += ['--keep_checkpoints', '2']  # the default keeps one; this test damages the newest
    run_dir = os.path.join(str(tmp_path), 'part')
    proc = run(argv + ['--stop_after_epochs', '3'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    older, newest = checkpoint_folders(run_dir)
    spare = str(tmp_path / 'spare')
    shutil.copytree(run_dir, spare)

    # A changed option that defines the model or data is refused before anything is written.
    proc = run(resume_argv(argv, run_dir) + fixed_change)
    assert proc.returncode == EXIT_USAGE and fixed_change[0] in proc.stderr, proc.stderr

    # latest.json damaged and the newest parameter file truncated: resumed from the older one.
    with open(os.path.join(run_dir, 'latest.json'), 'w') as f:
        f.write('{garbage')
    params = os.path.join(newest, 'model.params')
    with open(params, 'r+b') as f:
        f.truncate(os.path.getsize(params) // 2)
    proc = run(resume_argv(argv, run_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stdout + proc.stderr
    assert 'latest.json is damaged' in said and 'skipped a checkpoint' in said, said
    assert os.path.basename(older) in said
    assert epochs(run_dir) == epochs(ref_dir) and len(epochs(run_dir)) == n
    assert_same(name, result(name, run_dir), want)

    # No checkpoint verifies: status 1, naming the file; nothing restarts from scratch.
    for folder in checkpoint_folders(spare):
        with open(os.path.join(folder, 'model.params'), 'ab') as f:
            f.write(b'x')
    logged = epochs(spare)
    proc = run(resume_argv(argv, spare))
    assert proc.returncode == EXIT_DATA, proc.stderr[-3000:]
    assert 'model.params' in proc.stderr and 'checksum' in proc.stderr
    assert epochs(spare) == logged


# ------------------------------------------------------------------------------ checkpoints

def _tiny_net_and_trainer():
    net = mx.gluon.nn.Dense(3, in_units=4)
    net.initialize()
    trainer = mx.gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1,
                                                            'momentum': 0.9})
    with mx.autograd.record():
        loss = net(mx.nd.ones((2, 4))).sum()
    loss.backward()
    trainer.step(2)
    return net, trainer


def test_one_verified_checkpoint_by_default_and_optimizer_state_only_when_given(tmp_path):
    net, trainer = _tiny_net_and_trainer()
    first = save_checkpoint(str(tmp_path), 'p0-e0000', net, [trainer], {'epoch': 0})
    assert sorted(os.listdir(first)) == ['meta.json', 'model.params', 'trainer0.states']
    # The end of a stage: the next stage starts a fresh optimizer, so no state is stored.
    second = save_checkpoint(str(tmp_path), 'p0-e0001', net, [], {'epoch': 1})
    assert checkpoint_folders(str(tmp_path)) == [second]
    assert sorted(os.listdir(second)) == ['meta.json', 'model.params']
    other, fresh = _tiny_net_and_trainer()
    assert load_checkpoint(second, other, [fresh])['epoch'] == 1
    np.testing.assert_array_equal(other.weight.data().asnumpy(), net.weight.data().asnumpy())
    contents = folder_contents(str(tmp_path))
    assert contents['checkpoint'] == 'ckpt-p0-e0001'
    assert set(contents['files']) == {'latest.json', 'ckpt-p0-e0001/meta.json',
                                      'ckpt-p0-e0001/model.params'}
    assert contents['bytes'] == sum(os.path.getsize(os.path.join(str(tmp_path), f))
                                    for f in contents['files'])


def test_a_checkpoint_that_does_not_verify_after_writing_keeps_the_older_one(tmp_path,
                                                                             monkeypatch):
    net, trainer = _tiny_net_and_trainer()
    first = save_checkpoint(str(tmp_path), 'p0-e0000', net, [trainer], {'epoch': 0})
    real = ckpt_module.sha256
    calls = []

    def flaky(path):  # the read-back differs from what was hashed when writing
        calls.append(path)
        digest = real(path)
        return digest if len(calls) <= 2 else '0' * 64
    monkeypatch.setattr(ckpt_module, 'sha256', flaky)
    with pytest.raises(RunFolderError, match='does not verify'):
        save_checkpoint(str(tmp_path), 'p0-e0001', net, [trainer], {'epoch': 1})
    monkeypatch.setattr(ckpt_module, 'sha256', real)
    assert latest_checkpoint(str(tmp_path)) == first
    with open(os.path.join(str(tmp_path), 'latest.json')) as f:
        assert json.load(f) == {'checkpoint': 'ckpt-p0-e0000'}
