"""Multiplications, additions and model size of a model, per layer and in total (SPEC 5.1).

Counts come from each layer's configuration and the shapes it sees in one forward pass of an
example input; nothing is kept in a table. ``count_model(net, (1, 3, 32, 32))`` counts one
image; a sequence model counted on one token (T = 1, N = 1) gives the cost per time step.
Numbers are for the whole forward pass of the given input: a batch of N counts N times as much.

Conventions (the paper's, SPEC 5.1 and the paragraph after it):

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
"""
import argparse
import ast
import json
import sys
import warnings
from math import ceil, prod

import mxnet as mx
from mxnet import autograd, nd
from mxnet.gluon import nn

from .config import Phase
from .gluon_compat import (CONV_TYPE, RNN_TYPE, children, conv_options, imperative, own_params,
                           rnn_options)
from .layers import SPNBlock
from .layers.cost import FP_BITS, GATES, TERNARY_BITS, params_bits, recurrent_rows, size as _size
from .models import get_model, list_models

DEFAULT_INPUT_SHAPE = (1, 3, 32, 32)
IMAGENET_INPUT_SHAPE = (1, 3, 224, 224)

_LEAF_TYPES = (SPNBlock, nn.BatchNorm, CONV_TYPE, nn.Dense, RNN_TYPE, nn.Embedding)


def _shape(value):
    """Shape of the first array in a (possibly nested) output."""
    while isinstance(value, (list, tuple)):
        value = value[0]
    return tuple(value.shape)


# ------------------------------------------------------------------------- per-layer formulas
# Each counter gets the block, the shapes of one call and the phase to count SPN layers in, and
# returns a list of rows (dicts): ops of that call, size of the layer.

def count_spn(block, in_shapes, out_shape, phase):
    """An SPN layer reports its own cost (SPNBlock.cost)."""
    if not hasattr(block, 'cost'):
        raise TypeError('no counter for the SPN layer %s (%s)' % (block.name, type(block).__name__))
    return block.cost(in_shapes, out_shape, phase)


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


_COUNTERS = ((SPNBlock, count_spn),
             (nn.BatchNorm, count_batchnorm), (CONV_TYPE, count_conv),
             (nn.Dense, count_dense), (RNN_TYPE, count_rnn_layer),
             (nn.Embedding, count_embedding))


def count_layer(block, in_shapes, out_shape, phase=None):
    """Rows (dicts with type, spn, mults, adds, bits, ...) for one call of a leaf layer.

    `phase` overrides an SPN layer's own phase for the count (the layer is not changed).
    """
    if isinstance(block, SPNBlock):
        phase = Phase.parse(phase) if phase is not None else block.phase
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


def _context(net):
    """The context of the net's parameters; a clear error if any is not initialized."""
    contexts = []
    for param in net.collect_params().values():
        try:
            contexts.append(param.list_ctx()[0])
        except RuntimeError:
            raise RuntimeError('count_model needs an initialized net (parameter %s is not); call '
                               'net.initialize() first' % param.name) from None
    return contexts[0] if contexts else mx.cpu()


def _run_with_hooks(net, inputs, blocks):
    """One imperative forward pass in inference mode; returns [(block, in_shapes, out_shape)]."""
    calls, handles = [], []

    def hook(block, args, output):
        calls.append((block, [_shape(a) if a is not None else None for a in args],
                      _shape(output)))
    try:
        for block in blocks:
            handles.append(block.register_forward_hook(hook))
        # Hooks only fire on imperative calls.
        with imperative(net), autograd.pause(train_mode=False):
            net(*inputs)
    finally:
        for handle in handles:
            handle.detach()
    return calls


def _total(rows):
    return {key: sum(row[key] for row in rows) for key in ('mults', 'adds', 'bits')}


