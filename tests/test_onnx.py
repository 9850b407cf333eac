"""ONNX export: parity in onnxruntime, W_b / W_c as exact ternary int8 initialisers, 2-bit packing,
the export command on real run folders, and the refusal of networks that are not ternary."""
import os

import mxnet as mx
import numpy as np
import onnx
import pytest

from strassen_gluon.errors import EXIT_DATA
from onnx import numpy_helper

from cifar_fixtures import write_fake_cifar
from strassen_gluon import cifar10, set_phase
from strassen_gluon.counting import count_model
from strassen_gluon.errors import PhaseError
from strassen_gluon.export import (check_onnx, export_model, load_exported, save_exported,
                                   spn_conv_reference, spn_dense_reference, to_onnx)
from strassen_gluon.export.__main__ import main as export_main
from strassen_gluon.export.packing import pack_ternary, unpack_ternary
from strassen_gluon.layers import SPNConv2D, SPNDense
from strassen_gluon.layers.spn import spn_layers
from strassen_gluon.models import get_model
from strassen_gluon.train.teacher import load_trained
from test_deploy import trained


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """A tiny st_resnet20 run through all three phases, and one stopped after phase FULL."""
    data = str(tmp_path_factory.mktemp('cifar'))
    write_fake_cifar(data, n_train_per_batch=16, n_test=32)
    log_dir = str(tmp_path_factory.mktemp('runs'))
    common = ['--model', 'st_resnet20', '--data_dir', data, '--no_download', '--no-strict_counts',
              '--batch_size', '16', '--max_batches', '2', '--log_dir', log_dir,
              '--gpu_index', '-1', '--quiet']
    assert cifar10.main(common + ['--run_name', 'ternary', '--epochs_fp', '1',
                                  '--epochs_quant', '1', '--epochs_frozen', '1']) == 0
    assert cifar10.main(common + ['--run_name', 'full', '--epochs_fp', '1',
                                  '--epochs_quant', '0', '--epochs_frozen', '0']) == 0
    return {name: os.path.join(log_dir, name) for name in ('ternary', 'full')}


def int8_initializers(path):
    model = onnx.load(path)
    return model, {init.name: numpy_helper.to_array(init) for init in model.graph.initializer
                   if init.data_type == onnx.TensorProto.INT8}


def ternary_matrices(net):
    """Number of W_b and W_c tensors of the SPN layers (no W_c for identity_out layers)."""
    return sum(1 + (not layer.identity_out) for layer in spn_layers(net))


def assert_ternary_file(path, net):
    model, int8 = int8_initializers(path)
    assert len(int8) == ternary_matrices(net) > 0
    assert all(name.endswith(('ternary_wb', 'ternary_wc')) for name in int8)
    for name, values in int8.items():
        assert set(np.unique(values)) <= {-1, 0, 1}, name
        consumers = [node for node in model.graph.node if name in node.input]
        assert [node.op_type for node in consumers] == ['Cast'], name
    # Every float initialiser is something else (scales, biases, crop constants).
    assert not any('ternary_' in init.name for init in model.graph.initializer
                   if init.data_type != onnx.TensorProto.INT8)
    assert [i.name for i in model.graph.input] == ['data']


def test_briefly_trained_st_resnet20_runs_in_onnxruntime(runs, tmp_path):
    net, meta, _ = load_trained(runs['ternary'], mx.cpu())
    path = str(tmp_path / 'net.onnx')
    report = to_onnx(net, path, (1, 3, 32, 32))
    assert report['opset'] >= 17
    for batch in (1, 5):  # the batch dimension is dynamic
        x = mx.nd.random.normal(shape=(batch, 3, 32, 32))
        assert check_onnx(net, path, x)['relative'] < 1e-4
    assert_ternary_file(path, net)
    assert report['ternary_values'] == sum(v.size for v in int8_initializers(path)[1].values())
    assert report['size']['bits'] == count_model(net, input_shape=(1, 3, 32, 32))['total']['bits']


@pytest.mark.parametrize('name,kwargs', [('st_resnet20', {'out_patch': 2}), ('st_vgg7', {})])
def test_parity_and_exact_ternary_initialisers(name, kwargs, tmp_path):
    net, _ = trained(name, **kwargs)
    path = str(tmp_path / 'net.onnx')
    to_onnx(net, path, (2, 3, 32, 32))
    x = mx.nd.random.normal(shape=(3, 3, 32, 32))
    assert check_onnx(net, path, x)['relative'] < 1e-4
    assert_ternary_file(path, net)
    ops = {node.op_type for node in onnx.load(path).graph.node}
    if name == 'st_resnet20':  # 32 x 32 maps at p = 2: W_b's blocks tile them, nothing to crop
        assert 'ConvTranspose' in ops and not ops & {'Pad', 'Slice', 'Shape'}


