"""CIFAR-10 training: schedule, stages, loop, checkpoints/resume, distillation and the command.

Runs on tiny generated data in the real file format (80 training, 32 test images), batch 16,
2 batches per epoch.
"""
import json
import math
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from cifar_fixtures import write_fake_cifar
from strassen_gluon import Phase, spn_layers
from strassen_gluon import cifar10
from strassen_gluon.train import driver
from strassen_gluon.train.precision import bfloat16_support
from strassen_gluon.train.build import build_model
from strassen_gluon.data import CifarBatches
from strassen_gluon.models import get_model
from strassen_gluon.train.checkpoint import latest_checkpoint, read_meta
from strassen_gluon.train.logs import read_jsonl
from strassen_gluon.train.run import read_summary
from strassen_gluon.errors import EXIT_DATA, EXIT_DIVERGED, EXIT_USAGE, UsageError
from strassen_gluon.train.classify import ClassificationTask, evaluate
from strassen_gluon.train.loop import Diverged, LoopOptions, run_stages, train_epoch
from strassen_gluon.train.stages import enter_stage, make_trainer, trainable_params
from strassen_gluon.train.schedule import (PAPER_CIFAR, Stage, learning_rate, make_stage,
                                           paper_stages, stages_from_config, scale_steps)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = LoopOptions(progress=False, print_fn=lambda *a: None)
LOG_FIELDS = {'stage', 'epoch', 'lr', 'train_loss', 'train_acc', 'val_acc', 'seconds',
              'images_per_s'}


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('cifar')
    write_fake_cifar(folder, n_train_per_batch=16, n_test=32)
    return str(folder)


def tiny_args(data_dir, log_dir, *extra, model='st_resnet20', epochs=(1, 1, 1)):
    return ['--model', model, '--data_dir', data_dir, '--no_download', '--no-strict_counts',
            '--batch_size', '16', '--max_batches', '2', '--epochs_fp', str(epochs[0]),
            '--epochs_quant', str(epochs[1]), '--epochs_frozen', str(epochs[2]),
            '--log_dir', str(log_dir), '--gpu_index', '-1', '--quiet'] + list(extra)


def params_of(checkpoint):
    return {k: v.asnumpy() for k, v in mx.nd.load(os.path.join(checkpoint, 'model.params'))
            .items()}


@pytest.fixture(scope='module')
def full_run(data_dir, tmp_path_factory):
    """One uninterrupted 3-stage run of 2 + 2 + 1 epochs, shared by several tests."""
    log_dir = tmp_path_factory.mktemp('runs')
    rc = cifar10.main(tiny_args(data_dir, log_dir, '--run_name', 'full', epochs=(2, 2, 1)))
    assert rc == 0
    return os.path.join(str(log_dir), 'full')


# ----------------------------------------------------------------------------- schedule

def test_paper_schedule_boundaries():
    full, ternary, frozen = paper_stages()
    assert (full.epochs, ternary.epochs, frozen.epochs) == (250, 40, 10)
    lr = {e: learning_rate(full, e) for e in (0, 149, 150, 199, 200, 249)}
    assert lr == {0: 0.1, 149: 0.1, 150: 0.01, 199: 0.01, 200: 0.001, 249: 0.001}
    assert [learning_rate(ternary, e) for e in (0, 9, 10, 19, 20, 29, 30, 39)] == \
        [0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4, 1e-5, 1e-5]
    assert {learning_rate(frozen, e) for e in range(10)} == {0.001}
    assert frozen.frozen and frozen.phase == Phase.TERNARY and not ternary.frozen
    assert full.phase == Phase.FULL
    with pytest.raises(ValueError):
        learning_rate(full, -1)


def test_shortened_phases_scale_their_steps():
    assert make_stage('full', epochs=25).steps == (15, 20)
    assert make_stage('ternary', epochs=4).steps == (1, 2, 3)
    assert make_stage('full', epochs=25, steps=[5]).steps == (5,)
    assert scale_steps((150, 200), 250, 250) == (150, 200)
    # Each decay on an epoch of its own, never at epoch 0; the first steps that fit are kept.
    assert scale_steps((150, 200), 250, 3) == (1, 2)
    assert scale_steps((10, 20, 30), 40, 2) == (1,)
    assert scale_steps((10, 20, 30), 40, 1) == ()
    assert scale_steps((10, 20, 30), 40, 5) == (1, 2, 4)
    for epochs in range(1, 60):
        steps = scale_steps((10, 20, 30), 40, epochs)
        assert list(steps) == sorted(set(steps)) and all(0 < s < epochs for s in steps)
        assert len(steps) == min(3, epochs - 1)
    short = make_stage('full', epochs=25)
    assert learning_rate(short, 14) == 0.1 and learning_rate(short, 15) == 0.01


