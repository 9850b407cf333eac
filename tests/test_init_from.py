"""--init_from in the three training commands: a trained dense run becomes the Strassen model's
start (exactly, at r = c_out and p = 1), its teacher, and a short fine-tune; bad sources fail
before training with one message naming the file."""
import json
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

from cifar_fixtures import write_fake_cifar
from langmod import lm, train as lm_command
from strassen_gluon import cifar10, imagenet, spn_layers
from strassen_gluon.data import CifarBatches, load_cifar10
from strassen_gluon.data.imagenet import write_tiny_recordio
from strassen_gluon.errors import EXIT_USAGE
from strassen_gluon.models import get_model
from strassen_gluon.train.build import init_from
from strassen_gluon.train.checkpoint import latest_checkpoint
from strassen_gluon.train.logs import read_jsonl
from test_langmod import TINY as LM_TINY, write_corpus

CPU = ['--gpu_index', '-1', '--quiet']


def phases_of(run_dir):
    return [(r['stage'], r['lr']) for r in read_jsonl(os.path.join(run_dir, 'log.jsonl'))]


@pytest.fixture(scope='module')
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp('cifar')
    write_fake_cifar(root / 'data', n_train_per_batch=16, n_test=32)
    args = ['--data_dir', str(root / 'data'), '--no_download', '--no-strict_counts',
            '--batch_size', '16', '--max_batches', '2', '--log_dir', str(root)] + CPU
    assert cifar10.main(args + ['--model', 'resnet20', '--epochs_fp', '1',
                                '--run_name', 'dense']) == 0
    return args, str(root)


def test_cifar_conversion_is_exact_and_fine_tunes(cifar, capsys):
    args, root = cifar
    dense_dir = os.path.join(root, 'dense')
    # What the command does before training: the converted network computes the dense one.
    data = load_cifar10(os.path.join(root, 'data'), download=False, strict_counts=False)
    x = next(iter(CifarBatches(data.train_images, data.train_labels, 16, train=True)))[0]
    net = get_model('st_resnet20')
    net.initialize()
    net(x)
    dense, reports = init_from(dense_dir, net, 'st_resnet20', [mx.cpu()], x,
                               say=lambda *a: None)
    assert len(reports) == 21 and all(r.exact for r in reports)
    want, got = dense(x).asnumpy(), net(x).asnumpy()
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-5

    assert cifar10.main(args + ['--model', 'st_resnet20', '--init_from', dense_dir,
                                '--run_name', 'tuned']) == 0
    out = capsys.readouterr().out
    assert 'init_from %s: 21 SPN layers, 21 exact' % dense_dir in out
    assert 'distillation teacher: %s' % dense_dir in out   # the dense network, by default
    # Exact conversion: the converted network scores what the dense one scored (the fine-tune
    # starts in full precision, so there is no quantized start to score).
    with open(os.path.join(dense_dir, 'summary.json')) as f:
        dense_acc = json.load(f)['metrics']['val_acc']
    assert 'converted network in full precision: val_acc %.2f%%' % (100 * dense_acc) in out
    assert 'before fine-tuning' not in out
    tune = cifar10.FINE_TUNE
    assert [p for p, _ in phases_of(os.path.join(root, 'tuned'))] == \
        ['full'] * tune['epochs_fp'] + ['ternary'] * tune['epochs_quant'] + \
        ['frozen'] * tune['epochs_frozen']
    # The original flags still set the stages; --dist_lambda 0 turns the teacher off. A
    # ternary first stage gets its start scored too.
    assert cifar10.main(args + ['--model', 'st_resnet20', '--init_from', dense_dir,
                                '--epochs_fp', '0', '--epochs_quant', '1', '--dist_lambda', '0',
                                '--run_name', 'short']) == 0
    out = capsys.readouterr().out
    assert 'distillation teacher' not in out
    assert 'converted network in full precision: val_acc %.2f%%' % (100 * dense_acc) in out
    assert 'converted network in stage ternary, before fine-tuning: val_acc' in out
    assert [p for p, _ in phases_of(os.path.join(root, 'short'))] == ['ternary', 'frozen']


