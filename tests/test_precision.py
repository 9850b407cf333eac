"""bfloat16 training with float32 master weights (strassen_gluon.train.precision) and the AMX
switch (gluon_compat.enable_amx)."""
import json
import os
import re

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from strassen_gluon import SPNConv2D, SPNDense, clip_scales, freeze_ternary, set_phase
from strassen_gluon import gluon_compat
from strassen_gluon.errors import UsageError
from markers import needs_bfloat16
from strassen_gluon.train.precision import (bfloat16_support, compute_dtype, resolve_dtype,
                                            set_compute_dtype)

INTEL_NO_BF16 = 'vendor_id\t: GenuineIntel\nflags\t\t: fpu sse avx2 avx512f avx512bw avx512vl ' \
                'avx512dq\n'
INTEL_AMX = 'vendor_id\t: GenuineIntel\nflags\t\t: avx512f avx512bw avx512vl avx512dq ' \
            'avx512_bf16 amx_bf16 amx_tile amx_int8\n'
AVX2_ONLY = 'vendor_id\t: GenuineIntel\nflags\t\t: fpu sse avx2 fma\n'


@pytest.fixture
def fake_cpu(tmp_path, monkeypatch):
    """A /proc/cpuinfo stand-in, with enable_amx's once-per-process memory emptied for the test
    and DNNL_MAX_CPU_ISA restored after it."""
    monkeypatch.setattr(gluon_compat, '_AMX', {})
    monkeypatch.delenv('DNNL_MAX_CPU_ISA', raising=False)

    def make(text):
        path = tmp_path / 'cpuinfo'
        path.write_text(text)
        return str(path)
    return make


def test_auto_is_float32_without_fast_bfloat16(fake_cpu):
    lines = []
    assert resolve_dtype('auto', say=lines.append, cpuinfo=fake_cpu(INTEL_NO_BF16)) == 'float32'
    assert len(lines) == 1 and 'float32' in lines[0] and 'no AMX' in lines[0]
    assert 'DNNL_MAX_CPU_ISA' not in os.environ


def test_bfloat16_without_fast_kernels_warns_in_one_line(fake_cpu):
    lines = []
    assert resolve_dtype('bfloat16', say=lines.append,
                         cpuinfo=fake_cpu(INTEL_NO_BF16)) == 'bfloat16'
    assert len(lines) == 1 and 'slower' in lines[0] and '\n' not in lines[0]


def test_bfloat16_without_avx512_falls_back_to_float32(fake_cpu):
    lines = []
    assert resolve_dtype('bfloat16', say=lines.append, cpuinfo=fake_cpu(AVX2_ONLY)) == 'float32'
    assert len(lines) == 1 and 'float32' in lines[0]


def test_float32_asks_nothing_and_unknown_dtype_is_a_usage_error(fake_cpu):
    lines = []
    assert resolve_dtype('float32', say=lines.append, cpuinfo=fake_cpu(INTEL_AMX)) == 'float32'
    assert lines == [] and gluon_compat._AMX == {}
    with pytest.raises(UsageError, match='--dtype'):
        resolve_dtype('float16')


def test_amx_is_enabled_once_when_linux_grants_the_tiles(fake_cpu, monkeypatch):
    calls = []
    monkeypatch.setattr(gluon_compat, '_request_tile_permission', lambda: calls.append(1) or 0)
    path = fake_cpu(INTEL_AMX)
    assert gluon_compat.enable_amx(path) == (True, 'AMX tiles granted, DNNL_MAX_CPU_ISA='
                                                    'AVX512_CORE_AMX')
    assert os.environ['DNNL_MAX_CPU_ISA'] == 'AVX512_CORE_AMX'
    assert bfloat16_support(path)[0] == 'fast'
    assert resolve_dtype('auto', say=lambda line: None, cpuinfo=path) == 'bfloat16'
    assert calls == [1]


def test_amx_refused_by_the_kernel_fails_soft(fake_cpu, monkeypatch):
    monkeypatch.setattr(gluon_compat, '_request_tile_permission', lambda: 22)  # EINVAL
    lines = []
    path = fake_cpu(INTEL_AMX)
    ok, why = gluon_compat.enable_amx(path)
    assert not ok and 'refused' in why
    assert 'DNNL_MAX_CPU_ISA' not in os.environ
    assert resolve_dtype('auto', say=lines.append, cpuinfo=path) == 'float32'


def test_amx_request_reports_this_machine_without_crashing():
    # The real system call (or its absence): True only where the CPU lists AMX.
    ok, why = gluon_compat.enable_amx()
    _, flags = gluon_compat.cpu_features()
    assert ok == ({'amx_tile', 'amx_bf16'} <= flags and 'granted' in why)


