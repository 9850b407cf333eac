"""Initialising a registry SPN model from a trained dense network of the same architecture.

The dense network is either the registry's dense twin (resnet20 -> st_resnet20, resnet18 ->
st_resnet18, charlm -> st_charlm, vgg7 -> st_vgg7) or a gluoncv model zoo network that has the
same layout (cifar_resnet20_v1 / 56_v1 -> st_resnet20 / 56, resnet18_v1 -> st_resnet18).
Layers are matched structurally, in registration order, among the blocks that own parameters:

* Conv2D -> SPNConv2D, Dense -> SPNDense, rnn.LSTM -> SPNLSTM: the weights become the SPN
  layer's dense weights (shapes, strides, padding and bias checked), then every SPN layer is
  initialised from them (init_from_dense);
* layers of the same type (Conv2D, Dense, BatchNorm, Embedding ...): parameters copied;
* a BatchNorm only in the SPN model (st_charlm's after each highway layer) is set to pass its
  input through; a BatchNorm only in the dense model right after a convolution or dense layer
  (gluoncv's CIFAR stem) is folded into that SPN layer (inference-mode affine map), so the SPN
  model computes the dense one; its Phase.DENSE then lacks that batch norm.

Anything else raises TransferError naming both layers.
"""
import os
import warnings

import numpy as np
from mxnet import nd
from mxnet.gluon import nn, rnn

from ..layers import SPNConv2D, SPNDense, SPNLSTM
from ..models import list_models
from .batchnorm import batchnorm_affine
from .initialise import init_spn_from_dense
from .walk import (ConversionError, TransferError, WeightsUnavailableError,
                   clear_cached_graphs, layer_options, named_blocks, short_named_params,
                   param_state)

GLUONCV_PREFIX = 'gluoncv:'
# gluoncv model -> the registry SPN model with the same layout.
GLUONCV_TWINS = {'cifar_resnet20_v1': 'st_resnet20', 'cifar_resnet56_v1': 'st_resnet56',
                 'resnet18_v1': 'st_resnet18'}
SPN_TWIN_OF = ((nn.Conv2D, SPNConv2D), (nn.Dense, SPNDense), (rnn.LSTM, SPNLSTM))


def dense_twin(model_name):
    """The registered dense model whose trained weights initialise `model_name`
    ('st_resnet20' -> 'resnet20', 'st_charlm' -> 'charlm')."""
    twin = model_name[3:] if model_name.startswith('st_') else None
    if twin is None or twin not in list_models():
        raise TransferError('%s has no dense twin in the registry (the SPN models and their '
                            'twins: %s)' % (model_name, ', '.join(
                                '%s <- %s' % (m, m[3:]) for m in list_models()
                                if m.startswith('st_') and m[3:] in list_models())))
    return twin


def check_dense_twin(model_name, dense_model_name, source='the dense run'):
    """Raise TransferError unless `dense_model_name` is the dense twin of `model_name`."""
    twin = dense_twin(model_name)
    if dense_model_name != twin:
        raise TransferError('%s holds a %s model; %s needs a trained %s'
                            % (source, dense_model_name, model_name, twin))


def leaf_layers(net):
    """(path, block) for every block that owns parameters, in registration order."""
    return [(path, block) for path, _, _, block in named_blocks(net) if short_named_params(block)]


def _describe(entry):
    if entry is None:
        return 'nothing'
    path, block = entry
    shapes = ', '.join('%s %s' % (name, tuple(p.shape))
                       for name, p in short_named_params(block).items())
    return '%s (%s: %s)' % (path, type(block).__name__, shapes)


def _mismatch(d, s, why):
    raise TransferError('dense layer %s does not match SPN layer %s: %s'
                        % (_describe(d), _describe(s), why))


def _pairs_with(d_block, s_block):
    for dense_type, spn_type in SPN_TWIN_OF:
        if type(d_block) is dense_type and isinstance(s_block, spn_type):
            return True
    return type(d_block) is type(s_block)