def test_cosine_falls_from_the_phase_rate_towards_zero():
    config = cifar10.CifarConfig(lr_shape='cosine', epochs_fp=4, lr_fp=0.2)
    full = stages_from_config(config, True, PAPER_CIFAR)[0][0]
    rates = [learning_rate(full, e) for e in range(4)]
    assert rates[0] == 0.2 and rates == sorted(rates, reverse=True) and rates[2] == 0.1
    assert rates[3] == pytest.approx(0.2 * (1 + math.cos(math.pi * 3 / 4)) / 2)


def test_a_short_run_says_which_steps_it_lost():
    config = cifar10.CifarConfig(epochs_fp=3, epochs_quant=2, epochs_frozen=1)
    stages, notes = stages_from_config(config, True, PAPER_CIFAR)
    assert [learning_rate(stages[0], e) for e in range(3)] == [0.1, 0.01, 0.001]
    assert [learning_rate(stages[1], e) for e in range(2)] == [0.01, 0.001]
    assert notes == ["stage ternary: 2 epoch(s) hold 1 of the paper's 3 learning-rate steps "
                     "(at 1); --lr_steps_* choose others"]
    config.lr_steps_quant = []            # chosen by the user: nothing to say
    assert stages_from_config(config, True, PAPER_CIFAR)[1] == []


def test_dense_models_train_one_phase_and_empty_phases_drop():
    (dense,) = paper_stages(spn=False, epochs=(7, 40, 10))
    assert dense.name == 'dense' and dense.phase == Phase.DENSE and dense.epochs == 7
    assert [p.name for p in paper_stages(epochs=(0, 3, 0))] == ['ternary']
    with pytest.raises(ValueError):
        Stage('x', Phase.FULL, 3, 0.1, steps=(2, 1))


# ----------------------------------------------------------------------------- stages, loop

def random_batches(n=32, batch=16, seed=0, train=True):
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    labels = rng.randint(0, 10, n)
    return CifarBatches(images, labels, batch, train=train, seed=seed)


def task(ctx=(mx.cpu(),), options=QUIET, kvstore=None):
    return ClassificationTask(options, ctx, random_batches(), random_batches(train=False))


def small_net():
    net = get_model('st_resnet20')
    net.initialize(mx.init.Xavier(magnitude=2))
    net.hybridize()
    return net


def test_phases_switch_layer_modes_and_frozen_phase_keeps_wb_wc():
    net = small_net()
    stages = paper_stages(epochs=(1, 1, 1))
    snapshots = {}
    layers = spn_layers(net)

    def snapshot(spec):
        assert all(l.phase == spec.phase and l.frozen == spec.frozen for l in layers)
        snapshots[spec.name] = {
            'wb': [l.wb.data().asnumpy().copy() for l in layers],
            'wc': [l.wc.data().asnumpy().copy() for l in layers],
            'scale': [l.scale.data().asnumpy().copy() for l in layers]}

    import tempfile
    with tempfile.TemporaryDirectory() as run_dir:
        status = run_stages(task(), net, stages, run_dir, {'model': 'st_resnet20'},
                            on_stage_end=snapshot)
        assert status == 'done'
        assert [r['stage'] for r in read_jsonl(os.path.join(run_dir, 'log.jsonl'))] == \
            ['full', 'ternary', 'frozen']
    tern, frozen = snapshots['ternary'], snapshots['frozen']
    for key in ('wb', 'wc'):   # W_b and W_c do not move in the frozen stage ...
        for a, b in zip(tern[key], frozen[key]):
            np.testing.assert_array_equal(a, b)
    # ... while ã keeps training (and moved in the ternary stage too).
    assert any(not np.array_equal(a, b) for a, b in zip(tern['scale'], frozen['scale']))
    assert any(not np.array_equal(a, b) for a, b in zip(snapshots['full']['wb'], tern['wb']))


