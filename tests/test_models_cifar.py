"""CIFAR models: the registry, shapes, and that per-stage options reach the right layers."""
import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

from strassen_gluon import Phase, SPNConv2D, SPNDense, set_phase, spn_layers
from strassen_gluon.gluon_compat import children, conv_options
from strassen_gluon.models import get_model, list_models
from strassen_gluon.models.resnet_cifar import CIFARResNetV1, blocks_per_stage, stage_values


def build(name, **kwargs):
    net = get_model(name, **kwargs)
    net.initialize(mx.init.Xavier(magnitude=2))
    return net


def blocks_of(net, kind):
    found = []
    net.apply(lambda b: found.append(b) if type(b) is kind else None)
    return found


def topology(net):
    """Nested block types, with an SPN convolution standing for the convolution it replaces."""
    if isinstance(net, SPNConv2D):
        return ('conv', net.channels, net.kernel, net.strides)
    if type(net) is nn.Conv2D:
        o = conv_options(net)
        return ('conv', o['channels'], o['kernel'], o['strides'])
    return (type(net).__name__, [topology(child) for child in children(net)])


def images(n=2, seed=0):
    return mx.nd.array(np.random.RandomState(seed).uniform(-2, 2, (n, 3, 32, 32)))


def test_registry_names():
    names = list_models()
    for name in ('st_resnet20', 'st_resnet32', 'st_resnet44', 'st_resnet56',
                 'resnet20', 'resnet32', 'resnet44', 'resnet56', 'st_vgg7', 'vgg7'):
        assert name in names


def test_unknown_model_lists_the_names():
    with pytest.raises(ValueError) as err:
        get_model('st_resnet21')
    assert 'st_resnet20' in str(err.value) and 'vgg7' in str(err.value)


@pytest.mark.parametrize('depth, n', [(20, 3), (32, 5), (44, 7), (56, 9)])
def test_depth_is_6n_plus_2(depth, n):
    assert blocks_per_stage(depth) == n
    net = get_model('st_resnet%d' % depth)
    # Every block has two convolutions, plus the stem and two projection shortcuts.
    assert len(spn_layers(net)) == 6 * n + 1 + 2


@pytest.mark.parametrize('depth', [18, 21, 2])
def test_other_depths_are_refused(depth):
    with pytest.raises(ValueError, match='6n'):
        CIFARResNetV1(depth)


@pytest.mark.parametrize('name', ['st_resnet20', 'resnet20', 'st_vgg7', 'vgg7'])
def test_output_shape_and_hybridized_equals_imperative(name):
    net = build(name)
    x = images(3)
    plain = net(x)
    assert plain.shape == (3, 10)
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), plain.asnumpy(), rtol=1e-4, atol=1e-5)


def test_resnet_baseline_and_strassen_share_the_topology():
    st, fp = get_model('st_resnet20'), get_model('resnet20')
    assert len(spn_layers(fp)) == 0
    assert len(blocks_of(fp, nn.Conv2D)) == len(spn_layers(st)) == 21
    assert topology(st) == topology(fp)
    for net in (st, fp):
        # Thumbnail stem: a bare convolution, directly followed by the first stage.
        assert isinstance(net.features[1], nn.HybridSequential)
        assert isinstance(net.output, nn.Dense) and net.output.weight.shape[0] == 10
        assert net.output.weight.shape == (10, 64)


def test_stem_is_a_bare_convolution_without_batch_norm():
    net = build('resnet20')
    x = images()
    stem_out = net.features[0](x)
    # Negative values survive: no ReLU (and no BN) between the stem and the first block.
    assert (stem_out.asnumpy() < 0).any()


def test_per_stage_nbr_mul_and_out_patch_reach_the_layers():
    net = get_model('st_resnet20', nbr_mul=[0.5, 1, 2, 1.5], out_patch=[1, 2, 1, 2])
    stem = net.features[0]
    assert isinstance(stem, SPNConv2D) and stem.r == 8 and stem.out_patch == 1
    expected = {1: (16, 2), 2: (64, 1), 3: (96, 2)}
    for stage, (r, p) in expected.items():
        for block in net.features[stage]:
            convs = [b for b in block.body if isinstance(b, SPNConv2D)]
            assert [(c.r, c.out_patch) for c in convs] == [(r, p), (r, p)]
            if block.downsample is not None:
                shortcut = block.downsample[0]
                # quant_down: the 1x1 shortcut is an SPN too, with out_patch forced to 1.
                assert isinstance(shortcut, SPNConv2D) and shortcut.kernel == (1, 1)
                assert shortcut.r == r and shortcut.out_patch == 1 and shortcut.strides == (2, 2)
    net.initialize()
    assert net(images()).shape == (2, 10)


