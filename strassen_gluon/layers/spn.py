"""Sum-product network (SPN) layers: drop-in replacements for Conv2D and Dense.

A layer with weights A computes C = A·B as  vec(C) = W_c [(W_b vec(B)) ⊙ ã],  where ã = W_a vec(A)
is learned directly as a full-precision vector of length r (the multiplication budget), and W_b,
W_c become ternary. In the convolution, W_b is a convolution to r channels whose kernel covers
the receptive field of a p x p block of outputs (p = out_patch), followed by a batch norm with
fixed γ; W_c maps the r channels back to c_out channels for each of the p² positions of the block.

Two implementation choices keep the layers fast and stable on MXNet 1.x (measured; docs/library.md):

* ã is never a separate product with the activations (its backward is slow on CPU). With the
  SPN batch norm (always in the convolution), ã ⊙ BN(h) is computed as one batch norm whose γ is
  ã and whose shift is ã ⊙ β: the same function and gradients. Without a batch norm, ã is folded
  into the smaller of W_b and W_c, as diag(ã)·W_b or W_c·diag(ã).
* W_c (kernel p, stride p transposed convolution) is computed as a 1x1 convolution to p²·c_out
  channels followed by a pixel shuffle: a Deconvolution whose weight is computed in the graph
  crashes in backward with MKLDNN. W_c is stored as (p²·c_out, r, 1, 1) with output channel
  index c·p² + i·p + j for channel c and block position (i, j). With this order the shuffle is a
  reshape/transpose that measured about twice as fast as depth_to_space (which wants
  (i·p + j)·c_out + c) in forward+backward on this CPU.

The phase (see :class:`~strassen_gluon.config.Phase`) is a Python attribute, not a parameter: it
changes the graph, so :func:`set_phase` clears cached graphs. ã is kept in [0, 100] by
:func:`clip_scales` after each optimizer step (projected gradient, as the original's in-place clip).

``compute_dtype`` 'bfloat16' (set by strassen_gluon.train.precision) computes the products in
bfloat16: the input and the weights are cast inside the graph after the quantizer, which like
every parameter, the batch norm's statistics and the gradients of the parameters stays float32.
"""
from mxnet import initializer
from mxnet.gluon import HybridBlock

from ..config import Phase
from ..gluon_compat import clear_cached_graph, in_float32, own_params, to_dtype
from ..quant import fake_quantize, get_quantizer
from .cost import spn_conv_cost, spn_dense_cost

SCALE_MAX = 100.0
BN_EPS = 1e-3


def _pair(value, name):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError('%s must be an int or a pair of ints, not %r' % (name, value))
    return pair


def resolve_rank(units, nbr_mul=None, r=None):
    """The number of multiplications r of one SPN: absolute `r`, or int(nbr_mul · units)."""
    if r is not None:
        if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
            raise ValueError('r must be a positive integer, not %r' % (r,))
        return r
    if nbr_mul is None:
        nbr_mul = 1.0
    if not nbr_mul > 0:
        raise ValueError('nbr_mul must be positive, not %r' % (nbr_mul,))
    rank = int(nbr_mul * units)
    if rank < 1:
        raise ValueError('nbr_mul=%r gives r = int(%r * %d) = 0 multiplications; raise nbr_mul'
                         % (nbr_mul, nbr_mul, units))
    return rank


def default_spn_initializer():
    # The original's initialisation of W_b and W_c.
    return initializer.Xavier(rnd_type='uniform', factor_type='avg', magnitude=2)


def with_shape_anchor(F, weight, params, unused, ndim):
    """`weight` plus a zero that depends on the shapes (never the values) of `unused` parameters.

    Gluon's deferred shape inference looks every parameter of a model up in the graph and fails
    on one that the current phase leaves out (the dense weight in the SPN phases, the SPN weights
    in the dense phase). Adding this zero to a weight that is used keeps every parameter in every
    phase's graph, for the price of a few one-element operations.
    """
    zero = None
    for name in unused:
        one = F.zeros_like(F.slice_axis(F.reshape(params[name], shape=(-1,)), axis=0,
                                        begin=0, end=1))
        zero = one if zero is None else zero + one
    if zero is None:
        return weight
    return F.broadcast_add(weight, F.reshape(zero, shape=(1,) * ndim))


