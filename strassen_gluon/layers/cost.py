"""What an SPN layer costs for one call: multiplications, additions and bits (SPEC 5.1).

The SPN layers report these through their public ``cost(in_shapes, out_shape, phase,
convention)`` method, which :mod:`strassen_gluon.counting` calls for every SPN layer of a model;
the conventions are documented there and in docs/counting.md. A layer in phase DENSE costs what
the dense layer costs, in either convention.

Conventions (CONVENTIONS):

* 'exact': what this implementation computes and stores: whole p x p blocks (ceil(H/p)·ceil(W/p)
  per image), W_b's full enlarged kernel K_b = (p - 1)·s + k in additions and size, and the output
  bias (the SPN batch norm's shift) in the size.
* 'paper': the StrassenNets poster's Table 1: fractional block positions (H·W/p²), in the size
  only the W_b taps that a block's receptive field has (min((p - 1)·s + k, p·k) per axis: 2x2 for
  a 1x1 stride-2 convolution at p = 2, whose K_b = 3 kernel has holes), no bias bits; additions
  count W_b's full kernel, as the poster did.
"""
from math import ceil, prod

from ..config import Phase

CONVENTIONS = ('exact', 'paper')

FP_BITS = 32
TERNARY_BITS = 2
# Elementwise work of one recurrent cell per unit and step: (mults, adds).
CELL_OPS = {'lstm': (3, 1), 'rnn_tanh': (0, 0), 'rnn_relu': (0, 0)}
GATES = {'lstm': 4, 'rnn_tanh': 1, 'rnn_relu': 1}


def size(shape):
    return int(prod(shape))


def params_bits(params, bits=FP_BITS):
    return bits * sum(size(p.shape) for p in params)


def spn_bits(phase, wb_size, wc_size, scale_size, bias_size):
    """Bits of an SPN: W_b and W_c ternary or not by phase; ã and the bias full precision."""
    b_bits = TERNARY_BITS if phase.ternary_b else FP_BITS
    c_bits = TERNARY_BITS if phase.ternary_c else FP_BITS
    return b_bits * wb_size + c_bits * wc_size + FP_BITS * (scale_size + bias_size)


def _has_spn_batchnorm(block):
    return bool(getattr(block, 'batch_norm', False))


def check_convention(convention):
    if convention not in CONVENTIONS:
        raise ValueError('unknown counting convention %r; choose one of %s'
                         % (convention, ', '.join(CONVENTIONS)))
    return convention


def whole(x):
    """x as an int when it is one (fractional block counts make floats)."""
    return int(x) if x == int(x) else x


def receptive_taps(kernel, strides, p):
    """Distinct input positions per axis that a p x p block of outputs reads: (p - 1)·s + k, or
    p·k when the stride skips pixels (s > k)."""
    return tuple(min((p - 1) * s + k, p * k) for k, s in zip(kernel, strides))


