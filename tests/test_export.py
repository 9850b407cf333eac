"""The deployment form: exact ternary integers, folded scales, numpy evaluation = inference."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

from strassen_gluon import Phase, SPNConv2D, SPNDense, SPNLSTM, set_phase
from strassen_gluon.export import (export_layer, export_model, save_exported, spn_conv_reference,
                                   spn_dense_reference, spn_lstm_reference)

RNG = np.random.RandomState(0)


def _trained_stats(layer, x):
    """Give the layer non-trivial BN statistics, β, ã and bias, as after training."""
    layer.initialize(mx.init.Xavier())
    set_phase(layer, Phase.TERNARY)
    for _ in range(3):  # a few training-mode passes move the running statistics off 0/1
        with autograd.record():
            layer(x)
    if layer.batch_norm:
        layer.bn_beta.set_data(nd.array(RNG.randn(layer.r)))
    layer.scale.set_data(nd.array(RNG.rand(layer.r) * 2))
    if layer.bias is not None:
        layer.bias.set_data(nd.array(RNG.randn(*layer.bias.shape)))


def _relative_error(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize('kernel,stride,padding,patch,groups,size,bias', [
    (3, 1, 1, 1, 1, 8, False), (3, 1, 1, 2, 1, 7, True), (3, 2, 1, 2, 2, 9, True),
    (5, 1, 2, 3, 4, 11, False), (1, 2, 0, 1, 1, 8, True), (7, 2, 3, 2, 1, 13, False)])
def test_conv_export_reproduces_inference(kernel, stride, padding, patch, groups, size, bias):
    layer = SPNConv2D(8, kernel, stride, padding, in_channels=4, out_patch=patch, groups=groups,
                      nbr_mul=1.5, use_bias=bias)
    x = nd.array(RNG.randn(3, 4, size, size + 2))
    _trained_stats(layer, x)
    form = export_layer(layer)
    assert form['wb'].dtype == np.int8 and form['wc'].dtype == np.int8
    assert set(np.unique(form['wb'])) <= {-1, 0, 1} and set(np.unique(form['wc'])) <= {-1, 0, 1}
    assert form['wc'].shape == (layer.r, 8, patch, patch)
    assert form['scale'].shape == (layer.r,)
    expected = layer(x).asnumpy()  # inference mode: running statistics
    assert _relative_error(spn_conv_reference(x.asnumpy(), form), expected) < 1e-4


def test_identity_out_conv_exports_identity_wc():
    layer = SPNConv2D(5, (1, 3), in_channels=3, r=5, identity_out=True)
    x = nd.array(RNG.randn(4, 3, 1, 9))
    _trained_stats(layer, x)
    form = export_layer(layer)
    np.testing.assert_array_equal(form['wc'][:, :, 0, 0], np.eye(5))
    assert _relative_error(spn_conv_reference(x.asnumpy(), form), layer(x).asnumpy()) < 1e-4


@pytest.mark.parametrize('batch_norm,identity_out', [(True, False), (False, False), (True, True),
                                                      (False, True)])
def test_dense_export_reproduces_inference(batch_norm, identity_out):
    layer = SPNDense(7, in_units=12, nbr_mul=1 if identity_out else 2, batch_norm=batch_norm,
                     identity_out=identity_out)
    x = nd.array(RNG.randn(5, 12))
    _trained_stats(layer, x)
    form = export_layer(layer)
    assert set(np.unique(form['wb'])) <= {-1, 0, 1} and form['wb'].dtype == np.int8
    assert _relative_error(spn_dense_reference(x.asnumpy(), form), layer(x).asnumpy()) < 1e-4


def test_threshold_quantizer_exports_too():
    layer = SPNDense(4, in_units=6, quantizer='threshold',
                     spn_initializer=mx.init.Uniform(1.5))
    x = nd.array(RNG.randn(3, 6))
    _trained_stats(layer, x)
    form = export_layer(layer)
    assert np.count_nonzero(form['wb']) > 0
    assert _relative_error(spn_dense_reference(x.asnumpy(), form), layer(x).asnumpy()) < 1e-4


def test_lstm_export_reproduces_inference():
    layer = SPNLSTM(6, num_layers=2, input_size=5, r=4)
    layer.initialize(mx.init.Xavier())
    set_phase(layer, Phase.TERNARY)
    for param in layer.scale_params():
        param.set_data(nd.array(RNG.rand(*param.shape) * 2))
    x = nd.array(RNG.randn(4, 3, 5))
    h0 = nd.array(RNG.randn(2, 3, 6) * 0.1)
    c0 = nd.array(RNG.randn(2, 3, 6) * 0.1)
    out, h, c = layer(x, h0, c0)
    form = export_layer(layer)
    ref_out, ref_h, ref_c = spn_lstm_reference(x.asnumpy(), h0.asnumpy(), c0.asnumpy(), form)
    assert _relative_error(ref_out, out.asnumpy()) < 1e-4
    assert _relative_error(ref_c, c.asnumpy()) < 1e-4


def test_export_requires_the_ternary_phase_and_whole_model_export(tmp_path):
    net = gluon.nn.HybridSequential()
    net.add(SPNConv2D(4, 3, 1, 1, in_channels=3), gluon.nn.Flatten(), SPNDense(2, in_units=64))
    net.initialize()
    with pytest.raises(ValueError, match='TERNARY'):
        export_model(net)
    set_phase(net, 'ternary')
    forms = export_model(net)
    assert len(forms) == 2
    path = tmp_path / 'model.npz'
    save_exported(str(path), forms)
    stored = np.load(str(path))
    name = net[0].name
    np.testing.assert_array_equal(stored[name + '/wb'], forms[name]['wb'])
