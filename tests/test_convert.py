"""Converting dense networks into Strassen networks: strassenize, init_from_dense, transfer."""
import warnings

import mxnet as mx
import numpy as np
import pytest
from gluoncv import model_zoo
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn, rnn

from strassen_gluon import Phase, SPNConv2D, SPNDense, SPNLSTM, set_phase, spn_layers
from strassen_gluon.convert import (ConversionError, ConversionWarning, TransferError,
                                    WeightsUnavailableError, check_dense_twin, dense_twin,
                                    init_from_dense, load_gluoncv, strassenize, transfer_dense,
                                    transfer_gluoncv)
from strassen_gluon.models import get_model


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def randomise_norms(net, seed=1):
    """Non-trivial batch-norm parameters and statistics, so that they matter."""
    rng = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith(('running_mean', 'beta')):
            p.set_data(nd.array(rng.normal(scale=0.1, size=p.shape)))
        elif name.endswith(('running_var', 'gamma')):
            p.set_data(nd.array(rng.uniform(0.5, 1.5, size=p.shape)))


def twin_of(net, build):
    """A second network from `build` holding the same parameter values as `net`."""
    other = build()
    other.initialize()
    for (_, src), (_, dst) in zip(sorted(net.collect_params().items()),
                                  sorted(other.collect_params().items())):
        dst.shape = src.shape
    other.collect_params().load_dict({k2: p.data() for (k1, p), k2 in zip(
        sorted(net.collect_params().items()), sorted(other.collect_params().keys()))})
    return other


def outputs(net, x, train=False):
    with (autograd.train_mode() if train else autograd.predict_mode()):
        return net(x).asnumpy()


def gluoncv_net(name, size, seed=0, batch=4):
    mx.random.seed(seed)
    net = model_zoo.get_model(name, pretrained=False)
    net.initialize(mx.init.Xavier())
    x = nd.random.normal(shape=(batch, 3, size, size))
    net(x)
    randomise_norms(net)
    return net, x


# ------------------------------------------------------------------ exactness, gluoncv networks

@pytest.mark.parametrize('name,size', [('cifar_resnet20_v1', 32), ('cifar_resnet56_v1', 32),
                                       ('resnet18_v1', 64), ('resnet50_v1', 64)])
def test_strassenize_gluoncv_network_is_exact_at_p1(name, size):
    net, x = gluoncv_net(name, size)
    dense_out = outputs(net, x)
    dense_train = outputs(net, x, train=True)
    # float32 noise floor of the dense network in training mode: its change under a 1e-6
    # relative change of the input (resnet50_v1 with random weights amplifies it to ~5e-5).
    floor = rel(outputs(net, x * (1 + 1e-6), train=True), dense_train)
    n_conv = sum(isinstance(b, nn.Conv2D) for _, b in _blocks(net))
    net.hybridize()
    net(x)
    strassenize(net, calibration=x)
    layers = spn_layers(net)
    assert len(layers) == n_conv and all(isinstance(b, SPNConv2D) for b in layers)
    assert isinstance(net.output, nn.Dense)          # the classifier stays dense
    assert rel(outputs(net, x), dense_out) < 1e-5
    # Training mode (batch statistics) on the calibration batch: each SPN passes its input
    # through, so every conv + BN pair gives the dense pair's output.
    assert rel(outputs(net, x, train=True), dense_train) < max(1e-5, 2 * floor)
    set_phase(net, Phase.DENSE)
    assert rel(outputs(net, x), dense_out) < 1e-6


def _blocks(net):
    found = []
    net.apply(lambda b: found.append((b.name, b)))
    return found


def test_conv_bn_pair_is_exact_in_training_mode_on_any_batch():
    """p = 1, r = c_out: the SPN is the conv followed by a per-channel affine map, which the
    network's batch norm removes whatever the batch (up to that batch norm's eps: the
    relative error is about eps / (2·variance) = 2.5e-6 here)."""
    mx.random.seed(2)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, in_channels=3), nn.BatchNorm(in_channels=8))
    net.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2))
    x, other = nd.random.normal(shape=(6, 3, 8, 8)), nd.random.normal(0, 2, shape=(6, 3, 8, 8))
    dense_train = outputs(net, other, train=True)
    strassenize(net, calibration=x, keep_dense=None)
    assert isinstance(net[0], SPNConv2D)
    assert rel(outputs(net, other, train=True), dense_train) < 1e-5