def pixel_shuffle(F, y, channels, p):
    """(N, channels·p², Hb, Wb) with channel index c·p² + i·p + j -> (N, channels, Hb·p, Wb·p)."""
    y = F.reshape(y, shape=(0, -4, channels, -1, -2))        # N, c, p², Hb, Wb
    y = F.reshape(y, shape=(0, 0, -4, p, p, -2))             # N, c, i, j, Hb, Wb
    y = F.transpose(y, axes=(0, 1, 4, 2, 5, 3))              # N, c, Hb, i, Wb, j
    return F.reshape(y, shape=(0, 0, -3, -3))


def crop_to_dense_output(F, y, x_padded, kernel, strides, p):
    """Crop the p x p blocks y to the dense convolution's output size.

    The size is read off a strided slice of one channel of the padded input x_padded (a symbolic
    graph does not know shapes); blocks start aligned, so the crop is at the far end.
    """
    (kh, kw), (sh, sw) = kernel, strides
    eh, ew = (p - 1) * sh, (p - 1) * sw
    ref = F.slice(F.slice_axis(x_padded, axis=1, begin=0, end=1), begin=(None, None, 0, 0),
                  end=(None, None, -(kh - 1 + eh), -(kw - 1 + ew)), step=(None, None, sh, sw))
    return F.slice_like(y, F.BlockGrad(ref), axes=(2, 3))


