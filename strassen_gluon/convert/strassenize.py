"""strassenize: turn every Conv2D and Dense of any Gluon network into an SPN layer, in place."""
import dataclasses
import warnings

import numpy as np
from mxnet import autograd, nd
from mxnet.gluon import nn

from ..config import Phase
from ..layers import SPNConv2D, SPNDense
from .initialise import init_from_dense, init_spn_from_dense
from .walk import (ConversionError, describe, clear_cached_graphs, held_in_tuple,
                   replace_child, named_blocks, param_state)

LAST_LAYER = 'last_layer'


class ConversionWarning(UserWarning):
    """Layers that strassenize had to leave dense."""


def strassenize(net, nbr_mul=1.0, out_patch=1, groups=1, keep_dense=LAST_LAYER,
                calibration=None, quantizer='twn', phase=Phase.FULL):
    """Replace every nn.Conv2D and nn.Dense of `net` by an SPNConv2D / SPNDense, in place.

    The SPN layer has the original's shapes, strides, padding, groups and bias, and keeps its
    weights as `dense_weight`: Phase.DENSE of the converted network is the original network.
    A layer with a fused activation (gluoncv's ``Dense(4096, activation='relu')``) becomes a
    HybridSequential of the SPN layer and that activation (same function, the SPN at '.0').
    If the network is initialised, each SPN is initialised from the dense weights
    (init_from_dense: exact where r allows, else truncated SVD); otherwise it is left
    uninitialised for `net.initialize()`.

    nbr_mul, out_patch, groups: one value, a dict {layer name: value} or a function
        f(LayerSpec) -> value. Names are structural paths ('features.1.0.body.0', as
        save_parameters uses) or Gluon block names. nbr_mul 0 or None keeps a layer dense.
        out_patch and groups concern convolutions; `groups` splits W_b's input channels within
        each group of the original (and is ignored where it does not divide them).
    keep_dense: LAST_LAYER (default: the last Conv2D or Dense in registration order, the layer
        that produces the logits, as the paper keeps it: a Dense in most classifiers, a 1x1
        Conv2D in gluoncv's mobilenetv2 and squeezenet), None (convert everything), a collection
        of names, or f(LayerSpec) -> bool.
    calibration: one batch of network inputs (an NDArray or a tuple of them). It completes
        deferred shapes (initialising an uninitialised network) and sets the SPN batch norms
        from the hidden-unit statistics so that they pass their inputs through.
    Layers that cannot be converted (dilated convolutions, RNN layers, Conv1D/3D, transposed
    convolutions, subclasses, unknown input sizes ...) are named in one
    ConversionWarning and left dense. Returns `net` (a converted layer if `net` is one).
    """
    if calibration is not None:
        _complete_shapes(net, calibration)
    root = describe('', net)
    if root is not None:
        return _convert_single(root, nbr_mul, out_patch, groups, calibration, quantizer, phase)
    places, specs = {}, []
    for path, parent, key, block in named_blocks(net):
        spec = describe(path, block)
        if spec is None:
            continue
        if id(block) not in places:
            places[id(block)] = []
            specs.append(spec)
        places[id(block)].append((parent, key))
    _check_names(specs, nbr_mul=nbr_mul, out_patch=out_patch, groups=groups,
                 keep_dense=keep_dense)
    kept = _kept(specs, keep_dense)
    problems, converted = [], []
    for spec in specs:
        if spec.problem is None and any(held_in_tuple(parent, spec.layer)
                                        for parent, _ in places[id(spec.layer)]):
            spec = _with_problem(spec, 'kept in a tuple by its parent')
        if spec.problem is not None:
            problems.append('%s (%s: %s)' % (spec.name, type(spec.layer).__name__, spec.problem))
            continue
        if id(spec.layer) in kept:
            continue
        options = _resolve(spec, nbr_mul, out_patch, groups)
        if options is None:
            continue
        try:
            spn = _build(spec, options, quantizer, phase)
        except ValueError as err:
            problems.append('%s (%s: %s)' % (spec.name, type(spec.layer).__name__, err))
            continue
        ready = _copy_dense(spec, spn)
        replacement = _with_activation(spec, spn)
        for parent, key in places[id(spec.layer)]:
            replace_child(parent, key, spec.layer, replacement)
        converted.append((spec.name, spn, ready))
    if problems:
        warnings.warn('strassenize left %d layer(s) dense, they cannot be converted: %s'
                      % (len(problems), '; '.join(problems)), ConversionWarning, stacklevel=2)
    ready_layers = [spn for _, spn, ready in converted if ready]
    if ready_layers:
        init_spn_from_dense(net, calibration, layers=ready_layers,
                            names={id(spn): name for name, spn, _ in converted})
    clear_cached_graphs(net)
    return net


def _with_problem(spec, problem):
    return dataclasses.replace(spec, problem=problem)


def _complete_shapes(net, calibration):
    """Initialise what is not and run one batch, so every deferred shape becomes known."""
    states = {param_state(p) for p in net.collect_params().values()}
    if states == {'ready'}:
        return
    if 'uninitialised' in states:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # "already initialized" for the others
            net.initialize()
    inputs = tuple(calibration) if isinstance(calibration, (tuple, list)) else (calibration,)
    with autograd.predict_mode():
        net(*inputs)