def test_cifar_freeze_wc_keeps_the_converted_identity(cifar, capsys):
    args, root = cifar
    dense_dir = os.path.join(root, 'dense')
    assert cifar10.main(args + ['--model', 'st_resnet20', '--init_from', dense_dir,
                                '--epochs_fp', '1', '--epochs_quant', '1', '--epochs_frozen',
                                '0', '--freeze_wc', '--run_name', 'held']) == 0
    plan = next(l for l in capsys.readouterr().out.splitlines() if 'stages: ' in l)
    assert plan.count(' W_c frozen') == 2, plan
    run_dir = os.path.join(root, 'held')
    with open(os.path.join(run_dir, 'summary.json')) as f:
        plan = json.load(f)['stage_plan']
    assert [s['frozen_wc'] for s in plan] == [True, True]
    net = get_model('st_resnet20')
    net.load_parameters(os.path.join(latest_checkpoint(run_dir), 'model.params'))
    layers = spn_layers(net)
    for layer in layers:    # W_c is still the conversion's identity after both stages ...
        wc = layer.wc.data().asnumpy()
        np.testing.assert_array_equal(wc.reshape(layer.r, -1), np.eye(layer.r))
    # ... while W_b moved away from the converted dense filters.
    start = get_model('st_resnet20')
    start.initialize()
    x = nd.zeros((1, 3, 32, 32))
    start(x)
    init_from(dense_dir, start, 'st_resnet20', [mx.cpu()], x, say=lambda *a: None)
    assert all(not np.array_equal(a.wb.data().asnumpy(), b.wb.data().asnumpy())
               for a, b in zip(layers, spn_layers(start)))


def test_cifar_bad_init_from_exits_2_naming_the_file(cifar, capsys):
    args, root = cifar
    missing = os.path.join(root, 'no-such-run')
    st = args + ['--model', 'st_resnet20']
    assert cifar10.main(st + ['--init_from', missing, '--run_name', 'a']) == EXIT_USAGE
    assert missing in capsys.readouterr().err
    # A run of another architecture: a Strassen run is no dense twin.
    assert cifar10.main(st + ['--epochs_fp', '1', '--epochs_quant', '0', '--epochs_frozen', '0',
                              '--run_name', 'spn']) == 0
    capsys.readouterr()
    assert cifar10.main(st + ['--init_from', os.path.join(root, 'spn'),
                              '--run_name', 'b']) == EXIT_USAGE
    err = capsys.readouterr().err
    assert os.path.join(root, 'spn', 'ckpt-p0-e0000') in err and 'needs a trained resnet20' in err
    assert cifar10.main(args + ['--model', 'st_vgg7', '--init_from', os.path.join(root, 'dense'),
                                '--run_name', 'c']) == EXIT_USAGE
    assert 'needs a trained vgg7' in capsys.readouterr().err
    # A dense model has nothing to convert; gluoncv names without a twin are refused.
    assert cifar10.main(args + ['--model', 'resnet20', '--init_from', os.path.join(root, 'dense'),
                                '--run_name', 'd']) == EXIT_USAGE
    assert cifar10.main(st + ['--init_from', 'gluoncv:mobilenet1.0', '--run_name', 'e']) == \
        EXIT_USAGE
    assert 'no Strassen twin' in capsys.readouterr().err
    # Nothing was trained: no run folder holds a log.
    for name in 'abcde':
        assert not os.path.exists(os.path.join(root, name, 'log.jsonl'))