class SPNBlock(HybridBlock):
    """Behaviour shared by every SPN layer: phase, freezing of W_b/W_c, parameter groups."""

    def __init__(self, quantizer='twn', phase=Phase.FULL, identity_out=False, fixed_scale=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.quantizer_name = quantizer if isinstance(quantizer, str) else getattr(
            quantizer, '__name__', 'custom')
        self._quantizer = get_quantizer(quantizer)
        self._phase = Phase.parse(phase)
        self._frozen = False
        self._frozen_wc = False
        self._compute_dtype = 'float32'
        self._float32_hidden = False
        # identity_out: W_c is the identity (r = output units) and is neither stored nor applied
        # (the language model's char CNN and quant modes 6/7). fixed_scale: ã stays at 1 (TWN).
        self.identity_out = bool(identity_out)
        self.fixed_scale = bool(fixed_scale)

    # Subclasses list their parameters by role.
    def dense_params(self):
        """Weights of the original dense layer (phase DENSE); biases are shared by all phases."""
        raise NotImplementedError

    def ternary_params(self):
        """W_b and W_c: ternary in the Strassen phase, frozen in the last one."""
        raise NotImplementedError

    def wc_params(self):
        """The W_c among ternary_params() (none where W_c is the identity, identity_out)."""
        raise NotImplementedError

    def scale_params(self):
        """The ã vectors (kept in [0, 100] by clip_scales)."""
        raise NotImplementedError

    def spn_params(self):
        """Trainable full-precision SPN parameters besides W_b and W_c: ã and the SPN BN's β."""
        return [] if self.fixed_scale else self.scale_params()

    def running_stat_params(self):
        """The SPN batch norm's running mean and variance (none without a batch norm)."""
        return []

    def cost(self, in_shapes, out_shape, phase=None, convention='exact'):
        """Multiplications, additions and bits of one call with these shapes, as rows (dicts
        with type, spn, mults, adds, bits, ...; see layers/cost.py and strassen_gluon.counting),
        counted in `phase` (default: the layer's own) with the counting `convention`."""
        phase = self._phase if phase is None else Phase.parse(phase)
        return self.cost_formula(self, in_shapes, out_shape, phase, convention)

    cost_formula = None  # subclasses: a function of layers/cost.py

    @property
    def phase(self):
        return self._phase

    @phase.setter
    def phase(self, value):
        self._phase = Phase.parse(value)
        self._update_grad_req()

    @property
    def compute_dtype(self):
        """'float32' or 'bfloat16': the type of the products (parameters stay float32)."""
        return self._compute_dtype

    @compute_dtype.setter
    def compute_dtype(self, value):
        if value not in ('float32', 'bfloat16'):
            raise ValueError("compute_dtype must be 'float32' or 'bfloat16', not %r" % (value,))
        self._compute_dtype = value
        clear_cached_graph(self)

    @property
    def float32_hidden(self):
        """With compute_dtype 'bfloat16': the batch norm over the r hidden units (W_b's output)
        runs in float32, as a network with float32 activations needs (train/precision.py)."""
        return self._float32_hidden

    @float32_hidden.setter
    def float32_hidden(self, value):
        self._float32_hidden = bool(value)
        clear_cached_graph(self)

    def _hidden(self, F, h):
        """W_b's output as the batch norm takes it (see float32_hidden)."""
        return to_dtype(F, h, 'float32') if self._casts_hidden() else h

    def _from_hidden(self, F, h):
        """The batch norm's output as W_c takes it: back in the compute dtype."""
        return self._compute(F, h) if self._casts_hidden() else h

    def _casts_hidden(self):
        return self._float32_hidden and self._compute_dtype != 'float32'

    def _compute(self, F, x):
        """`x` in the compute dtype (unchanged in float32: the graph stays as it was)."""
        return x if self._compute_dtype == 'float32' else to_dtype(F, x, self._compute_dtype)

    def _in_float32(self, F, x, operation):
        """operation(x) computed in float32 (pad and transpose have no bfloat16 kernel)."""
        return in_float32(F, x, operation, self._compute_dtype)

    @property
    def frozen(self):
        return self._frozen

    @frozen.setter
    def frozen(self, value):
        self._frozen = bool(value)
        self._update_grad_req()

    @property
    def frozen_wc(self):
        """W_c alone kept fixed while W_b trains (see freeze_ternary)."""
        return self._frozen_wc

    @frozen_wc.setter
    def frozen_wc(self, value):
        self._frozen_wc = bool(value)
        self._update_grad_req()

    def _update_grad_req(self):
        spn = self._phase != Phase.DENSE
        for p in self.dense_params():
            p.grad_req = 'null' if spn else 'write'
        held = {id(p) for p in self.wc_params()} if self._frozen_wc else set()
        for p in self.ternary_params():
            trains = spn and not self._frozen and id(p) not in held
            p.grad_req = 'write' if trains else 'null'
        for p in self.scale_params():
            p.grad_req = 'null'  # spn_params() turns it on unless ã is fixed
        for p in self.spn_params():
            p.grad_req = 'write' if spn else 'null'

    def _check_identity_out(self, r, units, out_patch=1):
        if self.identity_out and (r != units or out_patch != 1):
            raise ValueError('identity_out=True needs r equal to the output units (%d) and '
                             'out_patch 1, got r=%d, out_patch=%d' % (units, r, out_patch))

    def bias_params(self):
        """Biases: full precision and used in every phase."""
        return [p for p in own_params(self).values() if p.name.endswith('bias')]

    def _unused_params(self):
        """Short names of the parameters that the current phase's graph does not read."""
        dense = {id(p) for p in self.dense_params()}
        both = {id(p) for p in self.bias_params()}
        if self._phase == Phase.DENSE:
            return [name for name, p in own_params(self).items()
                    if id(p) not in dense and id(p) not in both]
        return [name for name, p in own_params(self).items() if id(p) in dense]

    def _maybe_quantize(self, F, w, ternary, axis=None):
        return fake_quantize(F, w, self._quantizer, axis) if ternary else w


class _SPNWithBatchNorm(SPNBlock):
    """Conv and dense SPNs: a batch norm with fixed γ over the r hidden units, then ã, then W_c."""

    def _add_batchnorm(self, r):
        # β is learned, the running variance starts at 1 (the original started it at 0, SPEC
        # defect 12); γ is fixed at 1, so the graph uses ã in its place (see _scaled_hidden).
        # They are the layer's own parameters rather than an nn.BatchNorm child so that
        # with_shape_anchor can reach them.
        self.bn_eps = BN_EPS
        self.bn_beta = self.params.get('bn_beta', shape=(r,), init='zeros')
        self.bn_mean = self.params.get('bn_mean', shape=(r,), init='zeros', grad_req='null',
                                       differentiable=False)
        self.bn_var = self.params.get('bn_var', shape=(r,), init='ones', grad_req='null',
                                      differentiable=False)

    def ternary_params(self):
        return [self.wb] + self.wc_params()

    def wc_params(self):
        return [] if self.identity_out else [self.wc]

    def scale_params(self):
        return [self.scale]

    def spn_params(self):
        return super().spn_params() + ([self.bn_beta] if self.batch_norm else [])

    def running_stat_params(self):
        return [self.bn_mean, self.bn_var] if self.batch_norm else []

    def _scaled_hidden(self, F, h, params, axis, bias=None):
        """ã ⊙ BN(h) (+ bias) as one batch norm with γ = ã and shift ã ⊙ β (+ bias)."""
        scale = params['scale']
        shift = scale * params['bn_beta']
        if bias is not None:
            shift = shift + bias
        return F.BatchNorm(h, scale, shift, params['bn_mean'], params['bn_var'], eps=BN_EPS,
                           momentum=0.9, fix_gamma=False, axis=axis)


class SPNConv2D(_SPNWithBatchNorm):
    """A 2-D convolution computed by an SPN with r = nbr_mul·channels multiplications per p x p
    output block. Arguments follow `gluon.nn.Conv2D`; in_channels is required.

    Output shape equals that of the dense convolution for any input size: W_b is applied with
    stride p·s to the input padded by `padding` (plus (p-1)·s at the far end, so the last partial
    block is covered), and the surplus of the last block is cropped.
    """

    cost_formula = staticmethod(spn_conv_cost)

    def __init__(self, channels, kernel_size, strides=1, padding=0, in_channels=0,
                 use_bias=True, nbr_mul=None, r=None, out_patch=1, groups=1, quantizer='twn',
                 phase=Phase.FULL, weight_initializer=None, bias_initializer='zeros',
                 spn_initializer=None, **kwargs):
        super().__init__(quantizer=quantizer, phase=phase, **kwargs)
        if not isinstance(channels, int) or channels < 1:
            raise ValueError('channels must be a positive integer, not %r' % (channels,))
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError('in_channels must be a positive integer (SPN layers need it at '
                             'construction), not %r' % (in_channels,))
        self.kernel = _pair(kernel_size, 'kernel_size')
        self.strides = _pair(strides, 'strides')
        self.padding = _pair(padding, 'padding')
        if min(self.kernel) < 1 or min(self.strides) < 1 or min(self.padding) < 0:
            raise ValueError('kernel_size and strides must be >= 1 and padding >= 0, got '
                             'kernel_size=%r strides=%r padding=%r' % (kernel_size, strides, padding))
        if not isinstance(out_patch, int) or out_patch < 1:
            raise ValueError('out_patch must be an integer >= 1, not %r' % (out_patch,))
        if not isinstance(groups, int) or groups < 1 or in_channels % groups:
            raise ValueError('groups=%r must be a positive divisor of in_channels=%d'
                             % (groups, in_channels))
        self.channels, self.in_channels = channels, in_channels
        self.use_bias, self.out_patch, self.groups = use_bias, out_patch, groups
        self.batch_norm = True
        self.r = resolve_rank(channels, nbr_mul, r)
        if self.r % groups:
            raise ValueError('groups=%r must divide the number of multiplications r=%d'
                             % (groups, self.r))
        self._check_identity_out(self.r, channels, out_patch)
        p, (kh, kw), (sh, sw) = out_patch, self.kernel, self.strides
        # W_b's kernel covers the input window of a p x p block of outputs.
        self.kernel_b = ((p - 1) * sh + kh, (p - 1) * sw + kw)
        spn_init = spn_initializer or default_spn_initializer()
        with self.name_scope():
            self.dense_weight = self.params.get(
                'dense_weight', shape=(channels, in_channels, kh, kw), init=weight_initializer)
            self.wb = self.params.get(
                'wb', shape=(self.r, in_channels // groups) + self.kernel_b, init=spn_init)
            self.wc = None if self.identity_out else self.params.get(
                'wc', shape=(p * p * channels, self.r, 1, 1), init=spn_init)
            self.scale = self.params.get('scale', shape=(self.r,), init='ones')
            self.bias = self.params.get('bias', shape=(channels,), init=bias_initializer) \
                if use_bias else None
            self._add_batchnorm(self.r)
        self._update_grad_req()

    def dense_params(self):
        return [self.dense_weight]

    def output_size(self, height, width):
        """Spatial size of the output for an input of height x width (as the dense conv)."""
        out = tuple((n + 2 * pad - k) // s + 1 for n, pad, k, s in
                    zip((height, width), self.padding, self.kernel, self.strides))
        if min(out) < 1:
            raise ValueError('%s: kernel %s with padding %s leaves no output for a %dx%d input'
                             % (self.name, self.kernel, self.padding, height, width))
        return out

    def hybrid_forward(self, F, x, **params):
        if hasattr(x, 'shape'):  # imperative call: the input size is known, check it early
            self.output_size(*x.shape[2:])
        x = self._compute(F, x)
        bias = params.get('bias')
        if self._phase == Phase.DENSE:
            weight = with_shape_anchor(F, params['dense_weight'], params, self._unused_params(), 4)
            return F.Convolution(x, self._compute(F, weight),
                                 None if bias is None else self._compute(F, bias),
                                 kernel=self.kernel, stride=self.strides,
                                 pad=self.padding, num_filter=self.channels,
                                 no_bias=bias is None)
        p = self.out_patch
        wb = self._maybe_quantize(F, params['wb'], self._phase.ternary_b)
        wb = self._compute(F, with_shape_anchor(F, wb, params, self._unused_params(), 4))
        if p == 1:
            # Blocks are single pixels: W_b is the dense convolution's shape with r filters.
            h = F.Convolution(x, wb, kernel=self.kernel, stride=self.strides, pad=self.padding,
                              num_filter=self.r, num_group=self.groups, no_bias=True)
        else:
            (ph, pw), (sh, sw) = self.padding, self.strides
            eh, ew = (p - 1) * sh, (p - 1) * sw
            x = self._in_float32(F, x, lambda t: F.pad(
                t, mode='constant', pad_width=(0, 0, 0, 0, ph, ph + eh, pw, pw + ew)))
            h = F.Convolution(x, wb, kernel=self.kernel_b, stride=(p * sh, p * sw),
                              num_filter=self.r, num_group=self.groups, no_bias=True)
        h = self._hidden(F, h)
        if self.identity_out:
            return self._scaled_hidden(F, h, params, axis=1, bias=bias)
        h = self._from_hidden(F, self._scaled_hidden(F, h, params, axis=1))
        wc = self._compute(F, self._maybe_quantize(F, params['wc'], self._phase.ternary_c))
        if bias is not None:
            bias = self._compute(F, F.repeat(bias, repeats=p * p) if p > 1 else bias)
        y = F.Convolution(h, wc, bias, kernel=(1, 1), num_filter=p * p * self.channels,
                          no_bias=bias is None)
        if p > 1:
            y = self._in_float32(F, y, lambda t: pixel_shuffle(F, t, self.channels, p))
            y = crop_to_dense_output(F, y, x, self.kernel, self.strides, p)
        return y

    def __repr__(self):
        return ('{name}({cin} -> {cout}, kernel={k}, stride={s}, pad={pad}, r={r}, out_patch={p}, '
                'groups={g}, phase={ph})').format(
                    name=self.__class__.__name__, cin=self.in_channels, cout=self.channels,
                    k=self.kernel, s=self.strides, pad=self.padding, r=self.r, p=self.out_patch,
                    g=self.groups, ph=self._phase.name)


class SPNDense(_SPNWithBatchNorm):
    """A fully connected layer computed by an SPN with r = nbr_mul·units multiplications.

    Arguments follow `gluon.nn.Dense` (no activation); in_units is required. `batch_norm=False`
    drops the SPN batch norm after W_b (the language model's TWN mode does).
    """

    cost_formula = staticmethod(spn_dense_cost)

    def __init__(self, units, in_units=0, use_bias=True, flatten=True, nbr_mul=None, r=None,
                 quantizer='twn', phase=Phase.FULL, batch_norm=True, weight_initializer=None,
                 bias_initializer='zeros', spn_initializer=None, **kwargs):
        super().__init__(quantizer=quantizer, phase=phase, **kwargs)
        if not isinstance(units, int) or units < 1:
            raise ValueError('units must be a positive integer, not %r' % (units,))
        if not isinstance(in_units, int) or in_units < 1:
            raise ValueError('in_units must be a positive integer (SPN layers need it at '
                             'construction), not %r' % (in_units,))
        self.units, self.in_units, self.use_bias, self.flatten = units, in_units, use_bias, flatten
        self.batch_norm = bool(batch_norm)
        self.r = resolve_rank(units, nbr_mul, r)
        self._check_identity_out(self.r, units)
        spn_init = spn_initializer or default_spn_initializer()
        with self.name_scope():
            self.dense_weight = self.params.get('dense_weight', shape=(units, in_units),
                                                init=weight_initializer)
            self.wb = self.params.get('wb', shape=(self.r, in_units), init=spn_init)
            self.wc = None if self.identity_out else self.params.get(
                'wc', shape=(units, self.r), init=spn_init)
            self.scale = self.params.get('scale', shape=(self.r,), init='ones')
            self.bias = self.params.get('bias', shape=(units,), init=bias_initializer) \
                if use_bias else None
            if self.batch_norm:
                self._add_batchnorm(self.r)
        self._update_grad_req()

    def dense_params(self):
        return [self.dense_weight]

    def hybrid_forward(self, F, x, **params):
        bias = params.get('bias')
        late_bias = None
        if self._frozen and self._phase != Phase.DENSE and bias is not None:
            # MXNet 1.9's MKLDNN FullyConnected skips the bias gradient when its weight needs
            # none (frozen W_b/W_c): the bias would keep a stale gradient. Add it after the
            # product instead, where autograd always reaches it.
            bias, late_bias = None, bias
        out = self._forward(F, self._compute(F, x), bias, params)
        return out if late_bias is None else F.broadcast_add(out, self._compute(F, late_bias))

    def _forward(self, F, x, bias, params):
        # The weights are cast to the compute dtype just before their product (after the
        # quantizer and the folding of ã); a bias into the batch norm stays float32.
        fc_bias = None if bias is None else self._compute(F, bias)
        if self._phase == Phase.DENSE:
            weight = with_shape_anchor(F, params['dense_weight'], params, self._unused_params(), 2)
            return F.FullyConnected(x, self._compute(F, weight), fc_bias, num_hidden=self.units,
                                    flatten=self.flatten, no_bias=bias is None)
        wb = self._maybe_quantize(F, params['wb'], self._phase.ternary_b)
        wb = with_shape_anchor(F, wb, params, self._unused_params(), 2)
        wc = None if self.identity_out else self._maybe_quantize(F, params['wc'],
                                                                   self._phase.ternary_c)
        scale = params['scale']
        if not self.batch_norm:
            # ã folds into the smaller of W_b (r x in) and W_c (units x r); W_c = I: into W_b.
            if wc is None or self.in_units <= self.units:
                wb = F.broadcast_mul(wb, F.reshape(scale, (-1, 1)))
            else:
                wc = F.broadcast_mul(wc, F.reshape(scale, (1, -1)))
            if wc is None:
                return F.FullyConnected(x, self._compute(F, wb), fc_bias, num_hidden=self.units,
                                        flatten=self.flatten, no_bias=bias is None)
            h = F.FullyConnected(x, self._compute(F, wb), num_hidden=self.r,
                                 flatten=self.flatten, no_bias=True)
        else:
            h = F.FullyConnected(x, self._compute(F, wb), num_hidden=self.r,
                                 flatten=self.flatten, no_bias=True)
            h = self._hidden(F, h)
            if wc is None:
                return self._scaled_hidden(F, h, params, axis=-1, bias=bias)
            h = self._from_hidden(F, self._scaled_hidden(F, h, params, axis=-1))
        return F.FullyConnected(h, self._compute(F, wc), fc_bias, num_hidden=self.units,
                                flatten=False, no_bias=bias is None)

    def __repr__(self):
        return '{}({} -> {}, r={}{}, phase={})'.format(
            self.__class__.__name__, self.in_units, self.units, self.r,
            ', W_c = I' if self.identity_out else '', self._phase.name)


# ---------------------------------------------------------------------------------------------
# Whole-model operations. They walk blocks by type, never by parameter name.

def spn_layers(net):
    """Every SPN layer inside `net` (depth first), `net` itself included."""
    found = []
    net.apply(lambda block: found.append(block) if isinstance(block, SPNBlock) else None)
    return found


def _clear_cached_graphs(net):
    # A hybridized block caches its graph, which depends on the phase: drop every cache.
    net.apply(clear_cached_graph)


def set_phase(net, phase):
    """Switch every SPN layer of `net` to `phase` (a Phase, its number or name) in place."""
    phase = Phase.parse(phase)
    for layer in spn_layers(net):
        layer.phase = phase
    _clear_cached_graphs(net)


def freeze_ternary(net, frozen=True, frozen_wc=False):
    """Stop (or resume) training W_b and W_c (`frozen`), or W_c alone (`frozen_wc`); the forward
    pass keeps quantizing them."""
    for layer in spn_layers(net):
        layer.frozen = frozen
        layer.frozen_wc = frozen_wc
    _clear_cached_graphs(net)


def clip_scales(net, low=0.0, high=SCALE_MAX):
    """Project every ã back into [low, high]; call after each optimizer step (no host sync)."""
    for layer in spn_layers(net):
        for param in layer.scale_params():
            for data in param.list_data():
                data.clip(low, high, out=data)
