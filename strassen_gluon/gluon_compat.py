"""Every use of a private MXNet / Gluon attribute, in one place.

Gluon 1.x has no public way to list a block's own parameters or children, to drop a hybridized
block's cached graph, to read a convolution's options or an RNN layer's geometry, to call a
hybridized block imperatively without losing its cached graph, or to replace a Trainer's
gradient reduction. The library needs each of these; they are written here against MXNet
``WRITTEN_FOR`` and nowhere else, so a new MXNet release means reading this one file.
Importing the module with another MXNet version warns once.

The process-level settings for bfloat16 on oneDNN's AMX kernels (the ISA cap and Linux's
permission to use AMX tiles) are made here too, in :func:`enable_amx`.
"""
import ctypes
import os
import types
import warnings
from contextlib import contextmanager

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import HybridBlock, nn, rnn

WRITTEN_FOR = '1.9.1'

if mx.__version__ != WRITTEN_FOR:
    warnings.warn('strassen_gluon.gluon_compat was written for MXNet %s, this is %s: the private '
                  'Gluon attributes it reads may have changed' % (WRITTEN_FOR, mx.__version__))

# Gluon's base classes of convolutions and recurrent layers are private; they are the only way
# to recognise every Conv1D/2D/3D(Transpose) and RNN/LSTM/GRU layer by type.
CONV_TYPE = nn.conv_layers._Conv
RNN_TYPE = rnn.rnn_layer._RNNLayer


def own_params(block):
    """The parameters registered on `block` itself (not its children), by attribute name."""
    return dict(block._reg_params)


def children(block):
    """The direct child blocks of `block`, in registration order."""
    return list(block._children.values())


def clear_cached_graph(block):
    """Drop the cached graph of a hybridized block (and only its own)."""
    if isinstance(block, HybridBlock):
        block._clear_cached_op()


def is_initialized(param):
    """True when `param` holds data (False while its initialisation is deferred or not done)."""
    return param._data is not None


def add_constant(block, name, value):
    """``block.params.get_constant(name, value)`` without MXNet's false alarm. Each gluon.Constant
    registers an initializer named after its ``id()``; once an earlier constant of the same name
    has been freed, a new one can reuse its id and "override" an initializer nobody uses any more,
    which MXNet reports as a UserWarning."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*New initializer', category=UserWarning)
        return block.params.get_constant(name, value)


def conv_options(block):
    """kernel, strides, padding, dilation, groups, channels, in_channels, transposed, bias of
    a Gluon convolution (Conv1D/2D/3D or their transposes)."""
    kw = block._kwargs
    transposed = block._op_name == 'Deconvolution'
    weight_shape = block.weight.shape
    return dict(kernel=tuple(kw['kernel']), strides=tuple(kw['stride']), padding=tuple(kw['pad']),
                dilation=tuple(kw['dilate']), groups=int(kw['num_group']),
                channels=int(block._channels), transposed=transposed,
                in_channels=int(block._in_channels) or (
                    weight_shape[0] if transposed else weight_shape[1] * int(kw['num_group'])),
                use_bias=block.bias is not None, layout=kw.get('layout', 'NCHW'),
                activation=getattr(block, 'act', None))


def rnn_options(block):
    """mode, hidden_size, num_layers, directions, layout, projection_size, input_size of a
    Gluon RNN/LSTM/GRU layer."""
    return dict(mode=block._mode, hidden_size=block._hidden_size, num_layers=block._num_layers,
                directions=block._dir, layout=block._layout,
                projection_size=getattr(block, '_projection_size', None),
                input_size=block._input_size)


@contextmanager
def imperative(net):
    """Run every HybridBlock of `net` imperatively inside the block (forward hooks fire), keeping
    their cached graphs: hybridize(False) would drop them."""
    blocks = []
    net.apply(lambda b: blocks.append((b, b._active)) if isinstance(b, HybridBlock) else None)
    try:
        for block, _ in blocks:
            block._active = False
        yield net
    finally:
        for block, active in blocks:
            block._active = active


class ReducingTrainer(gluon.Trainer):
    """A Trainer whose gradient reduction is `reduce(params)` instead of its kvstore's.

    Gluon calls the private ``_allreduce_grads`` inside ``step``; overriding it is the only hook.
    `reduce` receives the trainer's parameters in order.
    """

    def __init__(self, params, optimizer, optimizer_params, reduce, batch_scale=1):
        super().__init__(params, optimizer, optimizer_params, kvstore=None)
        self._reduce = reduce
        self._batch_scale = batch_scale

    def step(self, batch_size, ignore_stale_grad=False):
        """`batch_size` is this process's batch; the reduced gradient covers batch_scale times it."""
        super().step(batch_size * self._batch_scale, ignore_stale_grad)

    def _allreduce_grads(self):
        self._reduce(self._params)