def test_trainer_covers_exactly_the_trained_parameters():
    net = small_net()
    frozen = make_stage('frozen')
    enter_stage(net, frozen)
    names = set(trainable_params(net))
    layer = spn_layers(net)[3]
    assert layer.wb.name not in names and layer.wc.name not in names
    assert layer.scale.name in names and layer.dense_weight.name not in names
    assert net.output.weight.name in names
    enter_stage(net, make_stage('ternary'))
    assert layer.wb.name in set(trainable_params(net))
    trainer = make_trainer(net, 0.01)
    assert trainer.learning_rate == 0.01 and trainer.optimizer.momentum == 0.9
    assert trainer.optimizer.wd == 1e-4


def test_scales_stay_clipped_after_each_step():
    net = small_net()
    enter_stage(net, make_stage('full'))
    trainer = make_trainer(net, 50.0)       # a huge step pushes some ã below 0
    train_epoch(task(), net, trainer, random_batches())
    scales = np.concatenate([l.scale.data().asnumpy() for l in spn_layers(net)])
    assert scales.min() >= 0.0 and scales.max() <= 100.0


def test_data_parallel_epoch_on_two_contexts():
    ctx = [mx.cpu(0), mx.cpu(1)]
    net = get_model('resnet20')
    net.initialize(mx.init.Xavier(magnitude=2), ctx=ctx)
    net.hybridize()
    enter_stage(net, make_stage('dense'))
    trainer = make_trainer(net, 0.1, kvstore='device')
    stats = train_epoch(task(ctx), net, trainer, random_batches())
    assert stats['count'] == 32 and np.isfinite(stats['train_loss'])
    assert 0.0 <= evaluate(net, random_batches(train=False), ctx)['val_acc'] <= 1.0
    w0, w1 = (net.output.weight.data(c).asnumpy() for c in ctx)
    np.testing.assert_array_equal(w0, w1)    # the replicas stay identical


def test_nan_loss_raises_diverged():
    net = small_net()
    enter_stage(net, make_stage('full'))
    trainer = make_trainer(net, 0.1)
    net.output.bias.set_data(mx.nd.full((10,), np.nan))
    with pytest.raises(Diverged, match='nan'):
        train_epoch(task(), net, trainer, random_batches())


# ----------------------------------------------------------------------------- the command