def count_model(net, input_shape=None, inputs=None, phase=None):
    """Count multiplications, additions and bits of `net` for one forward pass.

    Give either `input_shape` (a zero input of that shape is used; (1, 3, H, W) for one image)
    or `inputs`, an NDArray or a tuple of NDArrays passed as ``net(*inputs)``. `phase` counts
    every SPN layer as if in that phase (e.g. Phase.TERNARY, the trained model; Phase.DENSE, the
    dense equivalent); None counts each in its current phase. The net must be initialized; it is
    left as it was (phases, hybridization and cached graphs, BN statistics, no hooks).

    Returns {'layers': [{'name', 'type', 'spn', 'mults', 'adds', 'bits', 'calls', ...}, ...],
    'total': {'mults', 'adds', 'bits'}, 'total_excluding_fc_head': {...}, 'input_shapes': [...]}
    with layers in the order of their first call. A layer called several times sums its
    operations over the calls and counts its size once.
    """
    if (input_shape is None) == (inputs is None):
        raise ValueError('give exactly one of input_shape and inputs')
    if phase is not None:
        phase = Phase.parse(phase)
    ctx = _context(net)
    if inputs is None:
        inputs = (nd.zeros(tuple(input_shape), ctx=ctx),)
    elif isinstance(inputs, nd.NDArray):
        inputs = (inputs,)
    leaves, unknown = _leaves(net)
    calls = _run_with_hooks(net, inputs, leaves + unknown)

    rows = {}  # (block name, suffix) -> row, in first-call order
    for block, in_shapes, out_shape in calls:
        if block in unknown:
            new = [{'type': type(block).__name__.lower(), 'spn': False, 'mults': 0, 'adds': 0,
                    'bits': params_bits(own_params(block).values()), 'uncounted_ops': True}]
            warnings.warn('count_model: no counter for %s (%s); only its size is counted'
                          % (block.name, type(block).__name__))
        else:
            new = count_layer(block, in_shapes, out_shape, phase)
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
            'input_shapes': [list(x.shape) for x in inputs if hasattr(x, 'shape')]}


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


# ------------------------------------------------------------------------- command line

def human(n):
    """1234567 -> '1.23M' (k, M, G, T; powers of 1000)."""
    for unit, size in (('T', 1e12), ('G', 1e9), ('M', 1e6), ('k', 1e3)):
        if abs(n) >= size:
            return '%.2f%s' % (n / size, unit)
    return '%d' % n


def format_table(result, title=None):
    """The per-layer table and totals of count_model's result as plain text."""
    header = ('name', 'type', 'spn', 'mults', 'adds', 'bits')
    lines = [[r['name'] + (' (fc head)' if r.get('fc_head') else ''), r['type'],
              'yes' if r['spn'] else '', '{:,}'.format(r['mults']), '{:,}'.format(r['adds']),
              '{:,}'.format(r['bits'])] for r in result['layers']]
    for label, key in (('total', 'total'), ('total excl. fc head', 'total_excluding_fc_head')):
        t = result[key]
        lines.append([label, '', '', '{:,}'.format(t['mults']), '{:,}'.format(t['adds']),
                      '{:,}'.format(t['bits'])])
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


def _number_or_list(text, convert):
    """'2' -> 2.0, '1,1,2,2' -> [1.0, 1.0, 2.0, 2.0] (per-stage values)."""
    values = [convert(v) for v in text.split(',')]
    return values[0] if len(values) == 1 else values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m strassen_gluon.count',
        description='Multiplications, additions and model size (bits) per layer of a model, '
                    'with the conventions of the StrassenNets paper.')
    parser.add_argument('--model', required=True, choices=list_models(), metavar='NAME',
                        help='registered model: %s' % ', '.join(list_models()))
    parser.add_argument('--nbr_mul', type=lambda s: _number_or_list(s, float),
                        help='r relative to each layer\'s outputs (one value or a comma list, '
                             'one per stage)')
    parser.add_argument('--out_patch', type=lambda s: _number_or_list(s, int),
                        help='output patch p of the SPN convolutions (one value or a list)')
    parser.add_argument('--groups', type=int, help='groups g of W_b')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='any other keyword of the model constructor (repeatable; VALUE is '
                             'a Python literal), e.g. --set word_vocab_size=10000')
    parser.add_argument('--input_size', type=int,
                        help='image side S: count a (1, 3, S, S) input (default: the model\'s '
                             'own example input, else 32)')
    parser.add_argument('--phase', default='ternary',
                        help='phase to count SPN layers in (default ternary, the trained model; '
                             'dense gives the equivalent dense network)')
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    return parser.parse_args(argv)


