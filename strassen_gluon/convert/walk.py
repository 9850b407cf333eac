"""Finding the layers of any Gluon network, describing them, and swapping them in place.

Gluon 1.x has no public API to list a block's named children, to read a Conv2D's stride or
padding, or to replace an attribute child by a block of another type, so the few private
attribute reads live in the `gluon_*` functions below (they move to gluon_compat on merge).
"""
import contextlib
from dataclasses import dataclass
from typing import Optional, Tuple

from mxnet.gluon import Block, HybridBlock, nn, rnn
from mxnet.gluon.parameter import DeferredInitializationError

from ..errors import UsageError


class ConversionError(UsageError, ValueError):
    """A network, a layer or an option that the conversion cannot use (exit status 2)."""


class TransferError(ConversionError):
    """The dense network and the SPN network do not match layer for layer."""


class WeightsUnavailableError(ConversionError):
    """Pretrained weights were asked for but are neither on disk nor downloadable (exit
    status 1, as missing data)."""
    exit_status = 1


# ------------------------------------------------------------------ private Gluon attributes

def gluon_named_children(block):
    # private MXNet attribute: moves to gluon_compat
    return list(block._children.items())


def gluon_replace_child(parent, name, old, new):
    """Make `new` take `old`'s place in `parent` under `name`: in the child table and wherever
    the parent's forward can reach it (an attribute, or a list or dict attribute)."""
    parent.register_child(new, name)  # same key: keeps the order of the children
    for attr, value in list(vars(parent).items()):
        if value is old:
            # private MXNet attribute: moves to gluon_compat. Block.__setattr__ refuses a
            # change of type (Conv2D -> SPNConv2D); the child table is already updated.
            object.__setattr__(parent, attr, new)
        elif isinstance(value, list):
            value[:] = [new if item is old else item for item in value]
        elif isinstance(value, dict):
            for key, item in value.items():
                if item is old:
                    value[key] = new


def gluon_held_in_tuple(parent, block):
    """True when `parent` also keeps `block` in a tuple attribute (which cannot be updated)."""
    return any(isinstance(v, tuple) and any(item is block for item in v)
               for v in vars(parent).values())


def gluon_layer_options(layer):
    # private MXNet attribute: moves to gluon_compat (Conv2D/Dense keep their options there).
    if isinstance(layer, nn.Dense):
        return dict(units=layer._units, in_units=layer._in_units, flatten=layer._flatten)
    if isinstance(layer, nn.BatchNorm):
        return dict(layer._kwargs)
    return dict(layer._kwargs, channels=layer._channels, in_channels=layer._in_channels)


def gluon_clear_cached_graphs(net):
    # private MXNet attribute: moves to gluon_compat
    net.apply(lambda b: b._clear_cached_op() if isinstance(b, HybridBlock) else None)


@contextlib.contextmanager
def gluon_imperative(net):
    """Run `net` imperatively inside the context (forward hooks of children only fire then),
    restoring every block's hybridization afterwards."""
    # private MXNet attribute: moves to gluon_compat
    saved = []
    net.apply(lambda b: saved.append((b, b._active)) if isinstance(b, HybridBlock) else None)
    for block, _ in saved:
        block._active = False
    gluon_clear_cached_graphs(net)
    try:
        yield net
    finally:
        for block, active in saved:
            block._active = active
        gluon_clear_cached_graphs(net)


# ------------------------------------------------------------------ walking

def named_blocks(net, prefix=''):
    """(path, parent, key, block) for every block below `net`, depth first in registration
    order. Paths are the structural names save_parameters uses ('features.1.0.body.0')."""
    found = []
    for key, child in gluon_named_children(net):
        path = prefix + key
        found.append((path, net, key, child))
        found.extend(named_blocks(child, path + '.'))
    return found


def own_params(block):
    """The block's own parameters (not its children's) as {short name: Parameter}."""
    return {name[len(block.prefix):] if name.startswith(block.prefix) else name: param
            for name, param in block.params.items()}


def param_state(param):
    """'ready' (data available), 'deferred' (initialised, shape unknown) or 'uninitialised'."""
    try:
        param.data()
        return 'ready'
    except DeferredInitializationError:
        return 'deferred'
    except RuntimeError:
        return 'uninitialised'


def gluon_name(block):
    return block.name


# Linear layers the conversion knows about but cannot turn into SPNs.
OTHER_LINEAR = (nn.Conv1D, nn.Conv3D, nn.Conv1DTranspose, nn.Conv2DTranspose,
                nn.Conv3DTranspose, rnn.RNN, rnn.LSTM, rnn.GRU, rnn.RNNCell, rnn.LSTMCell,
                rnn.GRUCell)


@dataclass(frozen=True)
class LayerSpec:
    """What per-layer options (nbr_mul, out_patch, groups, keep_dense as functions) see.

    name is the structural path, gluon_name the block's Gluon name; kind 'conv' or 'dense';
    in_units / out_units are channels for a convolution (in_units 0 while unknown).
    """
    name: str
    gluon_name: str
    kind: str
    layer: Block
    in_units: int
    out_units: int
    kernel: Tuple[int, int] = (1, 1)
    strides: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    groups: int = 1
    use_bias: bool = True
    flatten: bool = True
    problem: Optional[str] = None   # why it cannot be converted, if it cannot


def describe(path, layer):
    """A LayerSpec for an nn.Conv2D or nn.Dense (with `problem` set when it is unconvertible),
    or None for blocks that are not linear layers."""
    if type(layer) is nn.Conv2D:  # subclasses may change forward: never converted
        o = gluon_layer_options(layer)
        weight_shape = layer.weight.shape
        in_channels = o['in_channels'] or (weight_shape[1] * o['num_group']
                                           if weight_shape[1] else 0)
        problem = None
        if tuple(o['dilate']) != (1, 1):
            problem = 'dilation %s' % (tuple(o['dilate']),)
        elif o['layout'] != 'NCHW':
            problem = 'layout %s' % o['layout']
        elif layer.act is not None:
            problem = 'fused activation'
        elif not in_channels:
            problem = 'input size unknown until the network runs (pass calibration=a batch)'
        return LayerSpec(path, gluon_name(layer), 'conv', layer, in_channels, o['channels'],
                         tuple(o['kernel']), tuple(o['stride']), tuple(o['pad']),
                         o['num_group'], not o['no_bias'], problem=problem)
    if type(layer) is nn.Dense:
        o = gluon_layer_options(layer)
        in_units = o['in_units'] or layer.weight.shape[1]
        problem = None
        if layer.act is not None:
            problem = 'fused activation'
        elif not in_units:
            problem = 'input size unknown until the network runs (pass calibration=a batch)'
        return LayerSpec(path, gluon_name(layer), 'dense', layer, in_units, o['units'],
                         use_bias=layer.bias is not None, flatten=o['flatten'], problem=problem)
    if isinstance(layer, (nn.Conv2D, nn.Dense)):
        return LayerSpec(path, gluon_name(layer), 'other', layer, 0, 0,
                         problem='subclass %s of a Gluon layer' % type(layer).__name__)
    if isinstance(layer, OTHER_LINEAR):
        return LayerSpec(path, gluon_name(layer), 'other', layer, 0, 0,
                         problem='%s has no SPN replacement here' % type(layer).__name__)
    return None