def named_children(block):
    """(name, child) for the direct children of `block`, in registration order (the names
    save_parameters uses for structural paths)."""
    return list(block._children.items())


def replace_child(parent, name, old, new):
    """Make `new` take `old`'s place in `parent` under `name`: in the child table and wherever
    the parent's forward can reach it (an attribute, or a list or dict attribute)."""
    parent.register_child(new, name)  # the same key keeps the order of the children
    for attr, value in list(vars(parent).items()):
        if value is old:
            # Block.__setattr__ refuses a change of type (Conv2D -> SPNConv2D); the child table
            # is already updated, so set the attribute around it.
            object.__setattr__(parent, attr, new)
        elif isinstance(value, list):
            value[:] = [new if item is old else item for item in value]
        elif isinstance(value, dict):
            for key, item in value.items():
                if item is old:
                    value[key] = new


def layer_options(layer):
    """The constructor options a Dense, BatchNorm or convolution layer keeps: units / in_units /
    flatten; the batch norm's operator options; the convolution's operator options plus
    channels / in_channels."""
    if isinstance(layer, nn.Dense):
        return dict(units=layer._units, in_units=layer._in_units, flatten=layer._flatten)
    if isinstance(layer, nn.BatchNorm):
        return dict(layer._kwargs)
    return dict(layer._kwargs, channels=layer._channels, in_channels=layer._in_channels)


def clear_cached_graphs(net):
    """Drop the cached graph of every hybridized block of `net`."""
    net.apply(clear_cached_graph)


@contextmanager
def imperative_uncached(net):
    """Like :func:`imperative`, and the cached graphs are dropped before and after, so a graph
    built while weights or phases change inside the block is never reused."""
    clear_cached_graphs(net)
    try:
        with imperative(net):
            yield net
    finally:
        clear_cached_graphs(net)


# For tests that check a block is left as it was.
def cached_graph(block):
    """The cached graph (CachedOp) of a hybridized block, None before its first call."""
    return block._cached_op


def is_hybridized(block):
    return bool(block._active)


def forward_hooks(block):
    return list(block._forward_hooks.values())


def support_dmlc_tracker():
    """Let MXNet's launcher run on Python >= 3.9: its tracker (the ``dmlc_tracker`` package of
    the mxnet wheel) calls ``Thread.isAlive``, which Python 3.9 removed; restore it as an alias
    of ``is_alive`` (process-wide, hence here)."""
    import threading
    if not hasattr(threading.Thread, 'isAlive'):
        threading.Thread.isAlive = threading.Thread.is_alive


def optimizer_states(trainer):
    """The optimizer state arrays (e.g. momenta) of a single-device Trainer, flattened."""
    found = []

    def flatten(state):
        if isinstance(state, (list, tuple)):
            for item in state:
                flatten(item)
        elif state is not None:
            found.append(state)
    for state in trainer._updaters[0].states.values():
        flatten(state)
    return found


def hybrid_forward_override(block):
    """The function installed on `block` by :func:`override_hybrid_forward`, or None."""
    return vars(block).get('hybrid_forward')


def override_hybrid_forward(block, wrapper):
    """Make `block` compute ``wrapper(original, F, *inputs, **params)`` where it computed
    ``original(F, *inputs, **params)``, its class's hybrid_forward. Gluon's HybridBlock calls
    ``self.hybrid_forward`` both imperatively and when it builds the graph, so an attribute of
    the instance shadows the method for this block alone; :func:`restore_hybrid_forward`
    removes it. Drops the block's cached graph."""
    original = types.MethodType(type(block).hybrid_forward, block)
    block.hybrid_forward = lambda F, *args, **params: wrapper(original, F, *args, **params)
    clear_cached_graph(block)


