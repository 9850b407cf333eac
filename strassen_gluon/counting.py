"""Multiplications, additions and model size of a model, per layer and in total (SPEC 5.1).

The library behind ``python -m strassen_gluon.count`` (count.py, the command).

Counts come from each layer's configuration and the shapes it sees in one forward pass of an
example input, run on symbols (shape inference: nothing is computed or allocated, the net need
not be initialized); nothing is kept in a table. ``count_model(net, (1, 3, 32, 32))`` counts one
image; a sequence model counted on one token (T = 1, N = 1) gives the cost per time step.
Numbers are for the whole forward pass of the given input: a batch of N counts N times as much.

Conventions of the default, 'exact' count (SPEC 5.1 and the paragraph after it):

* Full-precision convolution / fully connected / LSTM matrix: one multiplication and one
  addition per weight use (multiply-accumulates). A bias costs nothing extra: an output summing
  n products needs n - 1 additions, and the n-th adds the bias. Bidirectional and multi-layer
  recurrent layers count every direction and layer.
* SPN convolution with r multiplications, output patch p, groups g, output H x W, and W_b's
  enlarged kernel K_b = (p - 1)·s + k (SPEC 1.4; SPEC 5.1 writes p - 1 + k, equal at stride 1):
  mults = r·P with P = ceil(H/p)·ceil(W/p) blocks; adds = r·P·(c_in/g)·K_b,h·K_b,w (W_b counted
  dense: one addition per ternary weight slot) + c_out·p²·r·P (W_c counted dense). As for the
  dense layer, the spare addition of each sum is the shift that follows it: the SPN batch
  norm's shift after W_b, the output bias after W_c.
* SPN fully connected with r multiplications: mults = r, adds = r·in + units·r, per input row.
* LSTM, per time step and layer: 8 SPNs (4 gates x i2h/h2h), each r mults and r·in + units·r
  adds, against 4·units·(in + units) multiply-accumulates when dense. The cell's elementwise
  products f⊙c, i⊙g and o⊙tanh(c) (3·units mults; 1·units adds for f⊙c + i⊙g) are the same in
  both, and are a separate row of type ``lstm_cell``.
* A W_c fixed to the identity (layers with ``identity_out = True``: the language model's char
  CNN, quant modes 6/7) is neither stored nor applied: no additions, no bits.
* Batch norm (outside SPNs): at inference a per-channel scale and shift, counted as one
  multiplication and one addition per output activation, in full-precision and Strassen
  networks alike (the paper counts the folded scale in both). The batch norm inside an SPN
  costs nothing extra: its 1/σ folds into ã, its shift into the output bias (see export.py).
* Not counted (the same in both networks, and small): activations, pooling, residual
  additions, the highway gates' elementwise products, softmax. An embedding is a lookup.

Model size in bits, that of the deployment form written by ``export.py``: 32 per full-precision
value, 2 per ternary value.

* Full-precision layers: every weight and bias. Batch norm: 2 values per channel (the folded
  scale and shift). Embedding: its table.
* SPN layers: W_b and W_c at 2 bits per entry when the phase makes them ternary (TERNARY both,
  TERNARY_B only W_b, TERNARY_C only W_c), else 32; plus 32 per ã entry (the TWN scales and the
  SPN batch norm's 1/σ folded in) and 32 per output bias value when the layer has a bias or an
  SPN batch norm (c_out·p² values for a convolution: the batch norm's shift passed through W_c
  depends on the position inside the p x p block).
* An SPN layer in phase DENSE counts as the dense layer it then computes. "The trained model" is
  the final phase, TERNARY: ``phase=Phase.TERNARY`` counts any SPN net as it will end up.

The paper reports the final fully connected layer separately: the last dense layer of the
forward pass (if only batch norms follow it) is marked ``fc_head``, and the result also holds
``total_excluding_fc_head``.

Two conventions (``convention=``, ``--convention``; layers/cost.py): 'exact' (the default, all of
the above: what this implementation computes and stores) and 'paper', the rule that reproduces
the StrassenNets poster's Table 1 to 0.01 points: fractional block positions (H·W/p²), in the
size only the W_b taps a block's receptive field has, no SPN bias bits. Table 1's network is
``st_resnet18`` with ``layout='paper'`` and an SPN classifier with r = 1000 (``out_nbr_mul``);
:func:`poster_counts` builds and counts it (docs/counting.md).
"""
import warnings

