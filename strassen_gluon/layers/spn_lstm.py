"""A multi-layer LSTM whose gate matrices are SPNs (SPEC 1.5).

For every layer, each of the four gates (MXNet's order: input, forget, cell, output) and each of
the input-to-hidden (i2h) and hidden-to-hidden (h2h) matrices has its own SPN: W_b (r x in),
ã (r), W_c (units x r), with no batch norm. The effective matrix W_c·diag(ã)·W_b of each gate is
computed once per forward pass (a weight-sized product) and the four are stacked and handed to
MXNet's fused RNN operator, so the recurrence runs at the speed of a plain LSTM. The four gates'
SPNs are stored stacked, e.g. W_b as (4, r, in), and quantized with one TWN scale per gate.
"""
from mxnet import nd

from ..config import Phase
from .cost import spn_lstm_cost
from .spn import SPNBlock, default_spn_initializer, resolve_rank, with_shape_anchor

GATES = 4
KINDS = ('i2h', 'h2h')


class SPNLSTM(SPNBlock):
    """LSTM over (time, batch, features) inputs with SPN gate matrices.

    ``forward(inputs, h0, c0)`` returns ``(outputs, hT, cT)``; states have shape
    (num_layers, batch, hidden_size); see :meth:`begin_state`. Phase DENSE runs an ordinary LSTM
    with full weight matrices. Biases are full precision in every phase.
    """

    cost_formula = staticmethod(spn_lstm_cost)

    def __init__(self, hidden_size, num_layers=1, input_size=0, dropout=0.0, nbr_mul=None,
                 r=None, quantizer='twn', phase=Phase.FULL, weight_initializer=None,
                 spn_initializer=None, **kwargs):
        super().__init__(quantizer=quantizer, phase=phase, **kwargs)
        for name, value in (('hidden_size', hidden_size), ('num_layers', num_layers),
                            ('input_size', input_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError('%s must be a positive integer, not %r' % (name, value))
        if not 0 <= dropout < 1:
            raise ValueError('dropout must be in [0, 1), not %r' % (dropout,))
        self.hidden_size, self.num_layers, self.input_size = hidden_size, num_layers, input_size
        self.dropout = dropout
        self.r = resolve_rank(hidden_size, nbr_mul, r)
        self._check_identity_out(self.r, hidden_size)
        spn_init = spn_initializer or default_spn_initializer()
        self._dense, self._ternary, self._wc, self._scales = [], [], [], []
        with self.name_scope():
            for layer in range(num_layers):
                for kind in KINDS:
                    in_size = input_size if (layer == 0 and kind == 'i2h') else hidden_size
                    shapes = {'dense_weight': ((GATES * hidden_size, in_size), weight_initializer),
                              'bias': ((GATES * hidden_size,), 'zeros'),
                              'wb': ((GATES, self.r, in_size), spn_init),
                              'wc': None if self.identity_out else
                                    ((GATES, hidden_size, self.r), spn_init),
                              'scale': ((GATES, self.r), 'ones')}
                    for role, spec in shapes.items():
                        if spec is None:
                            continue
                        shape, init = spec
                        name = 'l%d_%s_%s' % (layer, kind, role)
                        # Attributes register the parameters with Gluon (hybrid_forward kwargs).
                        setattr(self, name, self.params.get(name, shape=shape, init=init))
                    prefix = 'l%d_%s_' % (layer, kind)
                    self._dense.append(getattr(self, prefix + 'dense_weight'))
                    self._ternary.append(getattr(self, prefix + 'wb'))
                    if not self.identity_out:
                        self._ternary.append(getattr(self, prefix + 'wc'))
                        self._wc.append(self._ternary[-1])
                    self._scales.append(getattr(self, prefix + 'scale'))
        self._update_grad_req()

    def dense_params(self):
        return list(self._dense)

    def ternary_params(self):
        return list(self._ternary)

    def wc_params(self):
        return list(self._wc)

    def scale_params(self):
        return list(self._scales)

    def begin_state(self, batch_size, ctx=None):
        shape = (self.num_layers, batch_size, self.hidden_size)
        return [nd.zeros(shape, ctx=ctx), nd.zeros(shape, ctx=ctx)]

    def gate_matrix(self, F, wb, wc, scale):
        """The stacked (4·units, in) matrix W_c·diag(ã)·W_b of one layer's i2h or h2h SPNs
        (diag(ã)·W_b when W_c is the identity, `wc` None)."""
        wb = self._maybe_quantize(F, wb, self._phase.ternary_b, axis=(1, 2))
        if wc is None:
            return F.reshape(F.broadcast_mul(F.expand_dims(scale, axis=2), wb), shape=(-3, -2))
        wc = self._maybe_quantize(F, wc, self._phase.ternary_c, axis=(1, 2))
        wc = F.broadcast_mul(wc, F.expand_dims(scale, axis=1))
        return F.reshape(F.batch_dot(wc, wb), shape=(-3, -2))

    def hybrid_forward(self, F, inputs, h0, c0, **params):
        unused = self._unused_params()
        weights, biases = [], []
        for layer in range(self.num_layers):
            for kind in KINDS:
                name = 'l%d_%s_' % (layer, kind)
                if self._phase == Phase.DENSE:
                    weight = params[name + 'dense_weight']
                else:
                    weight = self.gate_matrix(F, params[name + 'wb'], params.get(name + 'wc'),
                                              params[name + 'scale'])
                if layer == 0 and kind == 'i2h':
                    weight = with_shape_anchor(F, weight, params, unused, 2)
                weights.append(F.reshape(weight, shape=(-1,)))
                biases.append(params[name + 'bias'])
        # The fused operator takes every weight, then every bias, as one flat vector.
        flat = F.concat(*(weights + biases), dim=0)
        out, h, c = F.RNN(inputs, flat, h0, c0, state_size=self.hidden_size,
                          num_layers=self.num_layers, mode='lstm', p=self.dropout,
                          state_outputs=True)
        return out, h, c

    def __repr__(self):
        return '{}({} -> {}, layers={}, r={}, phase={})'.format(
            self.__class__.__name__, self.input_size, self.hidden_size, self.num_layers, self.r,
            self._phase.name)
