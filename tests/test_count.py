"""count.py: single layers against formulas derived by hand (both conventions), whole networks
against their known multiply-accumulate counts, the net left untouched, the example inputs the
registry states, and the command line (its usage errors exit 2). The poster's own numbers are
checked in test_published.py."""
import json
from math import ceil

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon, nd
from mxnet.gluon import nn, rnn

from strassen_gluon import Phase, SPNConv2D, SPNDense, SPNLSTM, set_phase, spn_layers
from strassen_gluon.count import main
from strassen_gluon.counting import count_layer, count_model, example_inputs, poster_classifier_r
from strassen_gluon.gluon_compat import cached_graph, forward_hooks, is_hybridized
from strassen_gluon.export import export_layer
from strassen_gluon.models import get_model, list_models


def _init(block):
    mx.random.seed(0)
    block.initialize()
    return block


def _only(result, type_):
    rows = [r for r in result['layers'] if r['type'] == type_]
    assert len(rows) == 1, result['layers']
    return rows[0]


# ------------------------------------------------------------------------ single layers

def spn_conv_by_hand(c_in, c_out, k, s, pad, p, g, r, n, h, w):
    """SPEC 5.1 worked out for one layer: (mults, adds, bits when W_b, W_c are ternary)."""
    h_out, w_out = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    blocks = n * ceil(h_out / p) * ceil(w_out / p)
    k_b = (p - 1) * s + k
    mults = r * blocks
    adds = r * blocks * (c_in // g) * k_b * k_b + c_out * p * p * r * blocks
    wb, wc = r * (c_in // g) * k_b * k_b, p * p * c_out * r
    bits = 2 * (wb + wc) + 32 * r + 32 * p * p * c_out
    dense_macs = n * c_in * c_out * k * k * h_out * w_out
    return mults, adds, bits, wb, wc, dense_macs


CONV_CASES = [
    # c_in, c_out, k, s, pad, p, g, nbr_mul, n, h, w
    (4, 6, 3, 1, 1, 1, 1, 1.0, 1, 8, 8),
    (4, 6, 3, 1, 1, 2, 1, 2.0, 1, 7, 9),    # odd sizes, partial blocks
    (4, 8, 3, 2, 1, 2, 2, 1.0, 2, 9, 9),    # stride 2, groups 2, batch 2
    (6, 4, 1, 2, 0, 1, 2, 0.5, 1, 8, 8),    # 1x1 shortcut
    (3, 4, 5, 1, 0, 3, 1, 1.5, 1, 11, 10),  # p = 3, no padding
]


@pytest.mark.parametrize('c_in,c_out,k,s,pad,p,g,nbr_mul,n,h,w', CONV_CASES)
def test_spn_conv_counts_match_hand_formula(c_in, c_out, k, s, pad, p, g, nbr_mul, n, h, w):
    layer = _init(SPNConv2D(c_out, k, s, pad, in_channels=c_in, use_bias=False,
                            nbr_mul=nbr_mul, out_patch=p, groups=g, phase=Phase.TERNARY))
    r = int(nbr_mul * c_out)
    mults, adds, bits, wb, wc, dense_macs = spn_conv_by_hand(c_in, c_out, k, s, pad, p, g, r,
                                                             n, h, w)
    row = _only(count_model(layer, (n, c_in, h, w)), 'conv')
    assert (row['mults'], row['adds'], row['bits']) == (mults, adds, bits)
    assert row['spn'] and row['r'] == r

    # Other phases: full precision W_b/W_c (32 bits), one of them ternary, the dense layer.
    full = _only(count_model(layer, (n, c_in, h, w), phase='full'), 'conv')
    assert (full['mults'], full['adds']) == (mults, adds)
    assert full['bits'] == bits + 30 * (wb + wc)
    only_b = _only(count_model(layer, (n, c_in, h, w), phase=Phase.TERNARY_B), 'conv')
    assert only_b['bits'] == bits + 30 * wc
    dense = _only(count_model(layer, (n, c_in, h, w), phase=Phase.DENSE), 'conv')
    assert (dense['mults'], dense['adds'], dense['spn']) == (dense_macs, dense_macs, False)
    assert dense['bits'] == 32 * c_out * c_in * k * k


def test_spn_conv_size_is_that_of_its_deployment_form():
    layer = _init(SPNConv2D(6, 3, 2, 1, in_channels=4, use_bias=True, nbr_mul=2,
                            out_patch=2, phase=Phase.TERNARY))
    form = export_layer(layer)
    bits = 2 * (form['wb'].size + form['wc'].size) + 32 * (form['scale'].size + form['bias'].size)
    assert _only(count_model(layer, (1, 4, 9, 9)), 'conv')['bits'] == bits

    dense = _init(SPNDense(5, in_units=7, nbr_mul=3, phase=Phase.TERNARY))
    form = export_layer(dense)
    bits = 2 * (form['wb'].size + form['wc'].size) + 32 * (form['scale'].size + form['bias'].size)
    assert _only(count_model(dense, (1, 7)), 'dense')['bits'] == bits


@pytest.mark.parametrize('groups,strides,use_bias', [(1, 1, True), (2, 2, False), (4, 1, True)])
def test_plain_conv_counts_multiply_accumulates(groups, strides, use_bias):
    c_in, c_out, k, h = 8, 12, 3, 9
    conv = _init(nn.Conv2D(c_out, k, strides, 1, groups=groups, use_bias=use_bias))
    row = _only(count_model(conv, (2, c_in, h, h)), 'conv')
    h_out = (h + 2 - k) // strides + 1
    macs = 2 * (c_in // groups) * c_out * k * k * h_out * h_out
    assert (row['mults'], row['adds'], row['spn']) == (macs, macs, False)
    assert row['bits'] == 32 * (c_out * (c_in // groups) * k * k + (c_out if use_bias else 0))


def test_dense_layers_plain_and_spn():
    plain = _init(nn.Dense(10, use_bias=True))
    row = _only(count_model(plain, (3, 4, 5)), 'dense')  # flattened: 3 rows of 20
    assert (row['mults'], row['adds'], row['bits']) == (3 * 200, 3 * 200, 32 * (200 + 10))

    spn = _init(SPNDense(10, in_units=20, r=7, phase=Phase.TERNARY))
    row = _only(count_model(spn, (3, 20)), 'dense')
    assert row['spn'] and row['mults'] == 3 * 7
    assert row['adds'] == 3 * (7 * 20 + 10 * 7)
    assert row['bits'] == 2 * (7 * 20 + 10 * 7) + 32 * (7 + 10)
    dense = _only(count_model(spn, (3, 20), phase='dense'), 'dense')
    assert (dense['mults'], dense['bits']) == (3 * 200, 32 * (200 + 10))


def test_batchnorm_one_mult_and_add_per_activation():
    bn = _init(nn.BatchNorm())
    row = _only(count_model(bn, (2, 5, 3, 4)), 'batchnorm')
    assert (row['mults'], row['adds'], row['bits']) == (120, 120, 2 * 32 * 5)


def test_spn_lstm_per_step_counts():
    units, n_in, layers, r = 6, 5, 2, 3
    lstm = _init(SPNLSTM(units, num_layers=layers, input_size=n_in, r=r, phase=Phase.TERNARY))
    steps, batch = 3, 2
    x = nd.zeros((steps, batch, n_in))
    result = count_model(lstm, inputs=(x,) + tuple(lstm.begin_state(batch)))
    row, cell = _only(result, 'lstm'), _only(result, 'lstm_cell')
    tokens = steps * batch
    # Per layer and step: 4 gates x (i2h, h2h) SPNs of r mults, r·in + units·r adds.
    assert row['mults'] == tokens * layers * 8 * r
    adds = sum(4 * (r * i + units * r) + 4 * (r * units + units * r) for i in (n_in, units))
    assert row['adds'] == tokens * adds
    bits = sum(2 * 4 * (r * i + units * r + r * units + units * r) + 32 * (8 * r + 8 * units)
               for i in (n_in, units))
    assert row['bits'] == bits
    assert (cell['mults'], cell['adds'], cell['bits']) == (tokens * layers * 3 * units,
                                                           tokens * layers * units, 0)

    dense = count_model(lstm, inputs=(x,) + tuple(lstm.begin_state(batch)), phase='dense')
    macs = sum(4 * units * (i + units) for i in (n_in, units))
    assert _only(dense, 'lstm')['mults'] == tokens * macs
    # Gluon's own LSTM layer counts the same as the dense phase.
    plain = _init(rnn.LSTM(units, num_layers=layers, input_size=n_in))
    other = count_model(plain, inputs=(x,))
    for key in ('mults', 'adds', 'bits'):
        assert _only(other, 'lstm')[key] == _only(dense, 'lstm')[key]
    assert _only(other, 'lstm_cell')['mults'] == cell['mults']


def test_embedding_costs_only_its_size():
    net = _init(nn.Embedding(50, 8))
    row = _only(count_model(net, (4, 3)), 'embedding')
    assert (row['mults'], row['adds'], row['bits']) == (0, 0, 32 * 50 * 8)


def test_layer_called_twice_counts_ops_twice_and_size_once():
    class Twice(gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.fc = nn.Dense(4, in_units=4, flatten=False)

        def hybrid_forward(self, F, x):
            return self.fc(self.fc(x))
    result = count_model(_init(Twice()), (1, 4))
    row = _only(result, 'dense')
    assert (row['mults'], row['calls'], row['bits']) == (32, 2, 32 * 20)


def test_count_layer_rejects_unknown_block():
    with pytest.raises(TypeError):
        count_layer(nn.Activation('relu'), [(1, 2)], (1, 2))


# ------------------------------------------------------------------------ whole networks

def _macs(result):
    """Conv + FC multiply-accumulates (batch norms left out), as quoted for ResNets."""
    return sum(r['mults'] for r in result['layers'] if r['type'] in ('conv', 'dense'))


def resnet20_macs_by_hand():
    stem = 3 * 16 * 9 * 32 * 32
    stage1 = 6 * 16 * 16 * 9 * 32 * 32
    stage2 = 16 * 32 * 9 * 16 * 16 + 5 * 32 * 32 * 9 * 16 * 16 + 16 * 32 * 16 * 16
    stage3 = 32 * 64 * 9 * 8 * 8 + 5 * 64 * 64 * 9 * 8 * 8 + 32 * 64 * 8 * 8
    return stem + stage1 + stage2 + stage3 + 64 * 10


def test_resnet20_about_41_million_macs():
    net = _init(get_model('resnet20'))
    result = count_model(net, (1, 3, 32, 32))
    assert _macs(result) == resnet20_macs_by_hand()
    assert 40.5e6 < _macs(result) < 41.5e6
    # One BN multiplication per activation: 19 BNs after 3x3 convs, 2 after the shortcuts.
    bn = sum(r['mults'] for r in result['layers'] if r['type'] == 'batchnorm')
    assert bn == 6 * 16 * 32 * 32 + 7 * 32 * 16 * 16 + 7 * 64 * 8 * 8
    head = [r for r in result['layers'] if r.get('fc_head')]
    assert len(head) == 1 and head[0]['mults'] == 640
    assert result['total_excluding_fc_head']['mults'] == result['total']['mults'] - 640


@pytest.mark.parametrize('out_patch', [1, 2])
def test_st_resnet20_counts(out_patch):
    st = _init(get_model('st_resnet20', nbr_mul=1.0, out_patch=out_patch))
    dense = count_model(_init(get_model('resnet20')), (1, 3, 32, 32))
    # In phase DENSE the Strassen net counts as the full-precision one.
    as_dense = count_model(st, (1, 3, 32, 32), phase='dense')
    assert as_dense['total'] == dense['total']
    result = count_model(st, (1, 3, 32, 32), phase='ternary')
    # r = c_out: r multiplications per p x p block; the 1x1 shortcuts always use p = 1.
    convs = [(16, 32, out_patch)] + [(16, 32, out_patch)] * 6 + [(32, 16, out_patch)] * 6 + \
        [(32, 16, 1)] + [(64, 8, out_patch)] * 6 + [(64, 8, 1)]
    spn_mults = sum(r * ceil(h / p) ** 2 for r, h, p in convs)
    assert sum(r['mults'] for r in result['layers'] if r['type'] == 'conv') == spn_mults
    assert all(r['spn'] for r in result['layers'] if r['type'] == 'conv')
    assert result['total']['mults'] < dense['total']['mults'] / 50


def resnet18_macs_by_hand():
    def conv(c_in, c_out, k, h):
        return c_in * c_out * k * k * h * h
    total = conv(3, 64, 7, 112) + 4 * conv(64, 64, 3, 56)
    for c, h in ((128, 28), (256, 14), (512, 7)):
        total += conv(c // 2, c, 3, h) + 3 * conv(c, c, 3, h) + conv(c // 2, c, 1, h)
    return total + 512 * 1000


def test_resnet18_about_1_8_giga_macs():
    from gluoncv.model_zoo import get_model as gluoncv_model
    reference = count_model(_init(gluoncv_model('resnet18_v1')), (1, 3, 224, 224))
    assert _macs(reference) == resnet18_macs_by_hand()
    assert 1.75e9 < _macs(reference) < 1.85e9
    ours = count_model(_init(get_model('resnet18')), (1, 3, 224, 224))
    assert ours['total'] == reference['total']


LM_KWARGS = dict(char_vocab_size=10, word_vocab_size=30, max_word_l=6, feature_maps=(2, 3),
                 kernels=(1, 2), rnn_size=4, highway_layers=1)


def test_every_registered_model_counts_and_strassen_ones_save_multiplications():
    for name in list_models():
        if name.startswith(('resnet', 'st_resnet')) and name[-2:] not in ('20', '18'):
            continue  # deeper CIFAR ResNets repeat the same blocks
        kwargs = dict(LM_KWARGS) if 'charlm' in name else {}
        if name == 'st_charlm':
            kwargs['out_nbr_mul'] = 2  # the default r = 2000 is for 10k words, not 30
        net = _init(get_model(name, **kwargs))
        inputs = example_inputs(net)
        result = count_model(net, inputs=inputs, phase='ternary')
        total = result['total']
        assert total['mults'] > 0 and total['bits'] > 0, name
        if any(r['spn'] for r in result['layers']):
            dense = count_model(net, inputs=inputs, phase='dense')['total']
            assert total['mults'] < dense['mults'] and total['bits'] < dense['bits'], name


# ------------------------------------------------------------------------ the net is untouched

def test_count_leaves_net_unchanged():
    net = _init(get_model('st_resnet20', nbr_mul=1.0))
    set_phase(net, Phase.TERNARY)
    net.hybridize()
    x = nd.random.uniform(shape=(2, 3, 32, 32))
    before = net(x).asnumpy()
    cached = cached_graph(net)
    bn = [b for b in net.collect_params().values() if b.name.endswith('running_mean')][0]
    stats = bn.data().asnumpy().copy()

    count_model(net, (1, 3, 32, 32), phase='dense')

    assert cached_graph(net) is cached and is_hybridized(net)
    hooks = []
    net.apply(lambda b: hooks.append(len(forward_hooks(b))))
    assert not any(hooks)
    assert all(layer.phase == Phase.TERNARY for layer in spn_layers(net))
    np.testing.assert_array_equal(bn.data().asnumpy(), stats)
    np.testing.assert_array_equal(net(x).asnumpy(), before)


def test_counting_needs_no_initialized_net_and_computes_nothing():
    """Shapes come from symbolic inference: an uninitialized net (deferred shapes included)
    counts as an initialized one and stays uninitialized; a net too large to run counts."""
    def build():
        net = nn.HybridSequential()
        net.add(nn.Conv2D(6, 3, padding=1), nn.BatchNorm(), nn.Dense(4))
        return net
    def numbers(result):
        return result['total'], [(r['type'], r['mults'], r['adds'], r['bits'], r['output_shape'])
                                 for r in result['layers']]
    fresh = build()
    counted = count_model(fresh, (2, 3, 8, 8))
    assert numbers(counted) == numbers(count_model(_init(build()), (2, 3, 8, 8)))
    assert counted['total']['mults'] == 2 * (6 * 3 * 9 * 64 + 6 * 64 + 4 * 6 * 64)
    assert fresh[0].weight.shape == (6, 3, 3, 3)  # the shape a first forward pass gives
    with pytest.raises(RuntimeError):
        fresh[0].weight.data()  # ... and nothing was allocated
    huge = SPNConv2D(4096, 3, padding=1, in_channels=4096, nbr_mul=64, out_patch=2)
    row = _only(count_model(huge, (1, 4096, 64, 64)), 'conv')  # 2.4e11 weights
    assert row['mults'] == 64 * 4096 * 32 * 32


def test_needs_exactly_one_kind_of_input():
    net = _init(nn.Dense(3, in_units=2))
    with pytest.raises(ValueError):
        count_model(net)
    with pytest.raises(ValueError):
        count_model(net, (1, 2), inputs=nd.zeros((1, 2)))


# ------------------------------------------------------------------------ command line

def test_cli_json(capsys):
    main(['--model', 'st_resnet20', '--nbr_mul', '1', '--out_patch', '2', '--json'])
    out = json.loads(capsys.readouterr().out)
    assert out['model'] == 'st_resnet20'
    assert set(out['total']) == {'mults', 'adds', 'bits'}
    for row in out['layers']:
        assert {'name', 'type', 'spn', 'mults', 'adds', 'bits'} <= set(row)
    assert out['total']['mults'] == sum(r['mults'] for r in out['layers'])
    assert out['reduction']['mults'] == pytest.approx(out['dense_total']['mults']
                                                      / out['total']['mults'])
    assert {r['out_patch'] for r in out['layers'] if r['type'] == 'conv'} == {1, 2}


def test_cli_table(capsys):
    main(['--model', 'resnet20'])
    text = capsys.readouterr().out
    assert 'resnet20_output (fc head)' in text and 'batchnorm' in text
    total = count_model(_init(get_model('resnet20')), (1, 3, 32, 32))['total']
    assert '{:,}'.format(total['mults']) in text.splitlines()[-3]


def test_cli_rejects_option_the_model_does_not_take(capsys):
    assert main(['--model', 'resnet20', '--out_patch', '2']) == 2
    err = capsys.readouterr().err
    assert 'out_patch' in err and len(err.strip().splitlines()) == 1


def test_cli_names_the_settings_a_model_needs(capsys):
    """The language model needs its vocabulary sizes: the message says how to give them."""
    assert main(['--model', 'st_charlm']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'missing' not in err
    for key in ('char_vocab_size', 'word_vocab_size', 'max_word_l'):
        assert '--set %s=' % key in err


@pytest.mark.parametrize('argv,needle', [
    (['--model', 'st_resnet18', '--nbr_mul', '1,2,3'], 'one per stage (5)'),
    (['--model', 'st_resnet20', '--out_patch', '1,2'], 'one per stage (4)'),
    (['--model', 'st_resnet20', '--nbr_mul', 'x'], '--nbr_mul'),
    (['--model', 'st_resnet20', '--phase', 'quaternary'], 'unknown phase'),
    (['--model', 'st_resnet20', '--convention', 'poster'], '--convention'),
    (['--model', 'st_resnet20', '--input_size', '0'], '--input_size'),
    (['--model', 'st_resnet20', '--set', 'nbr_mul'], 'KEY=VALUE'),
])
def test_cli_bad_options_exit_2_with_one_message(argv, needle, capsys):
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    assert needle in capsys.readouterr().err


def test_cli_per_stage_values_reach_the_model(capsys):
    main(['--model', 'st_resnet18', '--nbr_mul', '1,0.5,1,2,4', '--input_size', '32', '--json'])
    out = json.loads(capsys.readouterr().out)
    assert out['options']['nbr_mul'] == [1.0, 0.5, 1.0, 2.0, 4.0]
    assert out['input_shapes'] == [[1, 3, 32, 32]]
    assert {r['r'] for r in out['layers'] if r['type'] == 'conv'} == {64, 32, 128, 512, 2048}


LM_SETTINGS = ['--set', 'char_vocab_size=10', '--set', 'word_vocab_size=30', '--set',
               'max_word_l=6', '--set', 'feature_maps=(2,3)', '--set', 'kernels=(1,2)',
               '--set', 'rnn_size=4', '--set', 'highway_layers=1']


def test_cli_language_model_per_time_step(capsys):
    main(['--model', 'st_charlm', '--nbr_mul', '0.5', '--set', 'out_nbr_mul=3', '--json']
         + LM_SETTINGS)
    out = json.loads(capsys.readouterr().out)
    rows = {r['type'] + ':' + r['name'].split('_', 1)[1]: r for r in out['layers']}
    units, features, r = 4, 5, 2  # r = int(0.5 * 4) for the LSTM, 2 of 5 for the highways
    lstm = rows['lstm:lstm']
    assert lstm['steps'] == 1 and lstm['mults'] == 2 * 8 * r  # 2 layers, one token
    # The char-CNN convolutions have W_c = I: r = c_out multiplications per position and only
    # W_b's additions (as many as the dense convolution's).
    # conv1: 3 filters of width 2 over 15 embedding dimensions, 6 - 2 + 1 = 5 positions.
    conv = rows['conv:conv1']
    assert conv['mults'] == 3 * 5 and conv['adds'] == 3 * 5 * 15 * 2
    decoder = rows['dense:decoder']
    assert decoder['fc_head'] and decoder['mults'] == 3
    assert decoder['adds'] == 3 * units + 30 * 3
    assert rows['dense:hw0_h']['mults'] == int(0.5 * features)
    assert out['total']['mults'] < out['dense_total']['mults']

    main(['--model', 'charlm'] + LM_SETTINGS)
    assert 'charlm_lstm_cell' in capsys.readouterr().out


def test_spn_layers_report_their_own_cost():
    """count asks each SPN layer (its public cost method); the numbers follow SPEC 5.1."""
    layer = SPNConv2D(16, 3, padding=1, in_channels=8, nbr_mul=1, out_patch=2)
    layer.initialize()
    (row,) = layer.cost([(1, 8, 32, 32)], (1, 16, 32, 32), Phase.TERNARY)
    blocks = 16 * 16                                  # 2x2 output blocks of a 32x32 map
    kb = (2 - 1) * 1 + 3                              # W_b's enlarged kernel
    assert row['mults'] == 16 * blocks
    assert row['adds'] == (16 * 8 * kb * kb + 2 * 2 * 16 * 16) * blocks
    assert row['bits'] == 2 * (16 * 8 * kb * kb + 4 * 16 * 16) + 32 * (16 + 4 * 16)
    (dense,) = layer.cost([(1, 8, 32, 32)], (1, 16, 32, 32), 'dense')
    assert dense['mults'] == 32 * 32 * 16 * 8 * 9 and dense['spn'] is False
    assert layer.cost([(1, 8, 32, 32)], (1, 16, 32, 32)) == \
        layer.cost([(1, 8, 32, 32)], (1, 16, 32, 32), layer.phase)
    assert count_layer(layer, [(1, 8, 32, 32)], (1, 16, 32, 32), Phase.TERNARY) == [row]


# ------------------------------------------------------------------------ example inputs

def test_registered_models_state_their_example_input():
    assert get_model('resnet18').default_input_shape == (1, 3, 224, 224)
    assert get_model('st_resnet18').default_input_shape == (1, 3, 224, 224)
    for name in ('resnet20', 'st_resnet56', 'st_vgg7', 'vgg7'):
        assert get_model(name).default_input_shape == (1, 3, 32, 32), name
    # Not a guess from the number of classes: a 1000-class CIFAR net still sees 32x32 images.
    (x,) = example_inputs(_init(get_model('resnet20', classes=1000)))
    assert x.shape == (1, 3, 32, 32)
    (x,) = example_inputs(_init(get_model('resnet18')), input_size=64)
    assert x.shape == (1, 3, 64, 64)


def test_a_net_without_a_stated_input_needs_a_size():
    net = _init(nn.HybridSequential())
    with pytest.raises(ValueError, match='no example input'):
        example_inputs(net)
    assert example_inputs(net, input_size=8)[0].shape == (1, 3, 8, 8)


# ------------------------------------------------------------------------ the paper convention

@pytest.mark.parametrize('c_in,c_out,k,s,pad,p,g,nbr_mul,n,h,w', CONV_CASES)
def test_paper_convention_single_conv(c_in, c_out, k, s, pad, p, g, nbr_mul, n, h, w):
    """Fractional block positions, the same additions per block, and in the size only the W_b
    taps a block's receptive field has, no bias bits; dense layers count alike."""
    layer = _init(SPNConv2D(c_out, k, s, pad, in_channels=c_in, use_bias=True,
                            nbr_mul=nbr_mul, out_patch=p, groups=g, phase=Phase.TERNARY))
    r = int(nbr_mul * c_out)
    h_out, w_out = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    row = _only(count_model(layer, (n, c_in, h, w), convention='paper'), 'conv')
    blocks = n * h_out * w_out / p ** 2
    k_b = (p - 1) * s + k
    taps = min(k_b, p * k)
    assert row['mults'] == pytest.approx(r * blocks)
    assert row['adds'] == pytest.approx((r * (c_in // g) * k_b ** 2 + c_out * p * p * r) * blocks)
    assert row['bits'] == 2 * (r * (c_in // g) * taps ** 2 + c_out * p * p * r) + 32 * r
    exact = _only(count_model(layer, (n, c_in, h, w)), 'conv')
    assert exact['mults'] == r * n * ceil(h_out / p) * ceil(w_out / p)
    dense = count_model(layer, (n, c_in, h, w), phase='dense')
    assert count_model(layer, (n, c_in, h, w), phase='dense', convention='paper') == dense


def test_paper_convention_strided_1x1_stores_a_2x2_kernel():
    """A 1x1 stride-2 convolution at p = 2 has K_b = 3 with holes: 9 weights are computed with
    (additions), 4 can be nonzero (size in the paper's convention)."""
    layer = _init(SPNConv2D(8, 1, 2, 0, in_channels=4, use_bias=False, r=8, out_patch=2,
                            phase=Phase.TERNARY))
    assert layer.kernel_b == (3, 3)
    paper = _only(count_model(layer, (1, 4, 14, 14), convention='paper'), 'conv')
    exact = _only(count_model(layer, (1, 4, 14, 14)), 'conv')
    wc = 8 * 4 * 8
    assert paper['bits'] == 2 * (8 * 4 * 4 + wc) + 32 * 8
    assert exact['bits'] == 2 * (8 * 4 * 9 + wc) + 32 * 8 + 32 * 4 * 8  # + the BN shift via W_c
    assert paper['mults'] == 8 * 7 * 7 / 4 == 98  # 12.25 blocks of a 7x7 map
    assert exact['mults'] == 8 * 16


def test_paper_convention_spn_dense_and_lstm_drop_bias_bits():
    dense = _init(SPNDense(5, in_units=7, r=3, phase=Phase.TERNARY))
    paper = _only(count_model(dense, (2, 7), convention='paper'), 'dense')
    exact = _only(count_model(dense, (2, 7)), 'dense')
    assert paper['bits'] == 2 * (3 * 7 + 5 * 3) + 32 * 3 == exact['bits'] - 32 * 5
    assert (paper['mults'], paper['adds']) == (exact['mults'], exact['adds'])
    lstm = _init(SPNLSTM(4, num_layers=1, input_size=3, nbr_mul=1.0, phase=Phase.TERNARY))
    inputs = (nd.zeros((1, 1, 3)),) + tuple(lstm.begin_state(1))
    rows = {r['type']: r for r in count_model(lstm, inputs=inputs, convention='paper')['layers']}
    exact_rows = {r['type']: r for r in count_model(lstm, inputs=inputs)['layers']}
    assert rows['lstm']['bits'] == exact_rows['lstm']['bits'] - 32 * 2 * 4 * 4


def test_unknown_convention_is_refused():
    with pytest.raises(ValueError, match='convention'):
        count_model(_init(nn.Dense(3, in_units=2)), (1, 2), convention='poster')


def test_paper_layout_of_st_resnet18():
    """The layout the poster's counts imply: shortcuts at their stage's p, only the 3x3
    convolutions grouped, and an SPN classifier when out_nbr_mul is given."""
    net = get_model('st_resnet18', nbr_mul=0.5, out_patch=2, groups=4, layout='paper',
                    out_nbr_mul=1000)
    spns = spn_layers(net)
    assert len(spns) == 21 and isinstance(net.output, SPNDense) and net.output.r == 1000
    for layer in spns[:-1]:
        assert layer.out_patch == 2
        assert layer.groups == (4 if layer.kernel == (3, 3) else 1), layer.name
    default = spn_layers(get_model('st_resnet18', nbr_mul=0.5, out_patch=2, groups=4))
    assert [(s.out_patch, s.groups) for s in default if s.kernel == (1, 1)] == [(1, 4)] * 3
    for bad in (dict(layout='poster'), dict(out_nbr_mul=-1), dict(out_nbr_mul=0.5)):
        with pytest.raises(ValueError):
            get_model('st_resnet18', **bad)


def test_poster_classifier_rule():
    assert [poster_classifier_r(f) for f in (6, 2, 1, 0.5)] == [1000] * 4
    assert [poster_classifier_r(f, 'figure') for f in (6, 2, 1, 0.5)] == [0, 0, 1000, 1000]
    with pytest.raises(ValueError):
        poster_classifier_r(1, 'notebook')


def test_cli_paper_convention(capsys):
    """The documented command for one cell of the poster's Table 1 (r = c_out, p = 2, g = 1:
    99.83% fewer multiplications, 35.05% fewer additions, 83.69% smaller)."""
    main(['--model', 'st_resnet18', '--nbr_mul', '1', '--out_patch', '2', '--set',
          'layout=paper', '--set', 'out_nbr_mul=1000', '--convention', 'paper', '--json'])
    out = json.loads(capsys.readouterr().out)
    assert out['convention'] == 'paper'
    pct = out['reduction_pct']
    assert [round(pct[k], 2) for k in ('mults', 'adds', 'bits')] == [99.83, 35.05, 83.69]
    main(['--model', 'st_resnet18', '--nbr_mul', '1', '--out_patch', '2', '--set',
          'layout=paper', '--set', 'out_nbr_mul=1000', '--convention', 'paper'])
    text = capsys.readouterr().out
    assert 'paper convention' in text and '99.83% mults, 35.05% adds, 83.69% size' in text