def restore_hybrid_forward(block):
    """Undo :func:`override_hybrid_forward` (nothing when there was none)."""
    vars(block).pop('hybrid_forward', None)
    clear_cached_graph(block)


# ---------------------------------------------------------------------------------------------
# bfloat16 and AMX

# MXNet 1.9 has no numpy bfloat16; it names the type by this structured dtype (mxnet.ndarray's
# _DTYPE_NP_TO_MX), which amp_cast and Symbol.infer_type accept and report.
BFLOAT16 = np.dtype([('bfloat16', np.uint16)])


def to_dtype(F, x, dtype):
    """`x` cast to 'float32' or 'bfloat16' inside a graph (amp_cast: a oneDNN reorder, and an
    in-place no-op when `x` already has that type); its gradient is cast back."""
    return F.amp_cast(x, dtype=BFLOAT16 if dtype == 'bfloat16' else dtype)


def in_float32(F, x, operation, dtype):
    """operation(x) computed in float32 and returned in `dtype` (the graph unchanged for
    float32): for MXNet 1.9 operators without a bfloat16 kernel, such as pad and transpose."""
    if dtype == 'float32':
        return operation(x)
    return to_dtype(F, operation(to_dtype(F, x, 'float32')), dtype)


def is_bfloat16(array):
    return array.dtype == BFLOAT16


def cpu_features(cpuinfo='/proc/cpuinfo'):
    """(vendor, set of flags) of the first processor in `cpuinfo`; ('', set()) if unreadable."""
    vendor, flags = '', set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'vendor_id' and not vendor:
                    vendor = value.strip()
                elif key == 'flags':
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return vendor, flags


# Linux x86-64: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) lets the process use AMX
# tiles (kernel >= 5.16); without it the first tile instruction kills the process. oneDNN 2.4.4
# (MXNet 1.9.1) does not ask by itself, newer releases do.
SYS_ARCH_PRCTL = 158
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18
AMX_ISA = 'AVX512_CORE_AMX'
_AMX = {}  # the outcome of the first enable_amx() of this process


def _request_tile_permission():
    """0 when Linux grants AMX tiles to this process, else the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0:
        return 0
    return ctypes.get_errno() or -1


def enable_amx(cpuinfo='/proc/cpuinfo'):
    """Let oneDNN use the AMX bfloat16 kernels in this process: (True, how) or (False, why not).

    oneDNN reads DNNL_MAX_CPU_ISA at its first primitive (not at ``import mxnet``) and caps at
    AVX-512 BF16 by default; so call this before the first computation of the process (an
    NDArray operation, a parameter initialisation, a forward pass). Done once per process: later
    calls return the first outcome. A DNNL_MAX_CPU_ISA set by the user is left as it is.
    Nothing is changed where the CPU has no AMX or the kernel refuses the tiles.
    """
    if _AMX:
        return _AMX['ok'], _AMX['reason']
    _, flags = cpu_features(cpuinfo)
    if not {'amx_tile', 'amx_bf16'} <= flags:
        ok, reason = False, 'the CPU has no AMX (no amx_tile/amx_bf16 in %s)' % cpuinfo
    else:
        errno = _request_tile_permission()
        if errno:
            ok, reason = False, ('Linux refused the AMX tiles (arch_prctl: %s); this needs a '
                                 'kernel >= 5.16' % (os.strerror(errno) if errno > 0 else 'failed'))
        else:
            isa = os.environ.setdefault('DNNL_MAX_CPU_ISA', AMX_ISA)
            ok = isa.upper() in (AMX_ISA, 'ALL')
            reason = ('AMX tiles granted, DNNL_MAX_CPU_ISA=%s' % isa if ok else
                      'AMX tiles granted, but DNNL_MAX_CPU_ISA=%s (set by the user) keeps oneDNN '
                      'off AMX' % isa)
    _AMX.update(ok=ok, reason=reason)
    return ok, reason