def test_scalar_options_apply_to_every_stage_and_quantizer_reaches_layers():
    net = get_model('st_resnet20', nbr_mul=2, out_patch=2, quantizer='threshold')
    for layer in spn_layers(net):
        assert layer.r == 2 * layer.channels
        assert layer.out_patch == (1 if layer.kernel == (1, 1) else 2)
        assert layer.quantizer_name == 'threshold'


def test_zero_nbr_mul_keeps_a_stage_dense_and_quant_down_false():
    net = get_model('st_resnet20', nbr_mul=[0, 1, 1, 1], quant_down=False)
    assert type(net.features[0]) is nn.Conv2D
    assert type(net.features[2][0].downsample[0]) is nn.Conv2D
    assert len(spn_layers(net)) == 18


def test_per_stage_list_length_is_checked():
    with pytest.raises(ValueError, match='one value per stage'):
        get_model('st_resnet20', nbr_mul=[1, 1, 1])
    with pytest.raises(ValueError, match='one value per stage'):
        get_model('st_vgg7', out_patch=[1, 2, 1, 1])
    assert stage_values(3, 'x') == [3, 3, 3, 3]


def test_dense_models_take_no_spn_options():
    with pytest.raises(TypeError):
        get_model('resnet20', nbr_mul=2)
    with pytest.raises(TypeError):
        get_model('vgg7', out_patch=2)


def test_vgg7_layers_and_fixed_head():
    net = get_model('st_vgg7', nbr_mul=[1, 0.5, 2], out_patch=2)
    convs = blocks_of(net, SPNConv2D)
    assert [(c.in_channels, c.channels, c.r, c.out_patch) for c in convs] == [
        (3, 128, 128, 2), (128, 128, 128, 2), (128, 256, 128, 2), (256, 256, 128, 2),
        (256, 512, 1024, 2), (512, 512, 1024, 2)]
    fc = blocks_of(net, SPNDense)
    assert len(fc) == 1 and (fc[0].in_units, fc[0].units, fc[0].r) == (8192, 1024, 1024)
    assert fc[0].use_bias and fc[0].bias.grad_req == 'write'   # defect 6 fixed: bias trains
    head = list(net.head)
    assert isinstance(head[1], nn.BatchNorm) and isinstance(head[2], nn.Activation)
    assert net.output.weight.shape == (10, 1024)
    assert fc[0].quantizer_name == 'twn'


def test_vgg7_faithful_reproduces_the_original_head():
    net = get_model('st_vgg7', faithful=True, quantizer='threshold')
    head = list(net.head)
    assert len(head) == 2 and not blocks_of(net.head, nn.Activation)
    fc = blocks_of(net, SPNDense)[0]
    assert not fc.use_bias
    assert all(layer.quantizer_name == 'threshold' for layer in spn_layers(net))
    # No nonlinearity between FC-1024 and the classifier: the head is affine in the features
    # (checked at inference, where the batch norm is a fixed affine map).
    net.initialize()
    set_phase(net, Phase.FULL)
    f = mx.nd.array(np.random.RandomState(1).normal(size=(3, 8192)))
    g = lambda v: net.output(net.head(v))  # noqa: E731
    lhs = g(f[0:1] + f[1:2] - f[2:3])
    rhs = g(f[0:1]) + g(f[1:2]) - g(f[2:3])
    np.testing.assert_allclose(lhs.asnumpy(), rhs.asnumpy(), rtol=1e-3, atol=1e-3)


def test_dense_vgg7_has_no_spn_layers():
    net = get_model('vgg7')
    assert not spn_layers(net)
    assert len(blocks_of(net, nn.Conv2D)) == 6 and len(blocks_of(net, nn.Dense)) == 2


def test_phase_switch_changes_the_hybridized_output():
    net = build('st_resnet20')
    net.hybridize()
    x = images()
    full = net(x).asnumpy()
    set_phase(net, Phase.TERNARY)
    assert not np.allclose(net(x).asnumpy(), full)