import mxnet as mx
from mxnet import nd
from mxnet.gluon import HybridBlock, nn

from .config import Phase
from .gluon_compat import CONV_TYPE, RNN_TYPE, children, conv_options, own_params, rnn_options
from .layers import SPNBlock
from .layers.cost import (FP_BITS, GATES, check_convention, params_bits,
                          recurrent_rows, size as _size)
from .models import get_model

_LEAF_TYPES = (SPNBlock, nn.BatchNorm, CONV_TYPE, nn.Dense, RNN_TYPE, nn.Embedding)


# ------------------------------------------------------------------------- per-layer formulas
# Each counter gets the block, the shapes of one call and the phase to count SPN layers in, and
# returns a list of rows (dicts): ops of that call, size of the layer.

def count_rnn_layer(block, in_shapes, out_shape, phase):
    o = rnn_options(block)
    mode = o['mode']
    if mode not in GATES or o['projection_size']:
        raise NotImplementedError('counting %s layers (mode %r%s) is not implemented'
                                  % (type(block).__name__, mode,
                                     ', with projection' if o['projection_size'] else ''))
    layout, shape = o['layout'], in_shapes[0]
    steps = shape[layout.find('T')] * shape[layout.find('N')]
    hidden, directions = o['hidden_size'], o['directions']
    layer_inputs = [shape[layout.find('C')]] + [hidden * directions] * (o['num_layers'] - 1)
    return recurrent_rows(None, steps, layer_inputs, hidden, directions, phase, mode)


def count_conv(block, in_shapes, out_shape, phase):
    weight = block.weight.shape
    o = conv_options(block)
    transposed = o['transposed']
    # Each output (input, for a transposed conv) element meets weight.size / c_out (c_in) weights.
    if transposed:
        macs = _size(in_shapes[0]) * _size(weight) // weight[0]
    else:
        macs = _size(out_shape) * _size(weight) // weight[0]
    params = [block.weight] + ([block.bias] if block.bias is not None else [])
    return [{'type': 'deconv' if transposed else 'conv', 'spn': False, 'mults': macs,
             'adds': macs, 'bits': params_bits(params), 'kernel': list(o['kernel']),
             'strides': list(o['strides']), 'in_channels': weight[1 - transposed],
             'channels': o['channels']}]


def count_dense(block, in_shapes, out_shape, phase):
    units, in_units = block.weight.shape
    macs = _size(out_shape) // units * units * in_units
    params = [block.weight] + ([block.bias] if block.bias is not None else [])
    return [{'type': 'dense', 'spn': False, 'mults': macs, 'adds': macs,
             'bits': params_bits(params), 'in_units': in_units, 'units': units}]


def count_batchnorm(block, in_shapes, out_shape, phase):
    activations = _size(out_shape)
    channels = block.running_mean.shape[0]
    return [{'type': 'batchnorm', 'spn': False, 'mults': activations, 'adds': activations,
             'bits': 2 * FP_BITS * channels}]


def count_embedding(block, in_shapes, out_shape, phase):
    return [{'type': 'embedding', 'spn': False, 'mults': 0, 'adds': 0,
             'bits': params_bits([block.weight])}]


_COUNTERS = ((nn.BatchNorm, count_batchnorm), (CONV_TYPE, count_conv),
             (nn.Dense, count_dense), (RNN_TYPE, count_rnn_layer),
             (nn.Embedding, count_embedding))


def count_layer(block, in_shapes, out_shape, phase=None, convention='exact'):
    """Rows (dicts with type, spn, mults, adds, bits, ...) for one call of a leaf layer.

    `phase` overrides an SPN layer's own phase for the count (the layer is not changed);
    `convention` is 'exact' or 'paper' (layers/cost.py; the same for layers that are not SPNs).
    """
    check_convention(convention)
    if isinstance(block, SPNBlock):
        # An SPN layer reports its own cost.
        return block.cost(in_shapes, out_shape, phase, convention)
    for cls, counter in _COUNTERS:
        if isinstance(block, cls):
            return counter(block, in_shapes, out_shape, phase)
    raise TypeError('no counter for %s' % type(block).__name__)


