"""SPN layers: shapes, exact decompositions, phases, freezing, hybridization, bad input."""
import itertools

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

from strassen_gluon import (Phase, SPNConv2D, SPNDense, SPNLSTM, clip_scales, freeze_ternary,
                            set_phase, spn_layers)
from strassen_gluon.quant import fake_quantize, twn

RNG = np.random.RandomState(0)


def _init(block, seed=0):
    mx.random.seed(seed)
    block.initialize()
    return block


# ------------------------------------------------------------------------ shapes

SHAPE_GRID = list(itertools.product([1, 3, 5, 7], [1, 2], [1, 2, 3], [1, 2, 4]))


@pytest.mark.parametrize('kernel,stride,patch,groups', SHAPE_GRID)
def test_conv_output_shape_equals_dense(kernel, stride, patch, groups):
    for size, padding in ((7, kernel // 2), (8, kernel // 2), (9, 0), (10, 1)):
        if size + 2 * padding < kernel:
            continue
        layer = _init(SPNConv2D(4, kernel, stride, padding, in_channels=4, out_patch=patch,
                                groups=groups, nbr_mul=1))
        dense = _init(gluon.nn.Conv2D(4, kernel, stride, padding, in_channels=4))
        x = nd.random.normal(shape=(2, 4, size, size + 1))
        assert layer(x).shape == dense(x).shape, (kernel, stride, patch, groups, size, padding)


# ------------------------------------------------------------------------ exact decompositions

def _neutral_bn(layer):
    # Inference-mode BN with running var 1 - eps and mean 0 is the identity.
    layer.bn_var.set_data(nd.ones(layer.r) - layer.bn_eps)
    layer.bn_mean.set_data(nd.zeros(layer.r))


@pytest.mark.parametrize('phase', [Phase.FULL, Phase.TERNARY])
@pytest.mark.parametrize('batch_norm', [True, False])
def test_dense_full_rank_decomposition_is_the_matrix_product(phase, batch_norm):
    n_out, n_in = 3, 4
    a = RNG.randn(n_out, n_in)
    layer = _init(SPNDense(n_out, in_units=n_in, r=n_out * n_in, use_bias=False,
                           batch_norm=batch_norm, phase=phase))
    # Hidden unit (o, i) reads x_i (W_b), multiplies by a[o, i] (ã) and adds into y_o (W_c).
    wb, wc = np.zeros((n_out * n_in, n_in)), np.zeros((n_out, n_out * n_in))
    for o, i in itertools.product(range(n_out), range(n_in)):
        wb[o * n_in + i, i] = 1
        wc[o, o * n_in + i] = 1
    layer.wb.set_data(nd.array(wb))
    layer.wc.set_data(nd.array(wc))
    layer.scale.set_data(nd.array(a.ravel()))
    if batch_norm:
        _neutral_bn(layer)
    x = RNG.randn(5, n_in)
    np.testing.assert_allclose(layer(nd.array(x)).asnumpy(), x @ a.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kernel,stride,padding,patch,size',
                         [(3, 1, 1, 1, 6), (3, 1, 1, 2, 7), (3, 2, 1, 2, 9), (1, 1, 0, 3, 5),
                          (5, 1, 2, 2, 6)])
def test_conv_full_rank_decomposition_equals_dense_conv(kernel, stride, padding, patch, size):
    """With r = p²·c_out·c_in·k², the SPN reproduces the dense convolution exactly: this pins down
    how W_b's blocks align with the output blocks, and the layout of W_c."""
    c_in, c_out, k, s, p = 2, 3, kernel, stride, patch
    dense_w = RNG.randn(c_out, c_in, k, k)
    r = p * p * c_out * c_in * k * k
    layer = _init(SPNConv2D(c_out, k, s, padding, in_channels=c_in, r=r, out_patch=p,
                            use_bias=False))
    kb = layer.kernel_b[0]
    wb = np.zeros((r, c_in, kb, kb))
    wc = np.zeros((p * p * c_out, r, 1, 1))
    scale = np.zeros(r)
    for j, (i, jj, o, c, u, v) in enumerate(itertools.product(
            range(p), range(p), range(c_out), range(c_in), range(k), range(k))):
        wb[j, c, i * s + u, jj * s + v] = 1   # output (i, jj) of the block reads this tap
        scale[j] = dense_w[o, c, u, v]
        wc[o * p * p + i * p + jj, j] = 1
    layer.wb.set_data(nd.array(wb))
    layer.wc.set_data(nd.array(wc))
    layer.scale.set_data(nd.array(scale))
    _neutral_bn(layer)
    dense = _init(gluon.nn.Conv2D(c_out, k, s, padding, in_channels=c_in, use_bias=False))
    dense.weight.set_data(nd.array(dense_w))
    x = nd.array(RNG.randn(2, c_in, size, size + 1))
    np.testing.assert_allclose(layer(x).asnumpy(), dense(x).asnumpy(), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------ phases

def _conv_with_bias():
    layer = _init(SPNConv2D(4, 3, 1, 1, in_channels=3, out_patch=2, nbr_mul=1.5))
    layer.bias.set_data(nd.array(RNG.randn(4)))
    layer.scale.set_data(nd.array(RNG.rand(layer.r) + 0.5))
    return layer


def test_dense_phase_equals_plain_conv_and_dense():
    layer = _conv_with_bias()
    set_phase(layer, Phase.DENSE)
    plain = _init(gluon.nn.Conv2D(4, 3, 1, 1, in_channels=3))
    plain.weight.set_data(layer.dense_weight.data())
    plain.bias.set_data(layer.bias.data())
    x = nd.random.normal(shape=(2, 3, 7, 7))
    np.testing.assert_allclose(layer(x).asnumpy(), plain(x).asnumpy(), rtol=1e-5, atol=1e-6)

    fc = _init(SPNDense(5, in_units=6, phase='dense'))
    plain_fc = _init(gluon.nn.Dense(5, in_units=6))
    plain_fc.weight.set_data(fc.dense_weight.data())
    x = nd.random.normal(shape=(3, 6))
    np.testing.assert_allclose(fc(x).asnumpy(), plain_fc(x).asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('phase,quantize_b,quantize_c',
                         [(Phase.FULL, False, False), (Phase.TERNARY, True, True),
                          (Phase.TERNARY_B, True, False), (Phase.TERNARY_C, False, True)])
def test_each_phase_quantizes_exactly_its_matrices(phase, quantize_b, quantize_c):
    layer = _conv_with_bias()
    x = nd.random.normal(shape=(2, 3, 7, 7))
    wb, wc = layer.wb.data().copy(), layer.wc.data().copy()
    set_phase(layer, phase)
    out = layer(x)
    # The same output from a full-precision layer whose matrices were quantized by hand.
    reference = _conv_with_bias()
    reference.collect_params().load_dict(
        {k.replace(layer.prefix, reference.prefix): v.data()
         for k, v in layer.collect_params().items()})
    if quantize_b:
        reference.wb.set_data(fake_quantize(nd, wb, twn))
    if quantize_c:
        reference.wc.set_data(fake_quantize(nd, wc, twn))
    np.testing.assert_allclose(out.asnumpy(), reference(x).asnumpy(), rtol=1e-5, atol=1e-5)
    if quantize_b or quantize_c:
        set_phase(layer, Phase.FULL)
        assert not np.allclose(layer(x).asnumpy(), out.asnumpy())


def test_set_phase_changes_hybridized_output_and_grad_req():
    net = gluon.nn.HybridSequential()
    net.add(SPNConv2D(8, 3, 1, 1, in_channels=3, use_bias=False), gluon.nn.Activation('relu'),
            SPNConv2D(4, 3, 2, 1, in_channels=8, out_patch=2))
    _init(net)
    net.hybridize()
    x = nd.random.normal(shape=(2, 3, 8, 8))
    outputs = {}
    for phase in Phase:
        set_phase(net, phase)
        outputs[phase] = net(x).asnumpy()
        for layer in spn_layers(net):
            assert layer.phase == phase
            spn = phase != Phase.DENSE
            assert layer.dense_weight.grad_req == ('null' if spn else 'write')
            assert layer.wb.grad_req == layer.wc.grad_req == ('write' if spn else 'null')
            assert layer.scale.grad_req == ('write' if spn else 'null')
    for a, b in itertools.combinations(Phase, 2):
        assert not np.allclose(outputs[a], outputs[b]), (a, b)


def test_hybridized_and_imperative_agree_in_every_phase():
    def build():
        net = gluon.nn.HybridSequential()
        net.add(SPNConv2D(6, 3, 2, 1, in_channels=3, out_patch=3, groups=3, nbr_mul=2),
                gluon.nn.Flatten(), SPNDense(5, in_units=6 * 4 * 4))
        return _init(net, seed=3)
    x = nd.random.normal(shape=(2, 3, 7, 7))
    imperative, hybrid = build(), build()
    hybrid.hybridize()
    for phase in Phase:
        set_phase(imperative, phase)
        set_phase(hybrid, phase)
        np.testing.assert_allclose(imperative(x).asnumpy(), hybrid(x).asnumpy(), rtol=1e-5,
                                   atol=1e-5)


def test_lstm_dense_phase_equals_gluon_lstm_and_phases_differ():
    layer = _init(SPNLSTM(8, num_layers=2, input_size=5))
    x = nd.random.normal(shape=(4, 3, 5))
    h0, c0 = layer.begin_state(3)
    set_phase(layer, 'dense')
    reference = _init(gluon.rnn.LSTM(8, num_layers=2, input_size=5))
    params = reference.collect_params()
    for name, param in params.items():
        # gluon names them l0_i2h_weight ...; ours l0_i2h_dense_weight / l0_i2h_bias.
        short = name[len(reference.prefix):].replace('_weight', '_dense_weight')
        param.set_data(getattr(layer, short).data())
    out, h, c = layer(x, h0, c0)
    ref_out, (ref_h, ref_c) = reference(x, [h0, c0])
    np.testing.assert_allclose(out.asnumpy(), ref_out.asnumpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c.asnumpy(), ref_c.asnumpy(), rtol=1e-5, atol=1e-5)
    set_phase(layer, 'full')
    full = layer(x, h0, c0)[0].asnumpy()
    set_phase(layer, 'ternary')
    assert not np.allclose(layer(x, h0, c0)[0].asnumpy(), full)


def test_lstm_spn_gate_matrix_is_wc_diag_a_wb():
    layer = _init(SPNLSTM(6, num_layers=1, input_size=4, r=3))
    wb, wc = layer.l0_i2h_wb.data(), layer.l0_i2h_wc.data()
    a = nd.array(RNG.rand(4, 3))
    layer.l0_i2h_scale.set_data(a)
    m = layer.gate_matrix(nd, wb, wc, a).asnumpy().reshape(4, 6, 4)
    for g in range(4):
        expected = wc[g].asnumpy() @ np.diag(a[g].asnumpy()) @ wb[g].asnumpy()
        np.testing.assert_allclose(m[g], expected, rtol=1e-5, atol=1e-6)


def test_identity_out_layers_compute_scaled_batchnorm_of_wb():
    """A char conv = ã ⊙ BN(W_b * x) + b with W_c = I; an identity_out dense likewise."""
    conv = SPNConv2D(4, (1, 2), in_channels=3, r=4, identity_out=True, phase=Phase.FULL)
    dense = SPNDense(5, in_units=3, r=5, identity_out=True)
    for layer, x in ((conv, nd.random.normal(shape=(6, 3, 1, 7))),
                     (dense, nd.random.normal(shape=(6, 3)))):
        layer.initialize(mx.init.Xavier())
        layer.scale.set_data(nd.random.uniform(0.5, 2, shape=layer.scale.shape))
        layer.bn_beta.set_data(nd.random.normal(shape=layer.bn_beta.shape))
        layer.bias.set_data(nd.random.normal(shape=layer.bias.shape))
        with autograd.record():  # training mode: batch statistics
            y = layer(x)
        if layer is conv:
            h = nd.Convolution(x, conv.wb.data(), kernel=(1, 2), num_filter=4, no_bias=True)
            axes, shape = (0, 2, 3), (1, -1, 1, 1)
        else:
            h = nd.dot(x, dense.wb.data(), transpose_b=True)
            axes, shape = (0,), (1, -1)
        h = h.asnumpy()
        norm = (h - h.mean(axis=axes, keepdims=True)) / np.sqrt(
            h.var(axis=axes, keepdims=True) + 1e-3)
        expected = layer.scale.data().asnumpy().reshape(shape) * (
            norm + layer.bn_beta.data().asnumpy().reshape(shape)) + \
            layer.bias.data().asnumpy().reshape(shape)
        np.testing.assert_allclose(y.asnumpy(), expected, rtol=1e-4, atol=1e-4)



@pytest.mark.parametrize('in_units,units,identity_out', [(3, 8, False), (9, 4, False),
                                                          (6, 6, True)])
def test_dense_without_batchnorm_folds_scale_exactly(in_units, units, identity_out):
    layer = _init(SPNDense(units, in_units=in_units, r=units if identity_out else 5,
                           batch_norm=False, identity_out=identity_out))
    a = RNG.rand(layer.r) + 0.5
    layer.scale.set_data(nd.array(a))
    layer.bias.set_data(nd.array(RNG.randn(units)))
    x = RNG.randn(4, in_units)
    wb = layer.wb.data().asnumpy()
    wc = np.eye(units) if identity_out else layer.wc.data().asnumpy()
    expected = ((x @ wb.T) * a) @ wc.T + layer.bias.data().asnumpy()
    np.testing.assert_allclose(layer(nd.array(x)).asnumpy(), expected, rtol=1e-4, atol=1e-5)


def test_fixed_scale_is_never_trained_and_identity_out_has_no_wc():
    layer = _init(SPNConv2D(4, 3, 1, 1, in_channels=2, r=4, identity_out=True, fixed_scale=True))
    assert layer.wc is None and layer.ternary_params() == [layer.wb]
    for phase in Phase:
        set_phase(layer, phase)
        assert layer.scale.grad_req == 'null'
    with pytest.raises(ValueError, match='identity_out'):
        SPNDense(4, in_units=3, r=3, identity_out=True)


# ------------------------------------------------------------------------ training

def test_freeze_keeps_quantizing_and_stops_ternary_updates():
    layer = _conv_with_bias()
    set_phase(layer, Phase.TERNARY)
    x = nd.random.normal(shape=(2, 3, 7, 7))
    before = layer(x).asnumpy()
    freeze_ternary(layer)
    assert layer.wb.grad_req == layer.wc.grad_req == 'null'
    assert layer.scale.grad_req == 'write' and layer.bn_beta.grad_req == 'write'
    np.testing.assert_allclose(layer(x).asnumpy(), before, rtol=1e-6)
    wb = layer.wb.data().copy()
    trainer = gluon.Trainer(layer.collect_params(), 'sgd', {'learning_rate': 0.1})
    scale = layer.scale.data().copy()
    with autograd.record():
        loss = layer(x).square().mean()
    loss.backward()
    trainer.step(2)
    np.testing.assert_array_equal(layer.wb.data().asnumpy(), wb.asnumpy())
    assert not np.allclose(layer.scale.data().asnumpy(), scale.asnumpy())
    freeze_ternary(layer, False)
    assert layer.wb.grad_req == 'write'


def _step(layer, *inputs):
    trainer = gluon.Trainer([p for p in layer.collect_params().values()
                             if p.grad_req != 'null'], 'sgd', {'learning_rate': 0.1})
    with autograd.record():
        out = layer(*inputs)
        loss = (out[0] if isinstance(out, (list, tuple)) else out).square().mean()
    loss.backward()
    trainer.step(2)


@pytest.mark.parametrize('kind', ['conv', 'lstm'])
def test_frozen_wc_holds_wc_while_wb_trains(kind):
    if kind == 'conv':
        layer = _conv_with_bias()
        inputs = [nd.random.normal(shape=(2, 3, 7, 7))]
    else:
        layer = _init(SPNLSTM(4, input_size=3, nbr_mul=1))
        inputs = [nd.random.normal(shape=(5, 2, 3))] + layer.begin_state(2)
    set_phase(layer, Phase.TERNARY)
    freeze_ternary(layer, False, frozen_wc=True)
    assert layer.wc_params() and all(p.grad_req == 'null' for p in layer.wc_params())
    wb = [p for p in layer.ternary_params() if p not in layer.wc_params()]
    assert wb and all(p.grad_req == 'write' for p in wb)
    before = {p.name: p.data().asnumpy().copy() for p in layer.ternary_params()}
    _step(layer, *inputs)
    for p in layer.wc_params():
        np.testing.assert_array_equal(p.data().asnumpy(), before[p.name])
    assert all(not np.array_equal(p.data().asnumpy(), before[p.name]) for p in wb)
    # The frozen stage still freezes both; releasing both lets W_c train again.
    freeze_ternary(layer, True, frozen_wc=True)
    assert all(p.grad_req == 'null' for p in layer.ternary_params())
    freeze_ternary(layer, False)
    assert all(p.grad_req == 'write' for p in layer.ternary_params())


@pytest.mark.parametrize('batch_norm, identity_out, fixed_scale',
                         [(True, False, False), (False, False, False), (False, True, True),
                          (True, True, False)])
@pytest.mark.parametrize('hybridize', [False, True])
def test_frozen_dense_layer_still_trains_its_bias(batch_norm, identity_out, fixed_scale,
                                                  hybridize):
    # MKLDNN's FullyConnected drops the bias gradient when its weight has none; with W_b/W_c
    # frozen the bias must still receive d(loss)/d(bias) = the output gradient summed over rows.
    layer = SPNDense(6, in_units=5, r=6, batch_norm=batch_norm, identity_out=identity_out,
                     fixed_scale=fixed_scale, phase=Phase.TERNARY)
    layer.initialize(mx.init.Uniform(0.5))
    if hybridize:
        layer.hybridize()
    freeze_ternary(layer)
    x = nd.random.normal(shape=(4, 5))
    for _ in range(2):  # the second pass must not see the first pass's gradient
        weights = nd.random.uniform(shape=(4, 6))
        with autograd.record():
            loss = (layer(x) * weights).sum()
        loss.backward()
        np.testing.assert_allclose(layer.bias.grad().asnumpy(), weights.sum(axis=0).asnumpy(),
                                   rtol=1e-5)


def test_multi_step_hybridized_ternary_training_reduces_loss():
    """The original's ternary mode crashed in backward on this stack; ours must train."""
    mx.random.seed(5)
    net = gluon.nn.HybridSequential()
    net.add(SPNConv2D(8, 3, 1, 1, in_channels=3, use_bias=False), gluon.nn.BatchNorm(),
            gluon.nn.Activation('relu'), SPNConv2D(8, 3, 2, 1, in_channels=8, out_patch=2),
            gluon.nn.GlobalAvgPool2D(), gluon.nn.Flatten(), SPNDense(4, in_units=8))
    net.initialize(mx.init.Xavier())
    set_phase(net, Phase.TERNARY)
    net.hybridize(static_alloc=True)
    x = nd.random.normal(shape=(16, 3, 8, 8))
    y = nd.array(np.arange(16) % 4)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.05, 'momentum': 0.9})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    losses = []
    for _ in range(40):
        with autograd.record():
            loss = loss_fn(net(x), y).mean()
        loss.backward()
        trainer.step(1)
        clip_scales(net)
        losses.append(loss.asscalar())
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    for layer in spn_layers(net):
        assert layer.scale.data().min().asscalar() >= 0


def test_clip_scales_projects_into_range():
    layer = _init(SPNDense(3, in_units=2, r=4))
    layer.scale.set_data(nd.array([-1.0, 0.5, 150.0, 3.0]))
    clip_scales(layer)
    np.testing.assert_array_equal(layer.scale.data().asnumpy(), [0, 0.5, 100, 3])


# ------------------------------------------------------------------------ bad input

@pytest.mark.parametrize('kwargs,name', [
    (dict(nbr_mul=0), 'nbr_mul'), (dict(nbr_mul=-1), 'nbr_mul'), (dict(r=0), 'r'),
    (dict(r=-3), 'r'), (dict(r=2.5), 'r'), (dict(out_patch=0), 'out_patch'),
    (dict(groups=3), 'groups'), (dict(groups=0), 'groups'), (dict(kernel_size=0), 'kernel_size'),
    (dict(strides=0), 'strides'), (dict(padding=-1), 'padding'), (dict(in_channels=0), 'in_channels'),
    (dict(nbr_mul=0.01), 'nbr_mul')])
def test_conv_rejects_bad_arguments_naming_them(kwargs, name):
    args = dict(channels=8, kernel_size=3, strides=1, padding=1, in_channels=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        SPNConv2D(**args)


def test_conv_input_too_small_is_a_clear_error():
    layer = _init(SPNConv2D(4, 5, 1, 0, in_channels=2))
    with pytest.raises(ValueError, match='no output'):
        layer(nd.ones((1, 2, 3, 3)))


@pytest.mark.parametrize('kwargs,name', [(dict(nbr_mul=0), 'nbr_mul'), (dict(r=0), 'r'),
                                         (dict(in_units=0), 'in_units'), (dict(units=0), 'units')])
def test_dense_rejects_bad_arguments(kwargs, name):
    args = dict(units=4, in_units=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        SPNDense(**args)


def test_lstm_rejects_bad_arguments():
    with pytest.raises(ValueError, match='nbr_mul'):
        SPNLSTM(8, input_size=4, nbr_mul=0)
    with pytest.raises(ValueError, match='input_size'):
        SPNLSTM(8, input_size=0)
    with pytest.raises(ValueError, match='phase'):
        SPNLSTM(8, input_size=4, phase='quantized')