def test_the_check_detects_another_network(tmp_path):
    net, _ = trained('st_resnet20')
    other, _ = trained('st_resnet20', out_patch=2)
    path = str(tmp_path / 'other.onnx')
    to_onnx(other, path, (1, 3, 32, 32))
    assert check_onnx(net, path, mx.nd.random.normal(shape=(2, 3, 32, 32)))['relative'] > 1e-2


def test_dense_network_exports_and_older_opset_is_declared(tmp_path):
    net, _ = trained('resnet20')
    path = str(tmp_path / 'dense.onnx')
    report = to_onnx(net, path, (1, 3, 32, 32), opset=17)
    assert report['opset'] == 17 and onnx.load(path).opset_import[0].version == 17
    assert report['ternary_values'] == 0 and not int8_initializers(path)[1]
    assert check_onnx(net, path, mx.nd.random.normal(shape=(2, 3, 32, 32)))['relative'] < 1e-4
    with pytest.raises(ValueError, match='opset 12'):
        to_onnx(net, path, (1, 3, 32, 32), opset=12)


def test_network_not_ternary_is_refused(tmp_path):
    net = get_model('st_resnet20')
    net.initialize()
    set_phase(net, 'full')
    path = tmp_path / 'full.onnx'
    with pytest.raises(PhaseError, match='phase FULL, not TERNARY'):
        to_onnx(net, str(path), (1, 3, 32, 32))
    assert not path.exists()