# ---------------------------------------------------------------------------------------------
# Networks

def tiny_net(out_patch=1):
    """conv -> BN -> ReLU -> SPN conv -> BN -> ReLU -> global pool -> SPN dense -> dense."""
    net = nn.HybridSequential(prefix='tiny_')
    with net.name_scope():
        net.add(nn.Conv2D(16, 3, padding=1, in_channels=3, use_bias=False),
                nn.BatchNorm(in_channels=16), nn.Activation('relu'),
                SPNConv2D(16, 3, padding=1, in_channels=16, nbr_mul=1, out_patch=out_patch,
                          use_bias=True),
                nn.BatchNorm(in_channels=16), nn.Activation('relu'),
                nn.GlobalAvgPool2D(), nn.Flatten(),
                SPNDense(32, in_units=16, r=16), nn.Activation('relu'),
                nn.Dense(10, in_units=32))
    mx.random.seed(3)
    net.initialize(mx.init.Xavier())
    return net


def batch(n=32, seed=0):
    rng = np.random.RandomState(seed)
    return nd.array(rng.normal(size=(n, 3, 12, 12))), nd.array(rng.randint(0, 10, n))


def test_float32_after_bfloat16_is_the_original_graph_to_the_bit():
    x, _ = batch()
    for hybridize in (False, True):
        net = tiny_net(out_patch=2)
        set_phase(net, 'ternary')
        if hybridize:
            net.hybridize(static_alloc=True)
        before = net(x).asnumpy()
        set_compute_dtype(net, 'bfloat16')
        assert compute_dtype(net) == 'bfloat16'
        set_compute_dtype(net, 'float32')
        assert compute_dtype(net) == 'float32'
        np.testing.assert_array_equal(net(x).asnumpy(), before)


@needs_bfloat16
@pytest.mark.parametrize('out_patch', [1, 2])
@pytest.mark.parametrize('phase', ['dense', 'full', 'ternary'])
def test_bfloat16_output_is_float32_and_close_to_float32(phase, out_patch):
    x, _ = batch()
    net = tiny_net(out_patch)
    set_phase(net, phase)
    net.hybridize(static_alloc=True)
    reference = net(x)
    out = set_compute_dtype(net, 'bfloat16')(x)
    assert out.dtype == np.float32
    error = nd.norm(out - reference).asscalar() / nd.norm(reference).asscalar()
    assert 1e-5 < error < 0.03  # rounded (bfloat16 has 8 bits of mantissa), not broken


@needs_bfloat16
@pytest.mark.parametrize('phase', ['full', 'ternary'])
def test_language_model_runs_in_bfloat16_with_its_lstm_in_float32(phase):
    """The char CNN, highway layers and decoder compute in bfloat16; the SPN LSTM stays float32
    (MXNet's fused RNN takes one dtype for data, weights and states)."""
    from strassen_gluon.models import get_model
    net = get_model('st_charlm', char_vocab_size=12, word_vocab_size=20, max_word_l=6,
                    char_vec_size=5, feature_maps=[3, 4], kernels=[1, 2], highway_layers=1,
                    rnn_size=8, num_layers=2, out_nbr_mul=6, dropout=0.0)
    mx.random.seed(0)
    net.initialize(mx.init.Xavier())
    set_phase(net, phase)
    net.hybridize(static_alloc=True)
    chars = nd.array(np.random.RandomState(0).randint(0, 12, size=(4, 3, 6)))
    h, c = net.begin_state(3)
    reference = net(chars, h, c)[0]
    set_compute_dtype(net, 'bfloat16')
    logits, h, c = net(chars, h, c)
    assert (logits.dtype, h.dtype, c.dtype) == (np.float32,) * 3
    error = nd.norm(logits - reference).asscalar() / nd.norm(reference).asscalar()
    assert 1e-5 < error < 0.05


def output_dtypes_by_op(graph, **input_types):
    """{operator name: set of the dtypes its outputs have} in the Symbol `graph`."""
    nodes = json.loads(graph.tojson(remove_amp_cast=False))['nodes']
    op_of = {node['name']: node['op'] for node in nodes}
    internals = graph.get_internals()
    _, types, _ = internals.infer_type(**input_types)
    by_op = {}
    for name, dtype in zip(internals.list_outputs(), types):
        node = re.sub(r'(_state|_statecell)?_output\d*$', '', name)  # RNN: 3 outputs
        by_op.setdefault(op_of[node], set()).add(np.dtype(dtype))
    return by_op


