"""The inference graph equals the trained network in inference mode; non-ternary is refused."""
import warnings

import mxnet as mx
import mxnet.gluon.parameter
import numpy as np
import pytest
from mxnet import autograd

from strassen_gluon import set_phase
from strassen_gluon.export import inference_net
from strassen_gluon.export.graph import DeployedConv, Identity
from strassen_gluon.convert.walk import named_blocks
from strassen_gluon.gluon_compat import named_children
from strassen_gluon.layers import SPNConv2D, SPNDense
from strassen_gluon.models import get_model, list_models
from markers import needs_bfloat16

CNNS = [name for name in list_models() if 'charlm' not in name]


def trained(name, **kwargs):
    """A registry model with moved BN statistics (a few training-mode passes), ternary if SPN."""
    mx.random.seed(0)
    net = get_model(name, **kwargs)
    net.initialize(mx.init.Xavier())
    if name.startswith('st_'):
        set_phase(net, 'ternary')
    # Odd sizes where the network allows (VGG-7's classifier fixes 32 x 32).
    size = {'resnet18': (21, 19), 'vgg7': (32, 32)}.get(name.replace('st_', ''), (17, 15))
    x = mx.nd.random.normal(shape=(2, 3) + size)
    for _ in range(2):
        with autograd.record():
            net(x)
    return net, x


def relative_error(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize('name,patch,fold_scales', [(n, p, True) for n in CNNS for p in (
    (1, 2, 3) if n.startswith('st_') else (None,))] + [
    ('st_resnet20', p, False) for p in (1, 2, 3)] + [('resnet20', None, False)])
def test_inference_net_equals_the_trained_network(name, patch, fold_scales):
    net, x = trained(name, **({'out_patch': patch} if patch else {}))
    expected = net(x).asnumpy()
    deployed = inference_net(net, fold_scales=fold_scales)
    assert relative_error(deployed(x).asnumpy(), expected) < 1e-4
    np.testing.assert_array_equal(net(x).asnumpy(), expected)  # the original is untouched
    kinds = [type(block) for _, _, _, block in named_blocks(deployed)]
    assert DeployedConv in kinds and Identity in kinds
    # Every batch norm right after a convolution is folded (VGG-7 keeps those after pooling).
    for _, _, _, block in named_blocks(deployed):
        if isinstance(block, mx.gluon.nn.HybridSequential):
            sequence = [type(child) for _, child in named_children(block)]
            assert (DeployedConv, mx.gluon.nn.BatchNorm) not in zip(sequence, sequence[1:])
    assert not any(issubclass(kind, (SPNConv2D, SPNDense)) for kind in kinds)


def test_non_ternary_phase_is_refused():
    net = get_model('st_resnet20')
    net.initialize()
    with pytest.raises(ValueError, match='TERNARY'):
        inference_net(net)


@needs_bfloat16
@pytest.mark.parametrize('name,patch', [('resnet20', None), ('st_resnet20', 1),
                                        ('st_resnet20', 2), ('st_resnet20', 3)])
def test_bfloat16_inference_net_is_close_to_the_trained_network(name, patch):
    net, x = trained(name, **({'out_patch': patch} if patch else {}))
    expected = net(x).asnumpy()
    out = inference_net(net, dtype='bfloat16')(x)
    assert out.dtype == np.float32
    assert 1e-5 < relative_error(out.asnumpy(), expected) < 0.05  # rounded, not broken
    with pytest.raises(ValueError, match='fold_scales'):
        inference_net(net, fold_scales=False, dtype='bfloat16')


@pytest.mark.parametrize('patch', [1, 2, 3])
@pytest.mark.parametrize('size', [(17, 15), (32, 32)])
def test_fixed_input_size_graph_equals_the_trained_network(patch, size):
    net, _ = trained('st_resnet20', out_patch=patch)
    x = mx.nd.random.normal(shape=(3, 3) + size)
    expected = net(x).asnumpy()
    for fold_scales in (True, False):
        deployed = inference_net(net, fold_scales=fold_scales, input_shape=(1, 3) + size)
        assert relative_error(deployed(x).asnumpy(), expected) < 1e-4
    convs = [b for _, _, _, b in named_blocks(deployed) if isinstance(b, DeployedConv)]
    assert all(conv.in_size for conv in convs)
    if patch == 2 and size == (32, 32):  # every map even: blocks tile it, no pad, no crop
        assert all(conv.geometry() == (True, None) for conv in convs if conv.p == 2)
    with pytest.raises(ValueError, match='fixed to'):
        inference_net(net, input_shape=(1, 3) + size, hybridize=False)(
            mx.nd.zeros((1, 3, 16, 16)))


def test_rebuilding_the_inference_graph_raises_no_initializer_warning(monkeypatch):
    """MXNet names each constant's initializer after id(constant); a reused id (forced here for
    every constant) made MXNet warn that a new initializer overrides an existing one."""
    monkeypatch.setattr(mxnet.gluon.parameter, 'id', lambda _: 1, raising=False)
    net, x = trained('st_resnet20', nbr_mul=1, out_patch=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for _ in range(2):
            inference_net(net)(x)
        for _ in range(2):  # the same, through MXNet's own get_constant
            mx.gluon.nn.Block(prefix='plain_').params.get_constant('c', mx.nd.ones(1))
    messages = [str(w.message) for w in caught]
    # Only the second plain constant reports the reused name: the check is live, and the
    # library's constants are quiet.
    assert sum('New initializer' in m for m in messages) == 1, messages