def test_pack_ternary_round_trips_exactly():
    rng = np.random.default_rng(0)
    for shape in [(1,), (3,), (4,), (5, 7), (2, 3, 3, 3)]:
        levels = rng.integers(-1, 2, size=shape).astype(np.int8)
        packed = pack_ternary(levels)
        assert packed.dtype == np.uint8 and packed.size == -(-levels.size // 4)
        np.testing.assert_array_equal(unpack_ternary(packed, shape), levels)
    with pytest.raises(ValueError):
        pack_ternary(np.array([2]))


def test_packed_form_round_trips_exactly_into_the_numpy_evaluator(tmp_path):
    mx.random.seed(0)
    net = mx.gluon.nn.HybridSequential()
    net.add(SPNConv2D(6, 3, 1, 1, in_channels=3, out_patch=2), mx.gluon.nn.Flatten(),
            SPNDense(5, in_units=6 * 7 * 7))
    net.initialize(mx.init.Xavier())
    set_phase(net, 'ternary')
    forms = export_model(net)
    path = str(tmp_path / 'packed.npz')
    save_exported(path, forms, packed=True)
    with np.load(path) as stored:  # 2 bits per weight: 4 per byte
        for name, form in forms.items():
            for field in ('wb', 'wc'):
                assert stored['%s/%s.packed2' % (name, field)].nbytes == -(-form[field].size // 4)
                assert '%s/%s' % (name, field) not in stored.files
    loaded = load_exported(path)
    assert loaded.keys() == forms.keys()
    for name, form in forms.items():
        assert loaded[name].keys() == form.keys()
        for field, value in form.items():
            np.testing.assert_array_equal(np.asarray(loaded[name][field]), np.asarray(value))
            assert np.asarray(loaded[name][field]).dtype == np.asarray(value).dtype
    x = np.random.default_rng(1).normal(size=(2, 3, 7, 7))
    conv, dense = net[0].name, net[2].name
    np.testing.assert_array_equal(spn_conv_reference(x, loaded[conv]),
                                  spn_conv_reference(x, forms[conv]))
    h = np.random.default_rng(2).normal(size=(2, 6 * 7 * 7))
    np.testing.assert_array_equal(spn_dense_reference(h, loaded[dense]),
                                  spn_dense_reference(h, forms[dense]))


def test_command_end_to_end(runs, tmp_path, capsys):
    onnx_path, npz = str(tmp_path / 'run.onnx'), str(tmp_path / 'run.npz')
    assert export_main([runs['ternary'], '--onnx', onnx_path, '--check', '--packed', npz]) == 0
    out = capsys.readouterr().out
    assert 'largest difference' in out and ': ok' in out and 'deployed size' in out
    net, _, _ = load_trained(runs['ternary'])
    bits = count_model(net, input_shape=(1, 3, 32, 32))['total']['bits']
    assert '{:,} bits'.format(bits) in out
    assert_ternary_file(onnx_path, net)
    assert load_exported(npz).keys() == export_model(net).keys()


def test_command_errors(runs, tmp_path, capsys):
    missing = str(tmp_path / 'no_such_run')
    assert export_main([missing, '--onnx', str(tmp_path / 'x.onnx')]) == 1
    assert missing in capsys.readouterr().err
    assert export_main([runs['full'], '--onnx', str(tmp_path / 'x.onnx')]) == 1
    assert 'not TERNARY' in capsys.readouterr().err
    assert not os.path.exists(str(tmp_path / 'x.onnx'))
    for bad in ([runs['ternary']], [runs['ternary'], '--packed', 'x.npz', '--check'],
                [runs['ternary'], '--onnx', 'x.onnx', '--bogus'],
                [runs['ternary'], '--onnx', 'x.onnx', '--opset', '12']):
        with pytest.raises(SystemExit) as exit_info:
            export_main(bad)
        assert exit_info.value.code == 2


def test_network_converted_from_gluoncv_exports(tmp_path):
    from gluoncv.model_zoo import get_model as gluoncv_model
    from strassen_gluon.convert import strassenize
    mx.random.seed(0)
    net = gluoncv_model('cifar_resnet20_v1', pretrained=False)
    net.initialize(mx.init.Xavier())
    x = mx.nd.random.normal(shape=(2, 3, 32, 32))
    strassenize(net, out_patch=2, calibration=x)  # the batch gives the stem its input size
    set_phase(net, 'ternary')
    with mx.autograd.record():  # moves the batch norms' running statistics
        net(x)
    path = str(tmp_path / 'converted.onnx')
    to_onnx(net, path, (1, 3, 32, 32))
    assert check_onnx(net, path, x)['relative'] < 1e-4
    assert_ternary_file(path, net)


@pytest.mark.parametrize('option', ['--onnx', '--packed'])
@pytest.mark.parametrize('where, message', [
    ('/nonexistent/x', 'the folder /nonexistent does not exist'),
    ('.', 'that is a folder'),
])
def test_command_checks_output_paths_before_loading(option, where, message, tmp_path, capsys,
                                                    monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError('the run folder was loaded')
    monkeypatch.setattr('strassen_gluon.export.__main__.load_trained', no_loading)
    assert export_main([str(tmp_path), option, where]) == EXIT_DATA
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: %s %s: ' % (option, where)), lines
    assert message in lines[0]


def tiny_lm_checkpoint(folder):
    """A checkpoint folder of a tiny st_charlm in phase TERNARY (what load_trained reads)."""
    from strassen_gluon.train.checkpoint import save_checkpoint
    kwargs = dict(char_vocab_size=12, word_vocab_size=20, max_word_l=6, char_vec_size=5,
                  feature_maps=[3, 4], kernels=[1, 2], highway_layers=1, rnn_size=8,
                  num_layers=2, out_nbr_mul=6)
    mx.random.seed(0)
    net = get_model('st_charlm', **kwargs)
    net.initialize(mx.init.Xavier())
    set_phase(net, 'ternary')
    net(*net.example_inputs())
    return save_checkpoint(str(folder), 'p0-e0000', net, meta=dict(
        model='st_charlm', model_kwargs=kwargs, phase=2, epoch=0)), net


def test_language_model_exports_packed_and_refuses_onnx_with_a_message(tmp_path, capsys):
    from strassen_gluon.export import spn_lstm_reference
    ckpt, net = tiny_lm_checkpoint(tmp_path / 'lm')
    onnx_path, npz = tmp_path / 'lm.onnx', tmp_path / 'lm.npz'
    # --onnx is refused before anything is written, --packed included.
    assert export_main([ckpt, '--onnx', str(onnx_path), '--packed', str(npz)]) == 2
    err = capsys.readouterr().err
    assert 'recurrent layer (SPNLSTM)' in err and '--packed' in err and 'Traceback' not in err
    assert not onnx_path.exists() and not npz.exists()
    with pytest.raises(Exception, match='recurrent layer'):
        to_onnx(net, str(onnx_path), (1, 6))
    # --packed writes the numpy deployment form, LSTM included, and it computes the LSTM.
    assert export_main([ckpt, '--packed', str(npz)]) == 0
    forms = load_exported(str(npz))
    lstm = net.lstm
    (form,) = [forms[name] for name in forms if forms[name]['kind'] == 'lstm']
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 2, lstm.input_size)).astype(np.float32)
    h0, c0 = (rng.normal(size=(2, 2, 8)).astype(np.float32) * 0.1 for _ in range(2))
    out, _, _ = lstm(mx.nd.array(x), mx.nd.array(h0), mx.nd.array(c0))
    ref, _, _ = spn_lstm_reference(x, h0, c0, form)
    assert np.abs(ref - out.asnumpy()).max() < 1e-4 * max(np.abs(ref).max(), 1)
    assert export_main([ckpt, '--packed', str(npz), '--input_size', '32']) == 2
    assert '--input_size applies to image models' in capsys.readouterr().err


def test_packed_file_is_written_at_exactly_the_path_given(runs, tmp_path):
    path = tmp_path / 'deployed'  # numpy would have appended '.npz'
    assert export_main([runs['ternary'], '--packed', str(path)]) == 0
    assert path.exists() and not (tmp_path / 'deployed.npz').exists()
    assert os.listdir(str(tmp_path)) == ['deployed']
    load_exported(str(path))