def _convert_single(spec, nbr_mul, out_patch, groups, calibration, quantizer, phase):
    if spec.problem is not None:
        raise ConversionError('%s cannot be converted: %s' % (type(spec.layer).__name__,
                                                              spec.problem))
    options = _resolve(spec, nbr_mul, out_patch, groups)
    if options is None:
        return spec.layer
    spn = _build(spec, options, quantizer, phase)
    if _copy_dense(spec, spn):
        init_from_dense(spn, calibration)
    return _with_activation(spec, spn)


def _with_activation(spec, spn):
    """`spn` alone, or followed by the original's fused activation (the same Activation block)
    in a HybridSequential named like the original layer."""
    if spec.activation is None:
        return spn
    sequence = nn.HybridSequential(prefix=spec.layer.prefix)
    sequence.add(spn, spec.activation)
    return sequence


def _names(spec):
    return (spec.name, spec.gluon_name, spec.gluon_name.rstrip('_'))


def _check_names(specs, **options):
    """Every name in a dict or collection option must name a Conv2D/Dense of the network."""
    valid = {n for spec in specs for n in _names(spec)}
    for what, value in options.items():
        if isinstance(value, str) or callable(value) or value is None or \
                isinstance(value, (int, float)):
            continue
        unknown = sorted(str(k) for k in value if k not in valid)
        if unknown:
            raise ConversionError('%s names layers the network does not have: %s; its layers '
                                  'are: %s' % (what, ', '.join(unknown),
                                               ', '.join(spec.name for spec in specs)))
        if what in ('out_patch', 'groups'):
            dense = [k for k in value for spec in specs
                     if spec.kind == 'dense' and k in _names(spec)]
            if dense:
                raise ConversionError('%s applies to convolutions only, not to %s'
                                      % (what, ', '.join(dense)))


def _kept(specs, keep_dense):
    if keep_dense is None:
        return set()
    if keep_dense == LAST_LAYER:
        linear = [spec for spec in specs if spec.kind in ('conv', 'dense')]
        return {id(linear[-1].layer)} if linear else set()
    if callable(keep_dense):
        return {id(spec.layer) for spec in specs if keep_dense(spec)}
    names = {keep_dense} if isinstance(keep_dense, str) else set(keep_dense)
    return {id(spec.layer) for spec in specs if names.intersection(_names(spec))}


def _option(value, spec, default):
    if callable(value):
        return value(spec)
    if isinstance(value, dict):
        for name in _names(spec):
            if name in value:
                return value[name]
        return default
    return value


def _resolve(spec, nbr_mul, out_patch, groups):
    """The SPN options of one layer, or None to keep it dense."""
    rank = _option(nbr_mul, spec, 1.0)
    if not rank:
        return None
    if spec.kind == 'dense':
        return dict(nbr_mul=rank)
    split = _option(groups, spec, 1)
    if not isinstance(split, int) or isinstance(split, bool) or split < 1:
        raise ConversionError('groups for %s must be a positive integer, not %r'
                              % (spec.name, split))
    # W_b keeps the original's groups, each split in `split` if that divides its channels.
    total = spec.groups * split
    total = total if spec.in_units % total == 0 else spec.groups
    return dict(nbr_mul=rank, out_patch=_option(out_patch, spec, 1), groups=total)


def _build(spec, options, quantizer, phase):
    if spec.kind == 'conv':
        return SPNConv2D(spec.out_units, spec.kernel, spec.strides, spec.padding,
                         in_channels=spec.in_units, use_bias=spec.use_bias, quantizer=quantizer,
                         phase=phase, prefix=spec.layer.prefix, **options)
    return SPNDense(spec.out_units, in_units=spec.in_units, use_bias=spec.use_bias,
                    flatten=spec.flatten, quantizer=quantizer, phase=phase,
                    prefix=spec.layer.prefix, **options)


def _copy_dense(spec, spn):
    """Initialise `spn` with the original's weights as its dense weights; False when the
    original holds no data yet (then `spn` stays uninitialised)."""
    layer = spec.layer
    if param_state(layer.weight) != 'ready':
        return False
    spn.initialize(ctx=layer.weight.list_ctx())
    weight = layer.weight.data()
    if spec.kind == 'conv' and spec.groups > 1:
        weight = nd.array(_expand_groups(weight.asnumpy(), spec.groups))
    spn.dense_weight.set_data(weight)
    if spec.use_bias:
        spn.bias.set_data(layer.bias.data())
    return True


def _expand_groups(weight, groups):
    """A grouped convolution's (c_out, c_in/g, k, k) weight as the dense (c_out, c_in, k, k)
    one with zeros across groups (SPNConv2D's Phase.DENSE is an ungrouped convolution)."""
    c_out, per_in = weight.shape[:2]
    full = np.zeros((c_out, per_in * groups) + weight.shape[2:], dtype=weight.dtype)
    per_out = c_out // groups
    for o in range(c_out):
        g = o // per_out
        full[o, g * per_in:(g + 1) * per_in] = weight[o]
    return full
