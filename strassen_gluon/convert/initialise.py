"""Initialising SPN layers from the dense weights they keep (`dense_params()`).

One function, :func:`init_from_dense`, serves every path (strassenize, transfer from a trained
dense twin, gluoncv weights). For a layer computing y = M·(input window), it chooses W_b, ã, W_c:

* exact, with W_c the identity: p = 1 and r >= c_out for a convolution (each output channel's
  weights fit in one W_b group), r >= out for a dense layer or an LSTM gate matrix: W_b holds the
  dense weights, W_c = I; for a dense layer with in <= r < out, W_b = I and W_c holds the weights.
  Then the SPN is the dense layer followed by a per-channel affine map (its batch norm), so a
  network batch norm after it makes the pair exact in training mode too;
* otherwise the best rank-r approximation of the block operator M (p²·c_out x (c_in/g)·k_b²,
  from a W_b input window to the p x p output block; one block per W_b group) by truncated SVD:
  M ≈ U Σ Vᵀ, W_c = U, ã = σ, W_b = Vᵀ. Its relative (Frobenius) error is reported.

In the exact convolution case (p = 1, W_c placing each output channel) the rows of W_b are
rescaled to their common mean |w|, ã taking the inverse (:func:`_balance_rows`): TWN has one
threshold per tensor. Rescaling every row to mean |w| = 1 instead was tried first: it kept more of
the small rows right after quantisation (55.0% against 52.8% on a converted ST-ResNet-20) but the
ternary fine-tune then went to 53.9% against 63.8% (the larger latent weights presumably move too
little at the same rate). Other factorisations keep W_b's rows as they come.

Hidden units left over (r larger than needed) get small random W_b rows and zero W_c columns:
they change nothing at the start but receive gradients, so fine-tuning can use them.

ã is applied as the SPN batch norm's γ (layers/spn.py). The batch norm is set so that it passes
its input through: with calibration statistics μ, σ² of the hidden units h = W_b * x (from a
batch), running mean/var = μ/σ², ã = a·sqrt(σ² + eps), β = μ/sqrt(σ² + eps); then inference
mode computes a ⊙ h for any input, and training mode does too on a batch with those statistics.
Without calibration the running variance is set to 1 - eps and the mean to 0 (inference mode
exact; training-mode batch statistics rescale each hidden unit).
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
from mxnet import autograd, nd

from ..config import Phase
from ..layers import SPNConv2D, SPNDense, SPNLSTM, set_phase, spn_layers
from ..layers.spn import SCALE_MAX
from .batchnorm import ChannelStats, norm_axis, running_stats, set_data, set_passthrough_norm
from .walk import ConversionError, imperative_uncached, param_state

_EXTRA_SEED = 12345


@dataclass
class LayerInit:
    """How one layer was initialised: exact factorisation or truncated SVD with this
    relative error of its block operator (0 when exact)."""
    name: str
    kind: str
    rank: int
    exact: bool
    relative_error: float
    calibrated: bool


@dataclass
class _Factors:
    wb: np.ndarray
    wc: Optional[np.ndarray]
    a: np.ndarray            # per hidden unit: the scale ã would have with a neutral batch norm
    exact: bool
    relative_error: float


# ------------------------------------------------------------------ block operators

def conv_block_operator(weight, strides, out_patch):
    """The map from a W_b input window to a p x p block of outputs of the convolution with
    `weight` (c_out, c_in, kh, kw): (p²·c_out, c_in·kbh·kbw), rows c·p² + i·p + j (W_c's order),
    columns (c, u, v) of the window of size kb = (p-1)·s + k."""
    c_out, c_in, kh, kw = weight.shape
    (sh, sw), p = strides, out_patch
    kbh, kbw = (p - 1) * sh + kh, (p - 1) * sw + kw
    m = np.zeros((c_out, p, p, c_in, kbh, kbw))
    for i in range(p):
        for j in range(p):
            m[:, i, j, :, i * sh:i * sh + kh, j * sw:j * sw + kw] = weight
    return m.reshape(p * p * c_out, c_in * kbh * kbw)


def _truncated_svd(m, rank):
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    total = float(np.sum(s ** 2))
    return u[:, :rank], s[:rank], vt[:rank], float(np.sum(s[rank:] ** 2)), total


def _extra_rows(count, width, like, rng):
    scale = float(np.sqrt(np.mean(like ** 2))) if like.size and np.any(like) else 1.0
    return rng.standard_normal((count, width)) * scale


def _low_rank(m, rank, rng):
    """W_c (rows x rank), a (rank), W_b (rank x cols) for the best rank-`rank` approximation
    of m, padded with extra units; and (discarded energy, total energy)."""
    u, s, vt, lost, total = _truncated_svd(m, rank)
    k = len(s)
    wc = np.zeros((m.shape[0], rank))
    wc[:, :k] = u
    wb = np.zeros((rank, m.shape[1]))
    wb[:k] = vt
    if rank > k:
        wb[k:] = _extra_rows(rank - k, m.shape[1], vt, rng)
    a = np.ones(rank)
    a[:k] = s
    return wc, a, wb, lost, total


def _factor_matrix(w, rank, rng, identity_out=False):
    """A dense matrix w (out x in) as W_c diag(a) W_b with `rank` hidden units."""
    n_out, n_in = w.shape
    if identity_out:
        return _Factors(w.copy(), None, np.ones(rank), True, 0.0)
    if rank >= n_out:
        wb = np.vstack([w, _extra_rows(rank - n_out, n_in, w, rng)])
        wc = np.zeros((n_out, rank))
        wc[:, :n_out] = np.eye(n_out)
        return _Factors(wb, wc, np.ones(rank), True, 0.0)
    if rank >= n_in:
        wb = np.vstack([np.eye(n_in), _extra_rows(rank - n_in, n_in, np.eye(n_in), rng)])
        wc = np.zeros((n_out, rank))
        wc[:, :n_in] = w
        return _Factors(wb, wc, np.ones(rank), True, 0.0)
    wc, a, wb, lost, total = _low_rank(w, rank, rng)
    return _Factors(wb, wc, a, lost <= 1e-12 * total, _ratio(lost, total))


def _ratio(lost, total):
    return float(np.sqrt(lost / total)) if total > 0 else 0.0


def _factor_conv(layer, weight, rng):
    """Factors of an SPNConv2D for the (c_out, c_in, kh, kw) dense weight."""
    r, g, p = layer.r, layer.groups, layer.out_patch
    c_out, c_in = weight.shape[:2]
    per_group_in, per_group_r = c_in // g, r // g
    kbh, kbw = layer.kernel_b
    if layer.identity_out:
        # r = c_out, p = 1: W_b is the dense weight itself (within W_b's groups).
        wb = weight if g == 1 else _identity_out_grouped(weight, g)
        lost = float(np.sum(weight ** 2) - np.sum(wb ** 2))
        total = float(np.sum(weight ** 2))
        return _Factors(wb, None, np.ones(r), lost <= 1e-12 * total, _ratio(lost, total))
    # Which W_b group each output channel reads (None: more than one group).
    support = np.abs(weight).sum(axis=(2, 3)).reshape(c_out, g, per_group_in) > 0
    reads = [np.flatnonzero(row.any(axis=1)) for row in support]
    if p == 1 and all(len(groups) <= 1 for groups in reads):
        owner = [int(groups[0]) if len(groups) else None for groups in reads]
        slots = [[] for _ in range(g)]
        for o, group in enumerate(owner):
            if group is not None:
                slots[group].append(o)
        for o, group in enumerate(owner):  # all-zero outputs go where there is room
            if group is None:
                min(slots, key=len).append(o)
        if all(len(s) <= per_group_r for s in slots):
            return _identity_conv(layer, weight, slots, rng)
    m = conv_block_operator(weight, layer.strides, p)
    window = per_group_in * kbh * kbw
    wb = np.zeros((r, window))
    wc = np.zeros((p * p * c_out, r))
    a = np.ones(r)
    lost = total = 0.0
    for group in range(g):
        cols = slice(group * window, (group + 1) * window)
        hidden = slice(group * per_group_r, (group + 1) * per_group_r)
        wc[:, hidden], a[hidden], wb[hidden], lost_g, total_g = _low_rank(m[:, cols],
                                                                          per_group_r, rng)
        lost, total = lost + lost_g, total + total_g
    return _Factors(wb.reshape(r, per_group_in, kbh, kbw), wc.reshape(p * p * c_out, r, 1, 1), a,
                    lost <= 1e-12 * total, _ratio(lost, total))


def _identity_out_grouped(weight, g):
    c_out, c_in, kh, kw = weight.shape
    per_out, per_in = c_out // g, c_in // g
    return np.stack([weight[o, (o // per_out) * per_in:(o // per_out + 1) * per_in]
                     for o in range(c_out)])


def _identity_conv(layer, weight, slots, rng):
    r, g = layer.r, layer.groups
    c_out, c_in, kh, kw = weight.shape
    per_in, per_r = c_in // g, r // g
    wb = np.zeros((r, per_in, kh, kw))
    wc = np.zeros((c_out, r, 1, 1))
    used = np.zeros(r, dtype=bool)
    for group, outputs in enumerate(slots):
        for t, o in enumerate(outputs):
            j = group * per_r + t
            wb[j] = weight[o, group * per_in:(group + 1) * per_in]
            wc[o, j] = 1.0
            used[j] = True
    a = np.ones(r)
    if not layer.fixed_scale:
        a[used] = 1.0 / _balance_rows(wb, used)
    if not used.all():
        wb[~used] = _extra_rows(int((~used).sum()), per_in * kh * kw,
                                wb[used].reshape(int(used.sum()), -1), rng).reshape(
                                    -1, per_in, kh, kw)
    return _Factors(wb, wc, a, True, 0.0)


def _balance_rows(wb, rows):
    """Scale each of W_b's `rows` (in place) to their common mean |w|; returns the factors.

    TWN has one threshold per tensor, so the rows of a dense layer's small filters would
    ternarize to (nearly) all zeros; ã takes the inverse factor, so the network is unchanged in
    full precision, and the tensor keeps its overall size (rows rescaled to mean |w| = 1 trained
    worse: the module docstring). Measured on a converted ST-ResNet-20 (91.0% dense), all layers
    ternary, batch norms recalibrated: 73.4% with balanced rows against 66.6% without.
    """
    flat = np.abs(wb[rows].reshape(int(rows.sum()), -1)).mean(axis=1)
    target = flat[flat > 0].mean() if np.any(flat > 0) else 1.0
    factors = np.where(flat > 0, target / np.where(flat > 0, flat, 1.0), 1.0)
    wb[rows] *= factors.reshape((-1,) + (1,) * (wb.ndim - 1))
    return factors


# ------------------------------------------------------------------ hidden-unit statistics

def spn_hidden(layer, x):
    """h = W_b * x of an SPN conv or dense layer (full precision), as the layer computes it."""
    wb = layer.wb.data(x.context)
    if isinstance(layer, SPNDense):
        return nd.FullyConnected(x, wb, num_hidden=layer.r, flatten=layer.flatten, no_bias=True)
    p = layer.out_patch
    if p == 1:
        return nd.Convolution(x, wb, kernel=layer.kernel, stride=layer.strides,
                              pad=layer.padding, num_filter=layer.r, num_group=layer.groups,
                              no_bias=True)
    (ph, pw), (sh, sw) = layer.padding, layer.strides
    x = nd.pad(x, mode='constant',
               pad_width=(0, 0, 0, 0, ph, ph + (p - 1) * sh, pw, pw + (p - 1) * sw))
    return nd.Convolution(x, wb, kernel=layer.kernel_b, stride=(p * sh, p * sw),
                          num_filter=layer.r, num_group=layer.groups, no_bias=True)


# ------------------------------------------------------------------ writing the layer

def _place_shift(factors, shift, layer):
    """The hidden-unit shift c with W_c (a ⊙ c) = the output shift (least squares)."""
    r = layer.r
    if shift is None:
        return np.zeros(r)
    p = getattr(layer, 'out_patch', 1)
    target = np.repeat(np.asarray(shift, dtype=np.float64), p * p)
    wc = np.eye(r) if factors.wc is None else factors.wc.reshape(len(target), r)
    z = np.linalg.lstsq(wc * factors.a[None, :], target, rcond=None)[0]
    return z


def _write(layer, factors, stats, shift):
    """Store W_b, W_c and the batch norm so that the layer computes W_c (a ⊙ (W_b x + c))."""
    wc = factors.wc
    c = _place_shift(factors, shift, layer)
    a = factors.a
    if not layer.fixed_scale and a.max() > SCALE_MAX / 2:
        # ã is clipped to [0, SCALE_MAX] in training: move the magnitude into W_c.
        if wc is None:
            raise ConversionError('%s: a scale of %.3g does not fit ã <= %g with W_c = I'
                                  % (layer.name, a.max(), SCALE_MAX))
        t = a.max() / (SCALE_MAX / 4)
        a, wc = a / t, wc * t
    set_data(layer.wb, factors.wb)
    if wc is not None:
        set_data(layer.wc, wc.reshape(layer.wc.shape))
    if not getattr(layer, 'batch_norm', False):
        if np.any(c):
            raise ConversionError('%s: an output shift cannot be placed in a layer without '
                                  'bias or batch norm' % layer.name)
        set_data(layer.scale, a)
        return
    eps = layer.bn_eps
    if stats is None:
        mean, var = np.zeros(layer.r), np.full(layer.r, 1.0 - eps)
    else:
        mean, var = stats.mean, stats.var
    if layer.fixed_scale:
        # ã stays 1: only the running statistics can make the batch norm the identity (in
        # inference mode; training-mode batch statistics normalise h).
        if not np.allclose(a, 1.0):
            raise ConversionError('%s: ã is fixed at 1 but the factorisation needs %s'
                                  % (layer.name, a))
        var = np.full(layer.r, 1.0 - eps)
    std = np.sqrt(var + eps)
    set_data(layer.scale, a * std)
    set_data(layer.bn_beta, (mean + c) / std)
    set_data(layer.bn_mean, mean)
    set_data(layer.bn_var, var)


def factorize(layer, output_scale=None):
    """The factors of an SPNConv2D or SPNDense from its dense weight (optionally with each
    output channel scaled by `output_scale`)."""
    weight = layer.dense_weight.data().asnumpy().astype(np.float64)
    if output_scale is not None:
        weight = weight * np.asarray(output_scale).reshape((-1,) + (1,) * (weight.ndim - 1))
    rng = np.random.RandomState(_EXTRA_SEED)
    if isinstance(layer, SPNConv2D):
        return _factor_conv(layer, weight, rng)
    factors = _factor_matrix(weight, layer.r, rng, layer.identity_out)
    return factors


def _lstm_init(layer):
    """Every gate matrix of an SPNLSTM from its stacked dense weights (no batch norm)."""
    worst, exact = 0.0, True
    rng = np.random.RandomState(_EXTRA_SEED)
    h = layer.hidden_size
    for dense, wb, scale, wc in _lstm_groups(layer):
        weight = dense.data().asnumpy().astype(np.float64)
        wbs, wcs, scales = [], [], []
        for gate in range(weight.shape[0] // h):
            f = _factor_matrix(weight[gate * h:(gate + 1) * h], layer.r, rng, layer.identity_out)
            a = f.a
            wc_gate = f.wc
            if wc_gate is not None and a.max() > SCALE_MAX / 2:
                t = a.max() / (SCALE_MAX / 4)
                a, wc_gate = a / t, wc_gate * t
            wbs.append(f.wb)
            wcs.append(wc_gate)
            scales.append(a)
            exact = exact and f.exact
            worst = max(worst, f.relative_error)
        set_data(wb, np.stack(wbs))
        set_data(scale, np.stack(scales))
        if wc is not None:
            set_data(wc, np.stack(wcs))
    return exact, worst


def _lstm_groups(layer):
    groups = []
    for lay in range(layer.num_layers):
        for kind in ('i2h', 'h2h'):
            prefix = 'l%d_%s_' % (lay, kind)
            groups.append((getattr(layer, prefix + 'dense_weight'), getattr(layer, prefix + 'wb'),
                           getattr(layer, prefix + 'scale'), getattr(layer, prefix + 'wc', None)))
    return groups


def init_from_dense(layer, calibration_input=None, output_affine=None, name=None):
    """Initialise one SPN layer (SPNConv2D, SPNDense, SPNLSTM) from its dense weights.

    calibration_input: a batch of this layer's inputs (NDArray); its hidden-unit statistics set
    the SPN batch norm so that it passes its input through (see the module docstring).
    output_affine: (scale, shift) per output channel applied after the dense layer (e.g. a
    following batch norm folded in); the SPN then computes scale·dense(x) + shift.
    Returns a LayerInit. Phase.DENSE is untouched: the dense weights stay as they are.
    """
    if param_state(layer.dense_weight if not isinstance(layer, SPNLSTM)
                   else layer.dense_params()[0]) != 'ready':
        raise ConversionError('%s: its dense weights are not initialised' % layer.name)
    label = name or layer.name
    if isinstance(layer, SPNLSTM):
        if output_affine is not None:
            raise ConversionError('%s: an output affine map cannot be folded into an LSTM'
                                  % label)
        exact, error = _lstm_init(layer)
        return LayerInit(label, 'lstm', layer.r, exact, error, False)
    factors, shift = _prepare(layer, output_affine)
    stats = None
    if calibration_input is not None:
        _write(layer, factors, None, shift)
        stats = ChannelStats()
        stats.add(spn_hidden(layer, calibration_input), axis=1 if isinstance(
            layer, SPNConv2D) else -1)
    _write(layer, factors, stats, shift)
    return LayerInit(label, 'conv' if isinstance(layer, SPNConv2D) else 'dense', layer.r,
                     factors.exact, factors.relative_error, stats is not None)


def _prepare(layer, output_affine):
    if output_affine is None:
        return factorize(layer), None
    scale, shift = (np.asarray(v, dtype=np.float64) for v in output_affine)
    factors = factorize(layer, scale)
    if layer.bias is not None:
        bias = layer.bias.data().asnumpy().astype(np.float64)
        set_data(layer.bias, scale * bias + shift)
        shift = None
    return factors, shift


def init_spn_from_dense(net, calibration=None, layers=None, names=None, output_affines=None,
                        passthrough_norms=()):
    """Initialise the SPN layers of `net` (all, or `layers`) from their dense weights.

    calibration: a batch of the network's inputs (an NDArray or a tuple of them). It is run once
    through the network, imperatively, in inference mode, with the SPN layers in Phase.FULL
    (their approximation of the dense layers), and each SPN layer's hidden-unit statistics on
    its actual input set its batch norm. `passthrough_norms`: nn.BatchNorm layers to set so that
    they pass their input through (also from the calibration batch). Returns a list of LayerInit.
    """
    layers = list(spn_layers(net) if layers is None else layers)
    names = names or {}
    output_affines = output_affines or {}
    prepared = {}
    reports = []
    for layer in layers:
        label = names.get(id(layer), layer.name)
        if isinstance(layer, SPNLSTM):
            reports.append(init_from_dense(layer, name=label))
            continue
        factors, shift = _prepare(layer, output_affines.get(id(layer)))
        _write(layer, factors, None, shift)   # a neutral batch norm first
        prepared[id(layer)] = (layer, factors, shift, label)
    for norm in passthrough_norms:
        set_passthrough_norm(norm, None)
    calibrated = set()
    if calibration is not None and (prepared or passthrough_norms):
        calibrated = _calibrate(net, prepared, list(passthrough_norms), calibration)
    for key, (layer, factors, shift, label) in prepared.items():
        reports.append(LayerInit(label, 'conv' if isinstance(layer, SPNConv2D) else 'dense',
                                 layer.r, factors.exact, factors.relative_error,
                                 key in calibrated))
    return reports


def _calibrate(net, prepared, norms, calibration):
    """Set each SPN batch norm (and each pass-through norm) from the statistics of its hidden
    units (its input) on `calibration`, in one training-mode pass (the statistics fine-tuning
    starts from). Each layer's output in the pass is replaced by its final, pass-through
    inference output, so downstream layers see what the converted network computes. The
    running statistics of the network's other batch norms are restored afterwards.
    Returns the ids of the blocks calibrated."""
    inputs = tuple(calibration) if isinstance(calibration, (tuple, list)) else (calibration,)
    layers = [entry[0] for entry in prepared.values()]
    phases = {id(layer): layer.phase for layer in layers}
    calibrated = set()
    inner = []   # the block whose pass-through output is being computed (no hook then)

    def replace_output(block, x, output):
        inner.append(block)
        try:
            with autograd.predict_mode():
                output[:] = block(x)
        finally:
            inner.pop()

    def spn_hook(block, args, output):
        if inner:
            return
        layer, factors, shift, _ = prepared[id(block)]
        stats = ChannelStats()
        stats.add(spn_hidden(layer, args[0]), axis=1 if isinstance(layer, SPNConv2D) else -1)
        _write(layer, factors, stats, shift)
        calibrated.add(id(block))
        replace_output(block, args[0], output)

    def norm_hook(block, args, output):
        if inner:
            return
        stats = ChannelStats()
        stats.add(args[0], axis=norm_axis(block))
        set_passthrough_norm(block, stats)
        calibrated.add(id(block))
        output[:] = args[0]

    saved = running_stats(net, exclude={id(b) for b in norms})
    handles = [b.register_forward_hook(spn_hook) for b in layers]
    handles += [b.register_forward_hook(norm_hook) for b in norms]
    for layer in layers:
        set_phase(layer, Phase.FULL)
    try:
        with imperative_uncached(net), autograd.train_mode():
            net(*inputs)
    finally:
        for handle in handles:
            handle.detach()
        for layer in layers:
            set_phase(layer, phases[id(layer)])
        for param, value in saved:
            param.set_data(value)
    return calibrated