def match_layers(dense_net, spn_net):
    """(pairs, folds, extra_norms): matched (dense, spn) entries, {spn entry: dense BatchNorm}
    to fold, and SPN-only BatchNorms. Raises TransferError on the first mismatch."""
    dense, spn = leaf_layers(dense_net), leaf_layers(spn_net)
    pairs, folds, extra = [], [], []
    i = j = 0
    while i < len(dense) or j < len(spn):
        d = dense[i] if i < len(dense) else None
        s = spn[j] if j < len(spn) else None
        if d is not None and s is not None and _pairs_with(d[1], s[1]):
            pairs.append((d, s))
            i, j = i + 1, j + 1
        elif s is not None and isinstance(s[1], nn.BatchNorm) and \
                (d is None or not isinstance(d[1], nn.BatchNorm)):
            extra.append(s)
            j += 1
        elif d is not None and isinstance(d[1], nn.BatchNorm) and pairs and \
                pairs[-1][0] is dense[i - 1] and isinstance(pairs[-1][1][1], (SPNConv2D,
                                                                               SPNDense)):
            folds.append((pairs[-1][1], d))
            i += 1
        elif d is None:
            raise TransferError('the SPN network has layers the dense network lacks, from %s'
                                % _describe(s))
        elif s is None:
            raise TransferError('the dense network has layers the SPN network lacks, from %s'
                                % _describe(d))
        else:
            _mismatch(d, s, 'different layer types (layers with parameters: %d in the dense '
                      'network, %d in the SPN network)' % (len(dense), len(spn)))
    return pairs, folds, extra


def _copy(src, dst, d, s, what):
    if tuple(src.shape) != tuple(dst.shape):
        _mismatch(d, s, '%s has shape %s, the SPN layer expects %s'
                  % (what, tuple(src.shape), tuple(dst.shape)))
    dst.set_data(src.data())


def _check_conv(d, s):
    conv, spn = d[1], s[1]
    o = layer_options(conv)
    for what, dense_value, spn_value in (('strides', o['stride'], spn.strides),
                                         ('padding', o['pad'], spn.padding),
                                         ('kernel', o['kernel'], spn.kernel),
                                         ('dilation', o['dilate'], (1, 1)),
                                         ('groups', o['num_group'], 1)):
        if tuple(np.atleast_1d(dense_value)) != tuple(np.atleast_1d(spn_value)):
            _mismatch(d, s, '%s %s against %s' % (what, dense_value, spn_value))
    if conv.act is not None:
        _mismatch(d, s, 'the dense convolution has a fused activation')


def _transfer_pair(d, s):
    dense, spn = d[1], s[1]
    if isinstance(spn, (SPNConv2D, SPNDense)):
        if isinstance(spn, SPNConv2D):
            _check_conv(d, s)
        elif dense.act is not None:
            _mismatch(d, s, 'the dense layer has a fused activation')
        elif layer_options(dense)['flatten'] != spn.flatten:
            _mismatch(d, s, 'flatten differs')
        if (dense.bias is None) != (spn.bias is None):
            _mismatch(d, s, 'one has a bias, the other not')
        _copy(dense.weight, spn.dense_weight, d, s, 'weight')
        if dense.bias is not None:
            _copy(dense.bias, spn.bias, d, s, 'bias')
        return
    if isinstance(spn, SPNLSTM):
        src = short_named_params(dense)
        dst = short_named_params(spn)
        expected = {name.replace('_dense_weight', '_weight') for name in dst
                    if name.endswith(('_dense_weight', '_bias'))}
        if set(src) != expected:
            _mismatch(d, s, 'LSTM parameters %s against %s' % (sorted(src), sorted(expected)))
        for name, param in src.items():
            _copy(param, dst[name.replace('_weight', '_dense_weight')], d, s, name)
        return
    src, dst = short_named_params(dense), short_named_params(spn)
    if list(src) != list(dst):
        _mismatch(d, s, 'parameters %s against %s' % (list(src), list(dst)))
    for name in src:
        _copy(src[name], dst[name], d, s, name)


def transfer_dense(dense_net, spn_net, calibration=None):
    """Initialise `spn_net` (an SPN model) from the trained `dense_net` of the same architecture.

    Copies the dense weights into the SPN layers' dense weights (and every other parameter, e.g.
    batch norms and embeddings, into its counterpart), then initialises every SPN layer from
    them (init_from_dense). `calibration`: a batch of network inputs (an NDArray or a tuple,
    e.g. (chars, h0, c0) for the language model) that sets the SPN batch norms to pass their
    inputs through. After this, spn_net in inference mode computes what dense_net computes
    wherever r allows an exact factorisation. Returns a list of LayerInit (one per SPN layer).
    Raises TransferError naming the first pair of layers that do not match.
    """
    pairs, folds, extra = match_layers(dense_net, spn_net)
    for name, param in dense_net.collect_params().items():
        if param_state(param) != 'ready':
            raise ConversionError('the dense network is not ready: %s is %s (load its weights, '
                                  'or run one batch through it)' % (name, param_state(param)))
    _initialise_missing(spn_net)
    for d, s in pairs:
        _transfer_pair(d, s)
    spn_layers_in_order = [s[1] for _, s in pairs if isinstance(s[1], (SPNConv2D, SPNDense,
                                                                        SPNLSTM))]
    affines = {}
    for s, norm in folds:
        if not (s[1].batch_norm or s[1].bias is not None):
            raise TransferError('dense layer %s follows %s, whose SPN layer has neither a '
                                'batch norm nor a bias to fold it into'
                                % (_describe(norm), _describe(s)))
        affines[id(s[1])] = batchnorm_affine(norm[1])
    reports = init_spn_from_dense(spn_net, calibration, layers=spn_layers_in_order,
                                  names={id(s[1]): s[0] for _, s in pairs},
                                  output_affines=affines,
                                  passthrough_norms=[s[1] for s in extra])
    clear_cached_graphs(spn_net)
    return reports


