"""Training and evaluation in bfloat16 with float32 parameters (mixed precision on oneDNN).

Two steps, both made once by a command before its first computation:

1. :func:`resolve_dtype` turns the option ``--dtype {float32,bfloat16,auto}`` into the dtype of
   the run. On an Intel CPU with AMX it enables the AMX kernels first (a process-level setting,
   see ``gluon_compat.enable_amx``). 'auto' is bfloat16 where oneDNN has fast bfloat16 kernels
   (:func:`bfloat16_support`), float32 elsewhere.
2. :func:`set_compute_dtype` makes a network compute its products in that dtype. Its parameters,
   their gradients, the optimizer state and the checkpoints stay float32 (the master weights);
   the ternary quantizers, the TWN thresholds and ã's projection (clip_scales) compute in float32
   as before; casts to bfloat16 are part of the graph, and their gradients are cast back to
   float32. A training step needs no change: it feeds float32 data, the network casts it once at
   its first product and returns float32 outputs, whose loss is computed in float32.

How a network is converted (each rule measured with DNNL_VERBOSE=1, see docs/precision.md):

* convolutions and dense layers (Gluon's and the SPN layers) cast their input and weights to
  bfloat16: the activations then stay bfloat16 through batch norm (float32 γ, β and statistics),
  ReLU, max pooling and the residual additions, in oneDNN's blocked layouts;
* global average pooling casts its input to float32 first. In bfloat16 *and* in float32 its
  backward hands the gradient on in a layout (acdB16b) that differs from the batch norm's data
  (aBcd16b), and MXNet 1.9 then runs the batch norms of the last stage on oneDNN's reference
  kernel (bnorm_ref), slower than all the convolutions together; a cast's gradient is in the
  plain layout, which MXNet reorders;
* any other block without children (dropout, embedding, LSTM, ...) runs in float32: it gets its
  input cast to float32 (its parameters are float32 already); so does the SPN LSTM, whose fused
  RNN operator takes one dtype for data, weights and states. A block class of the library
  declares another rule with a class attribute ``dtype_rule``: 'product' (as convolutions: the
  deployed layers of strassen_gluon.export; parameters named in its ``float32_params`` are not
  cast, and its ``compute_dtype`` attribute, if it has one, is set) or 'follow' (computes in
  its input's dtype);
* the network's outputs are cast to float32;
* a network whose class sets ``bfloat16_activations = False`` (the language models) gets the
  outputs of its products cast back to float32, and its SPN layers their batch norm over the
  hidden units computed in float32 (``SPNBlock.float32_hidden``): its activations pass through
  tanh, max, sigmoid and elementwise operators, which MXNet computes outside oneDNN, and batch
  norms of data in oneDNN's plain layout, all much slower in bfloat16 than in float32
  (measured: charlm trained at 0.55x of float32 with bfloat16 activations, 1.14x with float32
  ones).

``set_compute_dtype(net, 'float32')`` undoes all of it, so one network can train in one dtype
and be evaluated in the other, and a checkpoint resumes in either.
"""
from mxnet.gluon import HybridBlock, nn

from ..config import DTYPES
from ..errors import UsageError
from ..gluon_compat import (children, clear_cached_graphs, cpu_features, enable_amx,
                            hybrid_forward_override, override_hybrid_forward,
                            restore_hybrid_forward, to_dtype)
from ..layers.spn import SPNBlock
from ..layers.spn_lstm import SPNLSTM

COMPUTE_DTYPES = ('float32', 'bfloat16')

# Layers whose product runs in bfloat16 (oneDNN convolution / inner product).
PRODUCT_LAYERS = (nn.Conv2D, nn.Dense)
# Layers that compute in the dtype of their input (oneDNN has bfloat16 kernels for them).
DTYPE_FOLLOWING = (nn.BatchNorm, nn.Activation, nn.MaxPool2D, nn.AvgPool2D, nn.Flatten)
# Where the activations go back to float32 (see the module docstring).
FLOAT32_INPUT = (nn.GlobalAvgPool2D,)


# oneDNN 2.4 computes bfloat16 from AVX-512 (avx512_core) on; below that it has no kernels.
AVX512_CORE = {'avx512f', 'avx512bw', 'avx512vl', 'avx512dq'}


def bfloat16_support(cpuinfo='/proc/cpuinfo'):
    """('fast' | 'slow' | 'none', why): whether oneDNN 2.4's bfloat16 kernels train faster than
    its float32 ones on this CPU, slower, or do not exist. Measured: Intel AMX (the issue's
    Xeon: a 3x3 convolution 6x faster than float32) and AMD's AVX-512 BF16 (Zen 4 EPYC: 2.4x,
    ResNet-20 training about 3x) are fast; Intel's AVX-512 BF16 without AMX was slower than
    float32. Calls enable_amx (once per process), which must precede the first computation."""
    amx, amx_reason = enable_amx(cpuinfo)
    if amx:
        return 'fast', amx_reason
    vendor, flags = cpu_features(cpuinfo)
    if not AVX512_CORE <= flags:
        return 'none', 'oneDNN has no bfloat16 kernels without AVX-512 (%s)' % amx_reason
    if 'avx512_bf16' in flags and vendor == 'AuthenticAMD':
        return 'fast', 'AMD CPU with AVX-512 BF16; %s' % amx_reason
    if 'avx512_bf16' in flags:
        return 'slow', 'AVX-512 BF16 without AMX; %s' % amx_reason
    return 'slow', 'bfloat16 emulated on AVX-512; %s' % amx_reason