# ------------------------------------------------------------------------- whole model

def _leaves(net):
    """Blocks to count (SPN and known layers, not descended into) and blocks with parameters of
    their own that no counter knows (they get a size-only row and a warning)."""
    leaves, unknown = [], []

    def walk(block):
        if isinstance(block, _LEAF_TYPES):
            leaves.append(block)
            return
        if own_params(block):
            unknown.append(block)
        for child in children(block):
            walk(child)
    walk(net)
    return leaves, unknown


def _run_with_hooks(net, input_shapes, blocks):
    """One forward pass of `net` on symbols for inputs of `input_shapes`: the hooks read each
    call's shapes by shape inference; nothing is allocated or computed (a large SPN net, e.g.
    r = 6·c_out at p = 2, would take 1.7 GB and seconds). Returns [(block, in_shapes,
    out_shape)]."""
    plain = [type(b).__name__ for b in _blocks(net) if not isinstance(b, HybridBlock)]
    if plain:
        raise TypeError('count_model counts HybridBlocks (shapes by symbolic inference); %s '
                        'is not one' % plain[0])
    names = ['count_input%d' % i for i in range(len(input_shapes))]
    known = dict(zip(names, input_shapes))

    def shape(value, required=True):
        """Shape of the first output of a (possibly nested) symbolic value."""
        value = next(_symbols(value), None)
        if value is None:
            return None
        # Partial: a state that a layer makes itself (Gluon's RNN called without states) has
        # no known batch size; the counters read only the first input and the output.
        found = tuple(value.infer_shape_partial(**{k: v for k, v in known.items()
                                                   if k in value.list_arguments()})[1][0])
        if found and 0 not in found:
            return found
        if required:
            raise ValueError('count_model cannot infer the shape of %s from inputs %s'
                             % (value.name, list(known.values())))
        return None

    calls, handles = [], []

    def hook(block, args, output):
        calls.append((block, [shape(a, required=i == 0) for i, a in enumerate(args)],
                      shape(output)))
    try:
        for block in blocks:
            handles.append(block.register_forward_hook(hook))
        output = net(*[mx.sym.var(name) for name in names])
    finally:
        for handle in handles:
            handle.detach()
    _fill_deferred_shapes(net, output, known)
    return calls


def _fill_deferred_shapes(net, output, known):
    """Give parameters whose shape waits for the first forward pass (deferred initialisation,
    e.g. a Conv2D without in_channels) the shape inferred from the inputs, as that pass would."""
    graph = mx.sym.Group(list(_symbols(output)))
    args, _, aux = graph.infer_shape_partial(**{k: v for k, v in known.items()
                                                if k in graph.list_arguments()})
    inferred = dict(zip(graph.list_arguments() + graph.list_auxiliary_states(), args + aux))
    for param in net.collect_params().values():
        shape = tuple(inferred.get(param.name, ()))
        if shape and 0 not in shape and (param.shape is None or 0 in param.shape):
            param.shape = shape


def _symbols(value):
    """The symbols of a (possibly nested) output, in order."""
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _symbols(item)
    elif value is not None:
        yield value


def _blocks(net):
    found = []
    net.apply(found.append)
    return found


def _total(rows):
    return {key: sum(row[key] for row in rows) for key in ('mults', 'adds', 'bits')}