def test_exact_conv_rows_are_balanced_for_the_ternary_threshold():
    """p = 1, r = c_out: W_b's rows get one common mean |w| (TWN has one threshold per tensor;
    ã takes the inverse), the tensor keeps its overall size, and the layer stays exact."""
    mx.random.seed(4)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, 3, padding=1, in_channels=3), nn.BatchNorm(in_channels=6))
    net.initialize(mx.init.Xavier())
    # Filters of very different sizes, as weight decay and batch norm leave them.
    weight = net[0].weight.data().asnumpy() * np.array([0.01, 0.1, 1, 3, 0.5, 2])[:, None, None,
                                                                                     None]
    net[0].weight.set_data(nd.array(weight))
    x = nd.random.normal(shape=(6, 3, 8, 8))
    dense_out = outputs(net, x)
    strassenize(net, calibration=x, keep_dense=None)
    rows = np.abs(net[0].wb.data().asnumpy().reshape(6, -1)).mean(axis=1)
    np.testing.assert_allclose(rows, np.abs(weight).mean(), rtol=1e-5)
    assert rel(outputs(net, x), dense_out) < 1e-5


def test_grouped_conv_and_dense_layers_are_exact():
    mx.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, strides=2, padding=1, groups=2, in_channels=4, use_bias=True),
            nn.BatchNorm(in_channels=8), nn.Activation('relu'), nn.Flatten(),
            nn.Dense(40, in_units=8 * 4 * 4),     # r = 40 >= out: W_c = I
            nn.Dense(60, in_units=40),            # nbr_mul 0.7: r = 42 in [in, out): W_b = I
            nn.Dense(3, in_units=60))
    net.initialize(mx.init.Xavier())
    x = nd.random.normal(shape=(5, 4, 8, 8))
    net(x)
    randomise_norms(net)
    net[0].bias.set_data(nd.random.normal(shape=(8,)))
    dense_out = outputs(net, x)
    strassenize(net, nbr_mul={'5': 0.7}, keep_dense=None, calibration=x)
    conv, d1, d2, d3 = net[0], net[4], net[5], net[6]
    assert isinstance(conv, SPNConv2D) and conv.groups == 2 and conv.r == 8
    assert [type(d) for d in (d1, d2, d3)] == [SPNDense] * 3 and d2.r == 42
    assert rel(outputs(net, x), dense_out) < 1e-5
    set_phase(net, Phase.DENSE)
    assert rel(outputs(net, x), dense_out) < 1e-6


# ------------------------------------------------------------------ the SVD bound

def _probe(layer, c_in, kb):
    """The operator of a padding-0 layer on one kb x kb window: rows (output), cols (input)."""
    n = c_in * kb * kb
    eye = nd.array(np.eye(n).reshape(n, c_in, kb, kb))
    with autograd.predict_mode():
        return layer(eye).asnumpy().reshape(n, -1).T