def spn_conv_cost(block, in_shapes, out_shape, phase, convention='exact'):
    n, c_out, h, w = out_shape
    c_in = block.in_channels
    (kh, kw), (kbh, kbw) = block.kernel, block.kernel_b
    row = {'type': 'conv', 'spn': phase != Phase.DENSE, 'phase': phase.name.lower(),
           'r': block.r, 'out_patch': block.out_patch, 'groups': block.groups,
           'kernel': list(block.kernel), 'strides': list(block.strides),
           'in_channels': c_in, 'channels': c_out}
    if phase == Phase.DENSE:
        macs = n * c_out * h * w * c_in * kh * kw
        bias = c_out if block.use_bias else 0
        row.update(mults=macs, adds=macs, bits=FP_BITS * (c_out * c_in * kh * kw + bias))
        return [row]
    r, p = block.r, block.out_patch
    # One addition per weight slot of W_b and W_c per p x p block.
    wb = r * (c_in // block.groups) * kbh * kbw
    wc = 0 if block.identity_out else p * p * c_out * r
    if check_convention(convention) == 'paper':
        blocks = n * h * w / (p * p)
        th, tw = receptive_taps(block.kernel, block.strides, p)
        stored_wb, bias = r * (c_in // block.groups) * th * tw, 0
    else:
        blocks = n * ceil(h / p) * ceil(w / p)
        has_bias = block.use_bias or _has_spn_batchnorm(block)
        stored_wb, bias = wb, p * p * c_out if has_bias else 0
    row.update(mults=whole(r * blocks), adds=whole((wb + wc) * blocks),
               bits=spn_bits(phase, stored_wb, wc, r, bias))
    return [row]


def spn_dense_cost(block, in_shapes, out_shape, phase, convention='exact'):
    rows = size(out_shape) // block.units
    units, in_units, r = block.units, block.in_units, block.r
    row = {'type': 'dense', 'spn': phase != Phase.DENSE, 'phase': phase.name.lower(), 'r': r,
           'in_units': in_units, 'units': units}
    if phase == Phase.DENSE:
        macs = rows * units * in_units
        bias = units if block.use_bias else 0
        row.update(mults=macs, adds=macs, bits=FP_BITS * (units * in_units + bias))
        return [row]
    wb, wc = r * in_units, 0 if block.identity_out else units * r
    has_bias = block.use_bias or _has_spn_batchnorm(block)
    bias = units if has_bias and check_convention(convention) == 'exact' else 0
    row.update(mults=rows * r, adds=rows * (wb + wc), bits=spn_bits(phase, wb, wc, r, bias))
    return [row]


def recurrent_rows(block, steps, layer_inputs, hidden, directions, phase, mode='lstm',
                   convention='exact'):
    """Rows for a recurrent layer: its matrices, then the cells' elementwise products.

    `block` is an SPN LSTM layer (r, identity_out), or None for a dense Gluon RNN layer.
    """
    gates = GATES[mode]
    spn = block is not None and phase != Phase.DENSE
    matrix = {'type': 'lstm' if mode == 'lstm' else 'rnn', 'spn': spn, 'steps': steps,
              'num_layers': len(layer_inputs), 'hidden_size': hidden}
    if spn:
        r = block.r
        matrix.update(phase=phase.name.lower(), r=r)
        # Per layer, gates x (i2h, h2h) SPNs: W_b is r x in (in = n_in or hidden), W_c hidden x r.
        wc = 0 if block.identity_out else 2 * gates * hidden * r
        per_step = sum(gates * r * 2 for _ in layer_inputs)
        adds = sum(gates * r * (n_in + hidden) + wc for n_in in layer_inputs)
        bias = gates * 2 * hidden if check_convention(convention) == 'exact' else 0
        bits = sum(spn_bits(phase, gates * r * (n_in + hidden), wc, gates * 2 * r, bias)
                   for n_in in layer_inputs)
        matrix.update(mults=steps * per_step, adds=steps * adds, bits=bits)
    else:
        if block is not None:
            matrix['phase'] = phase.name.lower()
        macs = directions * sum(gates * hidden * (n_in + hidden) for n_in in layer_inputs)
        bits = FP_BITS * directions * sum(gates * hidden * (n_in + hidden) + 2 * gates * hidden
                                          for n_in in layer_inputs)
        matrix.update(mults=steps * macs, adds=steps * macs, bits=bits)
    cell_mults, cell_adds = CELL_OPS[mode]
    units = directions * hidden * len(layer_inputs)
    cell = {'type': mode + '_cell', 'spn': False, 'steps': steps, 'suffix': '_cell',
            'mults': steps * cell_mults * units, 'adds': steps * cell_adds * units, 'bits': 0}
    return [matrix, cell] if mode == 'lstm' else [matrix]


def spn_lstm_cost(block, in_shapes, out_shape, phase, convention='exact'):
    steps = in_shapes[0][0] * in_shapes[0][1]  # (T, N, C)
    hidden = block.hidden_size
    layer_inputs = [block.input_size] + [hidden] * (block.num_layers - 1)
    return recurrent_rows(block, steps, layer_inputs, hidden, 1, phase, convention=convention)