def count_model(net, input_shape=None, inputs=None, phase=None, convention='exact'):
    """Count multiplications, additions and bits of `net` for one forward pass.

    Give either `input_shape` ((1, 3, H, W) for one image) or `inputs`, an NDArray or a tuple of
    NDArrays that ``net(*inputs)`` would take (only their shapes are read). `phase` counts every
    SPN layer as if in that phase (e.g. Phase.TERNARY, the trained model; Phase.DENSE, the dense
    equivalent); None counts each in its current phase. `convention`: 'exact' or 'paper' (the
    module docstring). Only shapes are inferred: the net need not be initialized, nothing is
    computed, and the net is left as it was (phases, hybridization and cached graphs, BN
    statistics, no hooks), except that parameters waiting for their shape (deferred
    initialisation) get it, as a first forward pass would give it.

    Returns {'layers': [{'name', 'type', 'spn', 'mults', 'adds', 'bits', 'calls', ...}, ...],
    'total': {'mults', 'adds', 'bits'}, 'total_excluding_fc_head': {...}, 'input_shapes': [...]}
    with layers in the order of their first call. A layer called several times sums its
    operations over the calls and counts its size once.
    """
    if (input_shape is None) == (inputs is None):
        raise ValueError('give exactly one of input_shape and inputs')
    check_convention(convention)
    if phase is not None:
        phase = Phase.parse(phase)
    if inputs is None:
        input_shapes = [tuple(input_shape)]
    else:
        input_shapes = [tuple(x.shape) for x in
                        ((inputs,) if isinstance(inputs, nd.NDArray) else inputs)]
    leaves, unknown = _leaves(net)
    calls = _run_with_hooks(net, input_shapes, leaves + unknown)

    rows = {}  # (block name, suffix) -> row, in first-call order
    for block, in_shapes, out_shape in calls:
        if block in unknown:
            new = [{'type': type(block).__name__.lower(), 'spn': False, 'mults': 0, 'adds': 0,
                    'bits': params_bits(own_params(block).values()), 'uncounted_ops': True}]
            warnings.warn('count_model: no counter for %s (%s); only its size is counted'
                          % (block.name, type(block).__name__))
        else:
            new = count_layer(block, in_shapes, out_shape, phase, convention)
        for row in new:
            name = block.name + row.pop('suffix', '')
            if name in rows:
                rows[name]['mults'] += row['mults']
                rows[name]['adds'] += row['adds']
                rows[name]['calls'] += 1
            else:
                rows[name] = dict(name=name, calls=1, input_shape=list(in_shapes[0] or []),
                                  output_shape=list(out_shape), **row)
    layers = list(rows.values())
    _mark_fc_head(layers)
    return {'layers': layers, 'total': _total(layers),
            'total_excluding_fc_head': _total([r for r in layers if not r.get('fc_head')]),
            'input_shapes': [list(shape) for shape in input_shapes]}


def _mark_fc_head(layers):
    """Mark the last dense layer as the classifier head if only batch norms follow it."""
    for row in reversed(layers):
        if row['type'] == 'dense':
            row['fc_head'] = True
            return
        if row['type'] != 'batchnorm':
            return


def reduction(dense_total, total):
    """Factor by which `total` has fewer mults / adds / bits than `dense_total` (>1 = fewer)."""
    return {key: (dense_total[key] / total[key] if total[key] else float('inf'))
            for key in ('mults', 'adds', 'bits')}


def reduction_pct(dense_total, total):
    """The paper's form: % fewer mults / adds / bits than `dense_total` (negative = more)."""
    return {key: 100.0 * (1.0 - total[key] / dense_total[key]) for key in ('mults', 'adds', 'bits')}


def against_dense(net, inputs, phase=Phase.TERNARY, convention='exact'):
    """count_model of `net` in `phase`, and, when it has SPN layers, of the dense network it
    computes in phase DENSE: the result plus 'dense_total', 'reduction' (factors) and
    'reduction_pct' (the paper's % reduction)."""
    result = count_model(net, inputs=inputs, phase=phase, convention=convention)
    if any(row['spn'] for row in result['layers']):
        dense = count_model(net, inputs=inputs, phase=Phase.DENSE, convention=convention)['total']
        result.update(dense_total=dense, reduction=reduction(dense, result['total']),
                      reduction_pct=reduction_pct(dense, result['total']))
    return result


# ------------------------------------------------------------------------- the poster's counts

POSTER_CLASSIFIER_R = 1000


def poster_classifier_r(nbr_mul, source='table'):
    """r of the classifier SPN that the poster's counts include (0: a full-precision classifier).

    'table' (v1 poster, Table 1): an SPN with r = 1000 at every budget. 'figure' (ICML poster,
    Fig. 2): the same for r < 2·c_out, full precision for r >= 2·c_out (the figure's
    multiplications and sizes fit this to 0.03%, and no other choice; docs/counting.md).
    """
    if source not in ('table', 'figure'):
        raise ValueError("source must be 'table' or 'figure', not %r" % (source,))
    return 0 if source == 'figure' and nbr_mul >= 2 else POSTER_CLASSIFIER_R