def parse_settings(pairs):
    """['a=1', 'b=x'] -> {'a': 1, 'b': 'x'} (values as Python literals, else strings)."""
    settings = {}
    for pair in pairs:
        key, sep, text = pair.partition('=')
        if not sep or not key:
            raise ValueError('--set takes KEY=VALUE, not %r' % pair)
        try:
            settings[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            settings[key] = text
    return settings


def build_model(name, **options):
    """get_model(name, **options) with only the options given; a clear error if not accepted."""
    options = {k: v for k, v in options.items() if v is not None}
    try:
        return get_model(name, **options)
    except TypeError as err:  # an option the constructor does not take, or a missing one
        raise ValueError('model %r cannot be built with %s: %s'
                         % (name, ', '.join('%s=%r' % kv for kv in options.items())
                            or 'no options', err)) from None


def example_inputs(net, input_size=None, ctx=None):
    """The example input counted for `net`: the model's own ``example_inputs(ctx)`` (a tuple of
    NDArrays, e.g. one token and the states of a language model) if it has one, else a zero
    image of ``net.default_input_shape``, else (1, 3, 224, 224) for a net with ``classes == 1000``
    and (1, 3, 32, 32) otherwise, resized to `input_size` if given."""
    own = getattr(net, 'example_inputs', None)
    if callable(own):
        if input_size is not None:
            raise ValueError('--input_size applies to image models; %s has its own example '
                             'input' % net.name)
        return tuple(own(ctx=ctx))
    shape = getattr(net, 'default_input_shape', None)
    if shape is None:
        # Until a model states its input: a 1000-class classifier is an ImageNet model.
        shape = IMAGENET_INPUT_SHAPE if getattr(net, 'classes', None) == 1000 \
            else DEFAULT_INPUT_SHAPE
    shape = tuple(shape)
    if input_size is not None:
        if len(shape) != 4:
            raise ValueError('--input_size applies to (N, C, H, W) inputs, not %r' % (shape,))
        shape = shape[:2] + (input_size, input_size)
    return (nd.zeros(shape, ctx=ctx),)


def main(argv=None):
    args = parse_args(argv)
    try:
        options = dict(nbr_mul=args.nbr_mul, out_patch=args.out_patch, groups=args.groups)
        options.update(parse_settings(args.set))
        net = build_model(args.model, **options)
        net.initialize()
        inputs = example_inputs(net, args.input_size)
        phase = Phase.parse(args.phase)
        result = count_model(net, inputs=inputs, phase=phase)
    except (ValueError, mx.base.MXNetError) as err:
        sys.exit('error: %s' % str(err).strip().splitlines()[0])
    has_spn = any(row['spn'] for row in result['layers'])
    dense = count_model(net, inputs=inputs, phase=Phase.DENSE)['total'] if has_spn else None
    options = {k: v for k, v in options.items() if v is not None}
    if args.json:
        out = dict(model=args.model, options=options, phase=phase.name.lower(), **result)
        if dense:
            out['dense_total'] = dense
            out['reduction'] = reduction(dense, result['total'])
        print(json.dumps(out, indent=1))
        return
    settings = ', '.join('%s=%s' % kv for kv in options.items())
    print(format_table(result, title='%s%s; input %s; SPN layers counted in phase %s' % (
        args.model, ' (%s)' % settings if settings else '',
        ' '.join('x'.join(map(str, s)) for s in result['input_shapes']), phase.name.lower())))
    if dense:
        factors = reduction(dense, result['total'])
        print('dense equivalent: %s mults, %s adds, %s bits; reduction x%.1f mults, x%.2f adds, '
              'x%.1f size' % (human(dense['mults']), human(dense['adds']), human(dense['bits']),
                              factors['mults'], factors['adds'], factors['bits']))


if __name__ == '__main__':
    main()