def _initialise_missing(net):
    if any(param_state(p) == 'uninitialised' for p in net.collect_params().values()):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            net.initialize()


# ------------------------------------------------------------------ gluoncv

def gluoncv_name(spec):
    """NAME for a 'gluoncv:NAME' spec, None for anything else (e.g. a run folder)."""
    return spec[len(GLUONCV_PREFIX):] if isinstance(spec, str) and \
        spec.startswith(GLUONCV_PREFIX) else None


def gluoncv_weights_file(name, root=None):
    """Where gluoncv keeps (or would download) the pretrained weights of `name`."""
    from gluoncv.model_zoo.model_store import short_hash
    root = os.path.join(os.environ['MXNET_HOME'], 'models') if 'MXNET_HOME' in os.environ \
        else (root or os.path.join('~', '.mxnet', 'models'))
    try:
        tag = short_hash(name)
    except ValueError:
        raise WeightsUnavailableError('gluoncv has no pretrained weights for %s' % name) \
            from None
    return os.path.join(os.path.expanduser(root), '%s-%s.params' % (name, tag))


def load_gluoncv(name, pretrained=True, root=None, ctx=None, download=True):
    """A gluoncv model zoo network, initialised: with its pretrained weights (from `root`, else
    downloaded unless download=False), or random ones with pretrained=False.

    Raises WeightsUnavailableError, one message naming the file, when the weights are missing
    and cannot be downloaded.
    """
    import mxnet as mx
    from gluoncv import model_zoo
    ctx = ctx or mx.cpu()
    if name not in model_zoo.get_model_list():
        raise ConversionError('gluoncv has no model %r' % name)
    if not pretrained:
        net = model_zoo.get_model(name, pretrained=False)
        net.initialize(ctx=ctx)
        size = 32 if name.startswith('cifar_') else 224
        net(nd.zeros((1, 3, size, size), ctx=ctx))   # completes the deferred shapes
        return net
    path = gluoncv_weights_file(name, root)
    if not os.path.isfile(path) and not download:
        raise WeightsUnavailableError('gluoncv pretrained weights for %s are not at %s '
                                      '(downloading is off)' % (name, path))
    try:
        return model_zoo.get_model(name, pretrained=True, ctx=ctx,
                                   root=os.path.dirname(path))
    except Exception as err:  # gluoncv raises whatever its downloader hit
        raise WeightsUnavailableError(
            'could not get gluoncv pretrained weights for %s (%s: %s); put the file %s there '
            'by hand on a machine without network' % (name, type(err).__name__, err, path)) \
            from None


def transfer_gluoncv(spec, spn_net, model_name=None, calibration=None, pretrained=True,
                     root=None, ctx=None, download=True):
    """Initialise the registry SPN model `spn_net` from gluoncv's 'gluoncv:NAME' (or NAME).

    model_name: the registry name of spn_net, checked against GLUONCV_TWINS. Returns
    (the gluoncv network, its LayerInit list); the network can serve as distillation teacher.
    Raises TransferError when NAME has no twin in the registry or another model is given.
    """
    name = gluoncv_name(spec) or spec
    twin = GLUONCV_TWINS.get(name)
    if twin is None:
        raise TransferError('gluoncv:%s has no Strassen twin in the registry (supported: %s); '
                            'convert it with strassen_gluon.convert.strassenize instead'
                            % (name, ', '.join('%s -> %s' % kv for kv in GLUONCV_TWINS.items())))
    if model_name is not None and model_name != twin:
        raise TransferError('gluoncv:%s has the layout of %s, not of %s' % (name, twin,
                                                                            model_name))
    dense = load_gluoncv(name, pretrained=pretrained, root=root, ctx=ctx, download=download)
    return dense, transfer_dense(dense, spn_net, calibration)