def poster_counts(nbr_mul, out_patch, groups, source='table'):
    """Counts of the poster's ST-ResNet-18 with r = nbr_mul·c_out, out_patch p and groups g:
    ``st_resnet18`` in the paper's layout, its classifier as :func:`poster_classifier_r` says,
    counted in the 'paper' convention against its dense network (against_dense's result)."""
    net = get_model('st_resnet18', nbr_mul=nbr_mul, out_patch=out_patch, groups=groups,
                    layout='paper', out_nbr_mul=poster_classifier_r(nbr_mul, source))
    return against_dense(net, example_inputs(net), convention='paper')


def example_inputs(net, input_size=None, ctx=None):
    """The example input counted for `net`: the model's own ``example_inputs(ctx)`` (a tuple of
    NDArrays, e.g. one token and the states of a language model) if it has one, else a zero
    array of ``net.default_input_shape`` (set by the model registry: one image), resized to
    `input_size` x `input_size` if given; a ValueError if neither says what the input is."""
    own = getattr(net, 'example_inputs', None)
    if callable(own):
        if input_size is not None:
            raise ValueError('--input_size applies to image models; %s has its own example '
                             'input' % net.name)
        return tuple(own(ctx=ctx))
    shape = getattr(net, 'default_input_shape', None)
    if shape is None:
        if input_size is None:
            raise ValueError('%s states no example input (models.register(input_shape=...)); '
                             'give an image size' % net.name)
        shape = (1, 3, input_size, input_size)
    shape = tuple(shape)
    if input_size is not None:
        if len(shape) != 4:
            raise ValueError('--input_size applies to (N, C, H, W) inputs, not %r' % (shape,))
        shape = shape[:2] + (input_size, input_size)
    return (nd.zeros(shape, ctx=ctx),)


# ------------------------------------------------------------------------- text

def human(n):
    """1234567 -> '1.23M' (k, M, G, T; powers of 1000)."""
    for unit, size in (('T', 1e12), ('G', 1e9), ('M', 1e6), ('k', 1e3)):
        if abs(n) >= size:
            return '%.2f%s' % (n / size, unit)
    return '%d' % n


def _amount(n):
    """12345 -> '12,345'; a fractional count (paper convention) keeps two decimals."""
    return '{:,}'.format(n) if n == int(n) else '{:,.2f}'.format(n)


def format_table(result, title=None):
    """The per-layer table and totals of count_model's result as plain text."""
    header = ('name', 'type', 'spn', 'mults', 'adds', 'bits')
    lines = [[r['name'] + (' (fc head)' if r.get('fc_head') else ''), r['type'],
              'yes' if r['spn'] else '', _amount(r['mults']), _amount(r['adds']),
              _amount(r['bits'])] for r in result['layers']]
    for label, key in (('total', 'total'), ('total excl. fc head', 'total_excluding_fc_head')):
        t = result[key]
        lines.append([label, '', '', _amount(t['mults']), _amount(t['adds']), _amount(t['bits'])])
    widths = [max(len(x) for x in column) for column in zip(header, *lines)]
    right = (False, False, False, True, True, True)

    def fmt(cells):
        return '  '.join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, right)).rstrip()
    rule = '  '.join('-' * w for w in widths)
    body = [fmt(header), rule] + [fmt(c) for c in lines[:-2]] + [rule] + \
        [fmt(c) for c in lines[-2:]]
    t = result['total']
    body.append('total: %s mults, %s adds, %s bits (%.3f MB)'
                % (human(t['mults']), human(t['adds']), human(t['bits']), t['bits'] / 8e6))
    return '\n'.join(([title] if title else []) + body)


def format_reduction(result):
    """One line: the dense equivalent and the reduction, as factors and as the paper's %."""
    dense, factors, pct = result['dense_total'], result['reduction'], result['reduction_pct']
    return ('dense equivalent: %s mults, %s adds, %s bits; reduction x%.1f mults, x%.2f adds, '
            'x%.1f size = %.2f%% mults, %.2f%% adds, %.2f%% size'
            % (human(dense['mults']), human(dense['adds']), human(dense['bits']),
               factors['mults'], factors['adds'], factors['bits'],
               pct['mults'], pct['adds'], pct['bits']))