def test_run_writes_log_summary_curves_and_checkpoint(full_run):
    records = read_jsonl(os.path.join(full_run, 'log.jsonl'))
    assert [(r['stage'], r['epoch']) for r in records] == [
        ('full', 0), ('full', 1), ('ternary', 0), ('ternary', 1), ('frozen', 0)]
    for r in records:
        assert LOG_FIELDS <= set(r)
        assert 0 <= r['train_acc'] <= 1 and 0 <= r['val_acc'] <= 1 and r['images'] == 32
    # One decay per step epoch (the paper's ternary steps no longer pile up on epoch 1).
    assert [r['lr'] for r in records] == [0.1, 0.01, 0.01, 0.001, 0.001]
    summary = read_summary(os.path.join(full_run, 'summary.json'))
    assert (summary['task'], summary['primary_metric'], summary['metric_names']) == \
        ('cifar10', 'val_acc', ['val_acc'])
    assert summary['metrics']['val_acc'] == records[-1]['val_acc']
    assert summary['best']['value'] == max(r['val_acc'] for r in records)
    assert set(summary['stages']) == {'full', 'ternary', 'frozen'}
    assert summary['stages']['ternary']['final']['val_acc'] == records[3]['val_acc']
    cost = summary['cost']
    assert cost['mults'] > 0 and cost['adds'] > cost['mults'] and cost['bits'] > 0
    assert '--run_name full' in summary['command'] and summary['schema_version'] == 2
    with open(os.path.join(full_run, 'curves.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    meta = read_meta(latest_checkpoint(full_run))
    assert meta['stage'] == 'frozen' and meta['finished'] and meta['model'] == 'st_resnet20'
    assert meta['phase'] == int(Phase.TERNARY) and meta['frozen']
    # The folder keeps one checkpoint, without optimizer state at the end of the last stage,
    # and the summary says what the folder holds.
    checkpoints = [d for d in os.listdir(full_run) if d.startswith('ckpt-')]
    assert checkpoints == [os.path.basename(latest_checkpoint(full_run))]
    assert 'trainer0.states' not in os.listdir(os.path.join(full_run, checkpoints[0]))
    folder = summary['folder']
    assert folder['checkpoint'] == checkpoints[0]
    assert os.path.join(checkpoints[0], 'model.params') in folder['files']
    assert folder['bytes'] == sum(folder['files'].values())


def test_trained_model_is_ternary_and_cheaper_than_dense(full_run, data_dir, tmp_path):
    rc = cifar10.main(tiny_args(data_dir, tmp_path, '--run_name', 'fp', model='resnet20',
                                epochs=(1, 5, 5)))
    assert rc == 0
    records = read_jsonl(os.path.join(tmp_path, 'fp', 'log.jsonl'))
    assert [r['stage'] for r in records] == ['dense']
    dense = read_summary(os.path.join(tmp_path, 'fp', 'summary.json'))['cost']
    strassen = read_summary(os.path.join(full_run, 'summary.json'))['cost']
    assert strassen['mults'] < dense['mults'] / 10
    assert strassen['bits'] < dense['bits']


def test_resume_continues_exactly(full_run, data_dir, tmp_path):
    args = tiny_args(data_dir, tmp_path, '--run_name', 'part', epochs=(2, 2, 1))
    assert cifar10.main(args + ['--stop_after_epochs', '3']) == 0
    run_dir = os.path.join(str(tmp_path), 'part')
    meta = read_meta(latest_checkpoint(run_dir))
    assert (meta['stage'], meta['epoch'], meta['lr'], meta['finished']) == \
        ('ternary', 0, 0.01, False)
    assert os.path.isfile(os.path.join(latest_checkpoint(run_dir), 'trainer0.states'))
    assert not os.path.exists(os.path.join(run_dir, 'summary.json'))
    # A stray log line of an epoch that never got its checkpoint is dropped on resume.
    with open(os.path.join(run_dir, 'log.jsonl'), 'a') as f:
        f.write(json.dumps(dict(read_jsonl(os.path.join(run_dir, 'log.jsonl'))[-1],
                                epoch=1, val_acc=-1.0)) + '\n')
    assert cifar10.main(['--resume', run_dir, '--quiet', '--gpu_index', '-1']) == 0
    resumed, straight = params_of(latest_checkpoint(run_dir)), params_of(
        latest_checkpoint(full_run))
    assert resumed.keys() == straight.keys()
    for name in straight:
        np.testing.assert_allclose(resumed[name], straight[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    records = read_jsonl(os.path.join(run_dir, 'log.jsonl'))
    reference = read_jsonl(os.path.join(full_run, 'log.jsonl'))
    assert [(r['stage'], r['epoch'], r['lr']) for r in records] == \
        [(r['stage'], r['epoch'], r['lr']) for r in reference]
    np.testing.assert_allclose([r['train_loss'] for r in records],
                               [r['train_loss'] for r in reference], rtol=1e-5)
    with open(os.path.join(run_dir, 'config.json')) as f:
        assert len(json.load(f)['commands']) == 2


@pytest.mark.skipif(bfloat16_support()[0] == 'none', reason='no bfloat16 kernels on this CPU')
def test_bfloat16_run_resumes_to_the_bit_in_either_dtype(data_dir, tmp_path):
    """Checkpoints hold the float32 master weights: a bfloat16 run stopped and resumed ends
    with exactly the parameters of an uninterrupted one, and it may continue in float32."""
    def run(name, *extra):
        return cifar10.main(tiny_args(data_dir, tmp_path, '--run_name', name, '--dtype',
                                      'bfloat16', *extra, epochs=(2, 1, 1)))
    assert run('straight') == 0 and run('part', '--stop_after_epochs', '2') == 0
    part = os.path.join(str(tmp_path), 'part')
    assert cifar10.main(['--resume', part, '--quiet', '--gpu_index', '-1']) == 0
    straight = params_of(latest_checkpoint(os.path.join(str(tmp_path), 'straight')))
    resumed = params_of(latest_checkpoint(part))
    assert resumed.keys() == straight.keys()
    for name in straight:
        assert resumed[name].dtype == np.float32
        np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)
    assert read_summary(os.path.join(part, 'summary.json'))['dtype'] == 'bfloat16'
    # The same stop, continued in float32: the run finishes and says so.
    assert run('mixed', '--stop_after_epochs', '2') == 0
    mixed = os.path.join(str(tmp_path), 'mixed')
    assert cifar10.main(['--resume', mixed, '--dtype', 'float32', '--quiet']) == 0
    assert read_summary(os.path.join(mixed, 'summary.json'))['dtype'] == 'float32'


def test_resume_refuses_a_model_change(full_run):
    assert cifar10.main(['--resume', full_run, '--model', 'resnet20']) == EXIT_USAGE


def test_nan_stops_without_a_new_checkpoint(data_dir, tmp_path, capsys):
    args = tiny_args(data_dir, tmp_path, '--run_name', 'nan', model='resnet20',
                     epochs=(4, 0, 0))
    assert cifar10.main(args + ['--stop_after_epochs', '1']) == 0
    run_dir = os.path.join(str(tmp_path), 'nan')
    assert cifar10.main(['--resume', run_dir, '--lr_fp', '1e38', '--quiet']) == EXIT_DIVERGED
    assert 'without writing a checkpoint' in capsys.readouterr().err
    checkpoint = latest_checkpoint(run_dir)
    meta = read_meta(checkpoint)
    logged = read_jsonl(os.path.join(run_dir, 'log.jsonl'))
    # Every checkpointed epoch is finite, and the epoch that diverged left none behind.
    assert meta['epoch'] == logged[-1]['epoch'] < 3
    assert all(np.isfinite(v).all() for v in params_of(checkpoint).values())


def test_distillation_changes_the_loss(data_dir, tmp_path):
    teacher_args = tiny_args(data_dir, tmp_path, '--run_name', 'teacher', model='resnet20')
    assert cifar10.main(teacher_args) == 0
    student = tiny_args(data_dir, tmp_path, epochs=(1, 1, 0))
    assert cifar10.main(student + ['--run_name', 'alone']) == 0
    assert cifar10.main(student + ['--run_name', 'taught', '--teacher_model',
                                   os.path.join(str(tmp_path), 'teacher')]) == 0
    alone = read_jsonl(os.path.join(str(tmp_path), 'alone', 'log.jsonl'))
    taught = read_jsonl(os.path.join(str(tmp_path), 'taught', 'log.jsonl'))
    assert [r['stage'] for r in taught] == ['full', 'ternary']
    for a, t in zip(alone, taught):   # distillation acts in every stage
        assert np.isfinite(t['train_loss']) and abs(a['train_loss'] - t['train_loss']) > 1e-4
    # A teacher with lambda 0 is plain cross-entropy: the same run as without a teacher.
    assert cifar10.main(student + ['--run_name', 'lam0', '--dist_lambda', '0',
                                   '--teacher_model', os.path.join(str(tmp_path), 'teacher')]) == 0
    lam0 = read_jsonl(os.path.join(str(tmp_path), 'lam0', 'log.jsonl'))
    np.testing.assert_allclose([r['train_loss'] for r in lam0],
                               [r['train_loss'] for r in alone], rtol=1e-5)


def test_missing_data_gives_one_message(tmp_path, capsys):
    empty = tmp_path / 'nothing'
    empty.mkdir()
    rc = cifar10.main(['--data_dir', str(empty), '--no_download', '--log_dir',
                       str(tmp_path / 'runs'), '--gpu_index', '-1'])
    err = capsys.readouterr().err
    assert rc == EXIT_DATA
    assert 'CIFAR-10 data is missing' in err and '--data_dir' in err
    assert 'Traceback' not in err
    assert not (tmp_path / 'runs').exists()     # no empty run folder left behind


def test_bad_files_give_one_message(data_dir, tmp_path, capsys):
    write_fake_cifar(tmp_path, n_train_per_batch=4, n_test=4)
    (tmp_path / 'test_batch').write_bytes(b'not a pickle')
    rc = cifar10.main(['--data_dir', str(tmp_path), '--no_download', '--no-strict_counts',
                       '--log_dir', str(tmp_path / 'runs'), '--gpu_index', '-1'])
    assert rc == EXIT_DATA and 'test_batch' in capsys.readouterr().err
    # The official counts are required unless --no-strict_counts is given.
    rc = cifar10.main(['--data_dir', data_dir, '--no_download', '--log_dir',
                       str(tmp_path / 'runs'), '--gpu_index', '-1'])
    assert rc == EXIT_DATA and 'shape' in capsys.readouterr().err


def test_options():
    args, explicit = cifar10.parse_args(['--gpu_idx', '-1', '--nbr_mul', '0,1,2,1',
                                         '--out_patch', '2'])
    assert args.devices == '-1' and args.nbr_mul == [0.0, 1.0, 2.0, 1.0]
    assert args.out_patch == 2 and explicit == {'devices', 'nbr_mul', 'out_patch'}
    assert cifar10.model_kwargs(args) == {'nbr_mul': [0.0, 1.0, 2.0, 1.0], 'out_patch': 2}
    defaults, explicit = cifar10.parse_args([])
    assert explicit == set() and defaults == cifar10.CifarConfig()
    # Schedule options left unset take the paper's schedule.
    stages, _ = stages_from_config(defaults, True, PAPER_CIFAR)
    assert [(p.epochs, p.lr, p.steps) for p in stages] == [
        (250, 0.1, (150, 200)), (40, 0.01, (10, 20, 30)), (10, 0.001, ())]
    assert (defaults.batch_size, defaults.seed, defaults.model) == (128, 321, 'st_resnet20')
    assert cifar10.model_kwargs(defaults) == {}
    quick, explicit = cifar10.parse_args(['--quick', '--epochs_fp', '3'])
    driver.apply_presets(quick, cifar10.CifarRecipe().presets(quick), explicit)
    assert quick.train_subset == cifar10.QUICK['train_subset'] and quick.epochs_fp == 3
    assert explicit == {'quick', 'epochs_fp'}
    # --init_from makes the stages a short fine-tune unless they are given.
    tune, explicit = cifar10.parse_args(['--init_from', 'gluoncv:cifar_resnet20_v1',
                                         '--epochs_fp', '2'])
    driver.apply_presets(tune, cifar10.CifarRecipe().presets(tune), explicit)
    assert (tune.epochs_fp, tune.epochs_quant, tune.lr_fp) == \
        (2, cifar10.FINE_TUNE['epochs_quant'], cifar10.FINE_TUNE['lr_fp'])
    # The original VGG command line works with --model st_vgg7.
    vgg, _ = cifar10.parse_args(['--model', 'st_vgg7', '--nbr_mul', '1', '--out_patch', '1',
                                 '--gpu_index', '0'])
    net = build_model(vgg.model, cifar10.model_kwargs(vgg))
    assert len(spn_layers(net)) == 7
    # Per-stage lists are checked for length when parsed.
    with pytest.raises(SystemExit):
        cifar10.parse_args(['--nbr_mul', '1,2'])


def test_spn_options_on_a_dense_model_are_refused(data_dir, tmp_path, capsys):
    rc = cifar10.main(tiny_args(data_dir, tmp_path, '--nbr_mul', '2', model='resnet20'))
    assert rc == EXIT_USAGE and '--nbr_mul' in capsys.readouterr().err


def test_command_runs_as_a_module(data_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, '-m', 'strassen_gluon.cifar10'] +
        tiny_args(data_dir, tmp_path, '--run_name', 'cli', epochs=(1, 1, 1))
        + ['--max_eval_batches', '1'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('epoch 1/1') == 3 and 'final val acc' in proc.stdout
    assert os.path.isfile(os.path.join(str(tmp_path), 'cli', 'summary.json'))


def test_run_folders_written_before_stages_were_named_read_in_todays_words(tmp_path):
    """Schema 1 called a training stage 'phase' and a layer phase 'phase_mode'."""
    from strassen_gluon.train.checkpoint import stage_names
    old = {'phase': 'ternary', 'phase_index': 1, 'phase_mode': 2, 'epoch': 0,
           'record': {'phase': 'ternary', 'phase_index': 1, 'epoch': 0}}
    assert stage_names(old) == {'stage': 'ternary', 'stage_index': 1, 'phase': 2, 'epoch': 0,
                                'record': {'stage': 'ternary', 'stage_index': 1, 'epoch': 0}}
    new = {'stage': 'frozen', 'stage_index': 2, 'phase': 2}
    assert stage_names(new) is new
    path = tmp_path / 'summary.json'
    path.write_text(json.dumps({'schema_version': 1, 'phases': {'full': {'epochs': 1}},
                                'phase_plan': [{'name': 'full'}], 'metrics': {},
                                'best': {'metric': 'val_acc', 'value': 0.5, 'phase': 'full'}}))
    summary = read_summary(str(path))
    assert (summary['schema_version'], summary['stages'], summary['stage_plan'],
            summary['best']['stage']) == (2, {'full': {'epochs': 1}}, [{'name': 'full'}], 'full')
    assert 'phases' not in summary and 'phase_plan' not in summary