@needs_bfloat16
def test_language_model_products_are_bfloat16_and_its_activations_float32():
    """Between its products the LM has tanh, max, sigmoid and batch norms of 2-D data, which
    are slower in bfloat16 (docs/precision.md): only the products compute in bfloat16."""
    from strassen_gluon.models import get_model
    net = get_model('st_charlm', char_vocab_size=12, word_vocab_size=20, max_word_l=6,
                    char_vec_size=5, feature_maps=[3, 4], kernels=[1, 2], highway_layers=1,
                    rnn_size=8, num_layers=2, out_nbr_mul=6, dropout=0.0)
    set_phase(net, 'ternary')
    set_compute_dtype(net, 'bfloat16')
    graph = mx.sym.Group(list(net(*[mx.sym.var(n) for n in ('chars', 'h0', 'c0')])))
    by_op = output_dtypes_by_op(graph, chars=np.float32, h0=np.float32, c0=np.float32)
    assert by_op['FullyConnected'] == {gluon_compat.BFLOAT16}
    assert by_op['Convolution'] == {gluon_compat.BFLOAT16}
    for op in ('tanh', 'pick', 'sigmoid', 'BatchNorm', 'RNN'):
        assert by_op[op] == {np.dtype(np.float32)}, op


@needs_bfloat16
def test_quantizers_compute_in_float32_inside_a_bfloat16_graph():
    net = tiny_net()
    set_phase(net, 'ternary')
    set_compute_dtype(net, 'bfloat16')
    by_op = output_dtypes_by_op(net(mx.sym.var('data')), data=np.float32)
    # TWN's thresholds (abs, mean, broadcast_greater), levels (sign) and scale (broadcast_div)
    for op in ('abs', 'mean', 'broadcast_greater', 'sign', 'broadcast_div'):
        assert by_op[op] == {np.dtype(np.float32)}, op
    assert by_op['Convolution'] == {gluon_compat.BFLOAT16}
    assert by_op['FullyConnected'] == {gluon_compat.BFLOAT16}


def train_steps(net, steps, x, y, lr=0.2):
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': lr, 'momentum': 0.9, 'wd': 1e-4})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    losses = []
    for _ in range(steps):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])
        clip_scales(net)
        losses.append(float(loss.mean().asscalar()))
    return trainer, losses


@needs_bfloat16
@pytest.mark.parametrize('phase,frozen', [('dense', False), ('full', False), ('ternary', False),
                                          ('ternary', True)])
def test_bfloat16_training_lowers_the_loss_with_float32_master_weights(phase, frozen):
    x, y = batch(64)
    losses = {}
    for dtype in ('float32', 'bfloat16'):
        net = tiny_net()
        set_phase(net, phase)
        freeze_ternary(net, frozen)
        set_compute_dtype(net, dtype)
        net.hybridize(static_alloc=True)
        trainer, losses[dtype] = train_steps(net, 20, x, y)
    f32, bf16 = losses['float32'], losses['bfloat16']
    assert f32[-1] < f32[0] - 0.2, f32
    # bfloat16 lowers the loss at least half as much as float32 does in the same 20 steps.
    assert bf16[-1] < bf16[0] - 0.5 * (f32[0] - f32[-1]), (bf16, f32)
    trained = [p for p in net.collect_params().values() if p.grad_req != 'null']
    assert trained
    for param in net.collect_params().values():
        assert param.data().dtype == np.float32, param.name
    for param in trained:
        assert param.grad().dtype == np.float32, param.name
    states = gluon_compat.optimizer_states(trainer)
    assert states and all(s.dtype == np.float32 for s in states)


@needs_bfloat16
def test_bfloat16_run_resumes_in_float32_and_back(tmp_path):
    x, y = batch(64)
    net = set_compute_dtype(tiny_net(), 'bfloat16')
    net.hybridize(static_alloc=True)
    train_steps(net, 3, x, y)
    path = str(tmp_path / 'model.params')
    net.save_parameters(path)
    assert all(a.dtype == np.float32 for a in nd.load(path).values())
    for dtype in ('float32', 'bfloat16'):
        other = set_compute_dtype(tiny_net(), dtype)
        other.load_parameters(path)
        other.hybridize(static_alloc=True)
        for (name, a), b in zip(net.collect_params().items(),
                                other.collect_params().values()):
            np.testing.assert_array_equal(a.data().asnumpy(), b.data().asnumpy(), name)
        np.testing.assert_array_equal(other(x).asnumpy(),
                                      set_compute_dtype(net, dtype)(x).asnumpy())
