"""Finding the layers of any Gluon network, describing them, and swapping them in place.

Gluon 1.x has no public API to list a block's named children, to read a Conv2D's stride or
padding, or to replace an attribute child by a block of another type; those reads live in
strassen_gluon.gluon_compat.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from mxnet.gluon import Block, nn, rnn
from mxnet.gluon.parameter import DeferredInitializationError

from ..gluon_compat import (clear_cached_graphs, imperative_uncached, layer_options,  # noqa: F401
                            named_children, replace_child)

from ..errors import UsageError


class ConversionError(UsageError, ValueError):
    """A network, a layer or an option that the conversion cannot use (exit status 2)."""


class TransferError(ConversionError):
    """The dense network and the SPN network do not match layer for layer."""


class WeightsUnavailableError(ConversionError):
    """Pretrained weights were asked for but are neither on disk nor downloadable (exit
    status 1, as missing data)."""
    exit_status = 1


def held_in_tuple(parent, block):
    """True when `parent` also keeps `block` in a tuple attribute (which cannot be updated)."""
    return any(isinstance(v, tuple) and any(item is block for item in v)
               for v in vars(parent).values())


# ------------------------------------------------------------------ walking

def named_blocks(net, prefix=''):
    """(path, parent, key, block) for every block below `net`, depth first in registration
    order. Paths are the structural names save_parameters uses ('features.1.0.body.0')."""
    found = []
    for key, child in named_children(net):
        path = prefix + key
        found.append((path, net, key, child))
        found.extend(named_blocks(child, path + '.'))
    return found


def short_named_params(block):
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


def block_name(block):
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
    activation: Optional[Block] = None   # the layer's fused activation (Dense(.., 'relu'))
    problem: Optional[str] = None   # why it cannot be converted, if it cannot


def describe(path, layer):
    """A LayerSpec for an nn.Conv2D or nn.Dense (with `problem` set when it is unconvertible),
    or None for blocks that are not linear layers."""
    if type(layer) is nn.Conv2D:  # subclasses may change forward: never converted
        o = layer_options(layer)
        weight_shape = layer.weight.shape
        in_channels = o['in_channels'] or (weight_shape[1] * o['num_group']
                                           if weight_shape[1] else 0)
        problem = None
        if tuple(o['dilate']) != (1, 1):
            problem = 'dilation %s' % (tuple(o['dilate']),)
        elif o['layout'] != 'NCHW':
            problem = 'layout %s' % o['layout']
        elif not in_channels:
            problem = 'input size unknown until the network runs (pass calibration=a batch)'
        return LayerSpec(path, block_name(layer), 'conv', layer, in_channels, o['channels'],
                         tuple(o['kernel']), tuple(o['stride']), tuple(o['pad']),
                         o['num_group'], not o['no_bias'], activation=layer.act,
                         problem=problem)
    if type(layer) is nn.Dense:
        o = layer_options(layer)
        in_units = o['in_units'] or layer.weight.shape[1]
        problem = None
        if not in_units:
            problem = 'input size unknown until the network runs (pass calibration=a batch)'
        return LayerSpec(path, block_name(layer), 'dense', layer, in_units, o['units'],
                         use_bias=layer.bias is not None, flatten=o['flatten'],
                         activation=layer.act, problem=problem)
    if isinstance(layer, (nn.Conv2D, nn.Dense)):
        return LayerSpec(path, block_name(layer), 'other', layer, 0, 0,
                         problem='subclass %s of a Gluon layer' % type(layer).__name__)
    if isinstance(layer, OTHER_LINEAR):
        return LayerSpec(path, block_name(layer), 'other', layer, 0, 0,
                         problem='%s has no SPN replacement here' % type(layer).__name__)
    return None