def resolve_dtype(requested, say=print, cpuinfo='/proc/cpuinfo'):
    """The compute dtype of a run asked for with ``--dtype requested``: 'float32' or 'bfloat16'.

    'auto' is bfloat16 where :func:`bfloat16_support` says fast, else float32 (one line through
    `say` with the reason). 'bfloat16' where it is slow trains in bfloat16 after one line saying
    so; where oneDNN has no bfloat16 kernels, float32 after one line. Call once, before the
    first computation of the process (AMX is enabled here). UsageError for other values.
    """
    if requested not in DTYPES:
        raise UsageError('--dtype must be one of %s, not %r' % (', '.join(DTYPES), requested))
    if requested == 'float32':
        return 'float32'
    support, why = bfloat16_support(cpuinfo)
    if requested == 'auto':
        dtype = 'bfloat16' if support == 'fast' else 'float32'
        say('--dtype auto: %s (%s)' % (dtype, why))
        return dtype
    if support == 'none':
        say('warning: --dtype bfloat16 is not possible here, training in float32: %s' % why)
        return 'float32'
    if support == 'slow':
        say('warning: --dtype bfloat16 will train slower than float32 here: %s' % why)
    return 'bfloat16'


def _map(cast, value):
    """`cast` applied to a Symbol/NDArray or to each item of a (nested) list or tuple of them."""
    if isinstance(value, (list, tuple)):
        return type(value)(_map(cast, item) for item in value)
    return value if value is None else cast(value)


def _inputs_to(dtype, params_too, keep=()):
    """A hybrid_forward wrapper that casts the block's inputs (and with `params_too` its
    parameters but those named in `keep`) to `dtype`."""
    def wrapper(original, F, *args, **params):
        args = [_map(lambda x: to_dtype(F, x, dtype), a) for a in args]
        if params_too:
            params = {k: v if k in keep else to_dtype(F, v, dtype) for k, v in params.items()}
        return original(F, *args, **params)
    return wrapper


def _is_product(block):
    """Whether `block` is a product layer that is not an SPN layer (module docstring)."""
    return isinstance(block, PRODUCT_LAYERS) or getattr(block, 'dtype_rule', None) == 'product'


def _rule(block, dtype):
    """The hybrid_forward wrapper of a block that is not an SPN layer (module docstring), or
    None when the block computes in the dtype of its input as it is."""
    if _is_product(block):
        return _inputs_to(dtype, params_too=True, keep=getattr(block, 'float32_params', ()))
    if isinstance(block, FLOAT32_INPUT):
        return _inputs_to('float32', params_too=False)
    if (isinstance(block, DTYPE_FOLLOWING) or getattr(block, 'dtype_rule', None) == 'follow'
            or children(block) or not isinstance(block, HybridBlock)):
        return None
    return _inputs_to('float32', params_too=False)


def _outputs_to_float32(rule):
    """`rule` (or the block as it is, for None), then float32 outputs."""
    def wrapper(original, F, *args, **params):
        out = rule(original, F, *args, **params) if rule else original(F, *args, **params)
        return _map(lambda y: to_dtype(F, y, 'float32'), out)
    return wrapper


def _convert(block, dtype, root, float32_activations):
    restore_hybrid_forward(block)
    # MXNet's fused RNN operator needs one dtype for its data, weights and states: the SPN LSTM
    # stays float32, as every other recurrent leaf does.
    recurrent = isinstance(block, SPNLSTM)
    if isinstance(block, SPNBlock):
        block.compute_dtype = 'float32' if recurrent else dtype
        block.float32_hidden = float32_activations
    elif _is_product(block) and hasattr(block, 'compute_dtype'):
        block.compute_dtype = dtype
    if dtype == 'float32':
        return
    if recurrent:
        rule = _inputs_to('float32', params_too=False)
    else:
        rule = None if isinstance(block, SPNBlock) else _rule(block, dtype)
    product = _is_product(block) or (isinstance(block, SPNBlock) and not recurrent)
    if root or (product and float32_activations):
        rule = _outputs_to_float32(rule)
    if rule is not None:
        override_hybrid_forward(block, rule)


def set_compute_dtype(net, dtype):
    """Make the HybridBlock `net` compute in `dtype` ('float32' or 'bfloat16') with float32
    parameters, in place (see the module docstring); returns `net`. Cached graphs are dropped,
    so it can be called before or after hybridize()."""
    if dtype not in COMPUTE_DTYPES:
        raise UsageError('compute dtype must be one of %s, not %r'
                         % (', '.join(COMPUTE_DTYPES), dtype))
    float32_activations = not getattr(net, 'bfloat16_activations', True)
    net.apply(lambda block: _convert(block, dtype, root=block is net,
                                     float32_activations=float32_activations))
    clear_cached_graphs(net)
    return net


def compute_dtype(net):
    """'bfloat16' when `net` was set to compute in bfloat16, else 'float32'."""
    return 'bfloat16' if hybrid_forward_override(net) is not None else 'float32'