def test_imagenet_init_from_a_resnet18_run(tmp_path, capsys):
    train_rec, _ = write_tiny_recordio(str(tmp_path / 'train'), 16, classes=4, seed=1)
    val_rec, _ = write_tiny_recordio(str(tmp_path / 'val'), 8, classes=4, seed=2)
    args = ['--train_rec', train_rec, '--val_rec', val_rec, '--classes', '4', '--image_size',
            '32', '--batch_size', '4', '--max_batches', '2', '--num_workers', '1',
            '--log_dir', str(tmp_path)] + CPU
    assert imagenet.main(args + ['--model', 'resnet18', '--epochs_fp', '1',
                                 '--run_name', 'dense']) == 0
    capsys.readouterr()
    dense_dir = str(tmp_path / 'dense')
    assert imagenet.main(args + ['--model', 'st_resnet18', '--init_from', dense_dir,
                                 '--run_name', 'tuned']) == 0
    out = capsys.readouterr().out
    n = len(spn_layers(get_model('st_resnet18', classes=4)))
    assert 'init_from %s: %d SPN layers, %d exact' % (dense_dir, n, n) in out
    assert 'distillation teacher: %s' % dense_dir in out
    tune = imagenet.FINE_TUNE
    assert phases_of(str(tmp_path / 'tuned')) == \
        [('full', tune['lr_fp'])] * tune['epochs_fp'] + \
        [('ternary', tune['lr_quant'])] * tune['epochs_quant'] + \
        [('frozen', tune['lr_frozen'])] * tune['epochs_frozen']
    assert imagenet.main(args + ['--model', 'st_resnet18', '--init_from', str(tmp_path / 'x'),
                                 '--run_name', 'bad']) == EXIT_USAGE
    assert str(tmp_path / 'x') in capsys.readouterr().err


def test_langmod_init_from_a_quant_mode_5_run(tmp_path, capsys):
    corpus = write_corpus(tmp_path / 'ptb')
    # The decoder's r covers the vocabulary, so every layer has an exact factorisation.
    args = LM_TINY + ['--data_dir', corpus, '--log_dir', str(tmp_path), '--max_batches', '3',
                      '--max_eval_batches', '2', '--out_nbr_mul', '32']
    args.remove('--quiet')
    assert lm_command.main(args + ['--quant_mode', '5', '--max_epochs', '1',
                                   '--run_name', 'dense']) == 0
    capsys.readouterr()
    dense_dir = str(tmp_path / 'dense')
    for mode in (1, 2, 6):
        assert lm_command.main(args + ['--quant_mode', str(mode), '--max_epochs', '1',
                                       '--init_from', dense_dir, '--run_name', 'qm%d' % mode]) == 0
        out = capsys.readouterr().out
        assert 'init_from %s:' % dense_dir in out, out
        assert ('distillation teacher: %s' % dense_dir in out) == (mode in lm.STAGED_MODES)
    # What the command does before training: quant_mode 1 (full-precision SPNs) converted
    # from the dense run scores the dense model's validation perplexity.
    config, _ = lm_command.parse_args(args + ['--quant_mode', '1'])
    corpus_data = lm.load_corpus_or_fail(config)
    name, kwargs = lm.model_spec(config, corpus_data.vocab)
    net = get_model(name, **kwargs)
    net.initialize()
    train_data = lm.Batches(*corpus_data.splits['train'], config.batch_size, config.seq_length)
    calibration = (mx.nd.array(train_data.chunk(0)[0]),) + tuple(
        net.begin_state(config.batch_size))
    net(*calibration)
    teacher, reports = init_from(dense_dir, net, name, [mx.cpu()], calibration,
                                 say=lambda *a: None)
    assert reports and all(r.exact for r in reports)
    valid = lm.Batches(*corpus_data.splits['valid'], config.batch_size, config.seq_length)
    assert lm.evaluate(net, valid, mx.cpu()) == pytest.approx(
        lm.evaluate(teacher, valid, mx.cpu()), rel=1e-5)
    # A Strassen run is no dense source; the dense model itself cannot be converted.
    assert lm_command.main(args + ['--quant_mode', '2', '--init_from',
                                   str(tmp_path / 'qm2'), '--run_name', 'bad']) == EXIT_USAGE
    assert 'needs a trained charlm' in capsys.readouterr().err
    assert lm_command.main(args + ['--quant_mode', '5', '--init_from', dense_dir,
                                   '--run_name', 'bad5']) == EXIT_USAGE
    with open(os.path.join(str(tmp_path), 'qm2', 'config.json')) as f:
        assert json.load(f)['config']['init_from'] == dense_dir