@pytest.mark.parametrize('stride,groups', [(1, 1), (2, 1), (1, 2)])
def test_p2_error_equals_truncated_svd_bound(stride, groups):
    c_in, c_out, k, p = 4, 6, 3, 2
    kb = (p - 1) * stride + k
    mx.random.seed(4)
    dense = nn.Conv2D(c_out, k, strides=stride, in_channels=c_in, use_bias=False)
    dense.initialize(mx.init.Xavier())
    m = _probe(dense, c_in, kb)                       # (p²·c_out) x (c_in·kb²), via the dense op
    net = nn.HybridSequential()
    net.add(dense)
    x = nd.random.normal(shape=(8, c_in, 9, 9))
    strassenize(net, out_patch=2, groups=groups, keep_dense=None, calibration=x)
    spn = net[0]
    assert spn.out_patch == 2 and spn.r == c_out and spn.groups == groups
    error = rel(_probe(spn, c_in, kb), m)
    # Independent bound: W_b group g sees input channels [g·c_in/G, (g+1)·c_in/G).
    window = c_in // groups * kb * kb
    order = np.arange(c_in * kb * kb).reshape(c_in, kb, kb)
    lost = 0.0
    for g in range(groups):
        cols = order[g * c_in // groups:(g + 1) * c_in // groups].ravel()
        s = np.linalg.svd(m[:, cols], compute_uv=False)
        lost += np.sum(s[c_out // groups:] ** 2)
    bound = np.sqrt(lost) / np.linalg.norm(m)
    assert window > c_out and bound > 0.05
    assert abs(error - bound) < 1e-4 * bound + 1e-6
    report = init_from_dense(spn, x)
    assert not report.exact and abs(report.relative_error - bound) < 1e-4 * bound


# ------------------------------------------------------------------ options and warnings

def test_per_layer_options_dict_and_function():
    net = get_model('resnet20')
    net.initialize()
    strassenize(net, nbr_mul={'features.0': 2.0, 'features.1.0.body.0': 0},
                out_patch=lambda spec: 2 if spec.kernel == (3, 3) and spec.name != 'features.0'
                else 1)
    stem, first = net.features[0], net.features[1][0].body[0]
    assert isinstance(stem, SPNConv2D) and stem.r == 32 and stem.out_patch == 1
    assert type(first) is nn.Conv2D                  # nbr_mul 0: kept dense
    second = net.features[1][0].body[3]
    assert isinstance(second, SPNConv2D) and second.out_patch == 2 and second.r == 16
    shortcut = net.features[2][0].downsample[0]
    assert isinstance(shortcut, SPNConv2D) and shortcut.out_patch == 1
    with pytest.raises(ConversionError, match='features.99'):
        strassenize(get_model('resnet20'), nbr_mul={'features.99': 1.0})
    with pytest.raises(ConversionError, match='convolutions only'):
        strassenize(get_model('resnet20'), out_patch={'output': 2})


@pytest.mark.parametrize('name, size', [('squeezenet1.1', 224), ('mobilenetv2_1.0', 64)])
def test_classifier_that_is_a_1x1_convolution_stays_dense(name, size):
    net, x = gluoncv_net(name, size, batch=2)
    dense_out = outputs(net, x)
    convs = [b for _, b in _blocks(net) if isinstance(b, nn.Conv2D)]
    classifier = [b for b in convs if b.weight.shape[0] == 1000 and b.weight.shape[2:] == (1, 1)]
    assert len(classifier) == 1
    with warnings.catch_warnings():
        warnings.simplefilter('error', ConversionWarning)
        strassenize(net, calibration=x)
    remaining = [b for _, b in _blocks(net) if type(b) is nn.Conv2D]
    assert remaining == classifier                     # the logits' layer, and only it
    assert len(spn_layers(net)) == len(convs) - 1
    assert rel(outputs(net, x), dense_out) < 1e-5


def test_dense_layers_with_a_fused_relu_are_converted_with_it():
    net, x = gluoncv_net('vgg11_bn', 32, batch=2)     # 32 x 32: the 4096-unit layers take 512
    dense_out = outputs(net, x)
    activated = [path for path, block in _named_dense(net) if block.act is not None]
    assert len(activated) == 2
    with warnings.catch_warnings():
        warnings.simplefilter('error', ConversionWarning)
        strassenize(net, calibration=x)
    for path in activated:
        converted = net.features[int(path.split('.')[1])]
        assert isinstance(converted[0], SPNDense) and converted[0].units == 4096
        assert isinstance(converted[1], nn.Activation)
    assert type(net.output) is nn.Dense
    assert rel(outputs(net, x), dense_out) < 1e-5
    set_phase(net, Phase.DENSE)
    assert rel(outputs(net, x), dense_out) < 1e-6


def _named_dense(net):
    from strassen_gluon.convert.walk import named_blocks
    return [(path, block) for path, _, _, block in named_blocks(net) if type(block) is nn.Dense]


def test_keep_dense_default_keeps_last_dense_and_none_converts_it():
    net = get_model('vgg7')
    strassenize(net)                                   # uninitialised: layers built, no data
    assert type(net.output) is nn.Dense and isinstance(net.head[0], SPNDense)
    net = get_model('vgg7')
    strassenize(net, keep_dense=None)
    assert isinstance(net.output, SPNDense)
    net = get_model('vgg7')
    strassenize(net, keep_dense=lambda spec: spec.kind == 'dense')
    assert type(net.head[0]) is nn.Dense and type(net.output) is nn.Dense


class _Odd(gluon.HybridBlock):
    def __init__(self):
        super().__init__()
        self.dilated = nn.Conv2D(4, 3, padding=2, dilation=2, in_channels=3)
        self.act_conv = nn.Conv2D(4, 3, padding=1, in_channels=4, activation='relu')
        self.plain = nn.Conv2D(4, 3, padding=1, in_channels=4)
        self.conv1d = nn.Conv1D(2, 3, in_channels=4)
        self.lstm = rnn.LSTM(4, input_size=4)
        self.fc = nn.Dense(3, in_units=4, activation='tanh')
        self.out = nn.Dense(2, in_units=3)

    def hybrid_forward(self, F, x):
        return self.plain(self.act_conv(self.dilated(x)))


def test_unconvertible_layers_are_named_in_one_warning_and_left_dense():
    net = _Odd()
    net.initialize()
    x = nd.random.normal(shape=(2, 3, 6, 6))
    before = outputs(net, x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        strassenize(net, calibration=x)
    ours = [w for w in caught if issubclass(w.category, ConversionWarning)]
    assert len(ours) == 1
    message = str(ours[0].message)
    for name in ('dilated', 'conv1d', 'lstm'):
        assert name in message
    for name in ('plain', 'act_conv', 'fc'):
        assert name not in message
    assert 'out' not in message.split(':', 1)[1].replace('output', '')
    assert type(net.dilated) is nn.Conv2D and type(net.out) is nn.Dense
    assert isinstance(net.plain, SPNConv2D)
    # Layers with a fused activation are converted, followed by that activation.
    assert isinstance(net.act_conv[0], SPNConv2D) and isinstance(net.fc[0], SPNDense)
    assert isinstance(net.act_conv[1], nn.Activation) and isinstance(net.fc[1], nn.Activation)
    assert rel(outputs(net, x), before) < 1e-5


def test_uninitialised_network_with_deferred_shapes_needs_calibration():
    net = model_zoo.get_model('cifar_resnet20_v1', pretrained=False)
    with pytest.warns(ConversionWarning, match='input size unknown'):
        strassenize(net)
    assert type(net.features[0]) is nn.Conv2D         # stem: in_channels unknown
    net = model_zoo.get_model('cifar_resnet20_v1', pretrained=False)
    x = nd.random.normal(shape=(2, 3, 32, 32))
    strassenize(net, calibration=x)                    # initialises, runs x, converts all
    assert isinstance(net.features[0], SPNConv2D)
    full = outputs(net, x)
    set_phase(net, Phase.DENSE)
    assert rel(full, outputs(net, x)) < 1e-5


# ------------------------------------------------------------------ transfer from dense twins

def test_transfer_resnet20_into_st_resnet20_is_exact_and_dense_phase_is_the_original():
    mx.random.seed(5)
    dense = get_model('resnet20')
    dense.initialize(mx.init.Xavier())
    randomise_norms(dense)
    x = nd.random.normal(shape=(4, 3, 32, 32))
    spn = get_model('st_resnet20')
    spn.initialize()
    reports = transfer_dense(dense, spn, calibration=x)
    assert len(reports) == 21 and all(r.exact and r.calibrated for r in reports)
    assert rel(outputs(spn, x), outputs(dense, x)) < 1e-5
    assert rel(outputs(spn, x, train=True), outputs(dense, x, train=True)) < 1e-5
    set_phase(spn, Phase.DENSE)
    assert rel(outputs(spn, x), outputs(dense, x)) < 1e-6


def test_transfer_into_p2_reports_the_svd_error():
    dense = get_model('resnet20')
    dense.initialize(mx.init.Xavier())
    spn = get_model('st_resnet20', out_patch=2)
    spn.initialize()
    x = nd.random.normal(shape=(4, 3, 32, 32))
    reports = transfer_dense(dense, spn, calibration=x)
    convs = [r for r in reports if r.name.endswith('body.0') or r.name.endswith('body.3')]
    assert convs and all(not r.exact and 0 < r.relative_error < 1 for r in convs)
    assert np.isfinite(outputs(spn, x)).all()


def _lm(name, **kwargs):
    config = dict(char_vocab_size=12, word_vocab_size=30, max_word_l=6, char_vec_size=5,
                  feature_maps=(4, 6), kernels=(1, 2), rnn_size=8, num_layers=2, dropout=0.0)
    config.update(kwargs)
    return get_model(name, **config)


def _lm_inputs(batch=3, steps=4):
    chars = nd.array(np.random.RandomState(0).randint(0, 12, size=(steps, batch, 6)))
    h0 = nd.random.normal(scale=0.5, shape=(2, batch, 8))
    c0 = nd.random.normal(scale=0.5, shape=(2, batch, 8))
    return chars, h0, c0


@pytest.mark.parametrize('variant', [dict(), dict(out_identity=True),
                                     dict(out_identity=True, fixed_scale=True,
                                          dense_batchnorm=False)])
def test_transfer_charlm_into_st_charlm_is_exact(variant):
    mx.random.seed(6)
    dense = _lm('charlm')
    dense.initialize(mx.init.Xavier())
    spn = _lm('st_charlm', **variant)
    spn.initialize()
    inputs = _lm_inputs()
    reports = transfer_dense(dense, spn, calibration=inputs)
    kinds = {r.kind for r in reports}
    assert kinds == {'conv', 'dense', 'lstm'} and all(r.exact for r in reports)
    assert isinstance(spn.lstm, SPNLSTM)
    with autograd.predict_mode():
        ref = [o.asnumpy() for o in dense(*inputs)]
        got = [o.asnumpy() for o in spn(*inputs)]
    for a, b in zip(got, ref):                      # logits, h, c
        assert rel(a, b) < 1e-5


def test_transfer_mismatches_raise_typed_errors_naming_the_layers():
    dense = get_model('resnet20')
    dense.initialize()
    wrong_depth = get_model('st_resnet32')
    with pytest.raises(TransferError, match=r'dense layer output \(Dense.*different layer types'):
        transfer_dense(dense, wrong_depth)
    wrong_classes = get_model('st_resnet20', classes=100)
    with pytest.raises(TransferError, match=r'output.*shape \(10, 64\).*\(100, 64\)'):
        transfer_dense(dense, wrong_classes)
    with pytest.raises(TransferError, match='different layer types'):
        transfer_dense(dense, get_model('st_vgg7'))
    with pytest.raises(TransferError, match=r'layers with parameters: 66 in the dense network, '
                                            r'42 in the SPN'):  # 1 + 4·n·3 + 4 + 1
        transfer_dense(get_model('resnet32'), get_model('st_resnet20'))
    with pytest.raises(ConversionError, match='not ready'):
        transfer_dense(get_model('resnet20'), get_model('st_resnet20'))
    assert dense_twin('st_resnet20') == 'resnet20' and dense_twin('st_charlm') == 'charlm'
    with pytest.raises(TransferError, match='needs a trained resnet20'):
        check_dense_twin('st_resnet20', 'resnet32')
    with pytest.raises(TransferError, match='no dense twin'):
        dense_twin('resnet20')


# ------------------------------------------------------------------ gluoncv

def test_transfer_gluoncv_cifar_resnet_folds_the_stem_norm():
    """gluoncv's CIFAR ResNet has a BN after the stem, st_resnet20 not: it is folded into the
    stem SPN, which then computes conv + BN."""
    spn = get_model('st_resnet20')
    spn.initialize()
    x = nd.random.normal(shape=(4, 3, 32, 32))
    dense, reports = transfer_gluoncv('gluoncv:cifar_resnet20_v1', spn, 'st_resnet20',
                                      calibration=x, pretrained=False)
    randomise_norms(dense)                  # different statistics: transfer again
    reports = transfer_dense(dense, spn, calibration=x)
    assert all(r.exact for r in reports)
    assert rel(outputs(spn, x), outputs(dense, x)) < 1e-5


def test_transfer_gluoncv_resnet18_into_st_resnet18():
    spn = get_model('st_resnet18', classes=1000)
    spn.initialize()
    x = nd.random.normal(shape=(2, 3, 64, 64))
    dense, reports = transfer_gluoncv('gluoncv:resnet18_v1', spn, 'st_resnet18',
                                      calibration=x, pretrained=False)
    assert len(reports) == 20
    assert rel(outputs(spn, x), outputs(dense, x)) < 1e-5


def test_gluoncv_errors_are_clear(tmp_path):
    spn = get_model('st_resnet20')
    with pytest.raises(TransferError, match='no Strassen twin'):
        transfer_gluoncv('gluoncv:resnet50_v1', spn)
    with pytest.raises(TransferError, match='layout of st_resnet18, not of st_resnet20'):
        transfer_gluoncv('gluoncv:resnet18_v1', spn, 'st_resnet20')
    with pytest.raises(WeightsUnavailableError, match=str(tmp_path)):
        load_gluoncv('cifar_resnet20_v1', root=str(tmp_path), download=False)
