"""Deployment form of trained SPN layers, and a plain numpy evaluator of that form.

After training, a Strassen layer is "ternary conv -> r multiplications -> ternary transposed conv":

    z = conv(x, W_b)                 W_b in {-1, 0, 1}, additions only
    h = scale ⊙ z                    the r multiplications per output block
    y = tconv(h, W_c) + bias         W_c in {-1, 0, 1}, additions only

Every scale of the training graph folds into `scale` and `bias`: the TWN scales α_b and α_c, the
SPN batch norm's running statistics and β, and ã. Writing BN(h) = h/σ + (β - μ/σ) with
σ = sqrt(var + eps):

    scale = α_c · ã · α_b / σ                     (one multiplier per hidden channel, length r)
    bias  = b + W_c · (α_c · ã · (β - μ/σ))        (per output channel and block position)

The bias term passes through W_c once at export time, so inference needs no extra multiplication.
The numpy functions below evaluate exactly this form; tests hold every exported layer to the
Gluon layer's inference output.
"""
import numpy as np
from mxnet import nd

from ..config import Phase
from ..errors import PhaseError
from ..files import atomic_path
from ..layers.spn import SPNConv2D, SPNDense, spn_layers
from ..layers.spn_lstm import KINDS, SPNLSTM
from .packing import pack_arrays, unpack_arrays


def _ternary(layer, param, axis=None):
    levels, alpha = layer._quantizer(nd, param.data(), axis)
    return levels.asnumpy().astype(np.int8), alpha.asnumpy().astype(np.float64)


def _identity_or_ternary(layer, param, r):
    """W_c as exact ternary integers with its scale; the identity for identity_out layers."""
    if layer.identity_out:
        return np.eye(r, dtype=np.int8), np.ones(1)
    return _ternary(layer, param)


def _bn_affine(layer):
    """(1/σ, β - μ/σ) of the layer's SPN batch norm in inference mode; identity without one."""
    if not layer.batch_norm:
        return np.ones(layer.r), np.zeros(layer.r)
    inv_std = 1.0 / np.sqrt(layer.bn_var.data().asnumpy().astype(np.float64) + layer.bn_eps)
    mean = layer.bn_mean.data().asnumpy().astype(np.float64)
    beta = layer.bn_beta.data().asnumpy().astype(np.float64)
    return inv_std, beta - mean * inv_std


def _require_ternary(layer):
    if layer.phase != Phase.TERNARY:
        raise PhaseError('%s is in phase %s; only a layer with ternary W_b and W_c (phase '
                         'TERNARY) has a deployment form' % (layer.name, layer.phase.name))


def export_conv(layer):
    """Deployment form of an SPNConv2D as a dict of numpy arrays and its geometry.

    wb: int8 (r, c_in/g, K_b, K_b); wc: int8 (r, c_out, p, p), the transposed convolution's
    layout; scale: float32 (r,); bias: float32 (c_out, p, p).
    """
    _require_ternary(layer)
    p, r, c_out = layer.out_patch, layer.r, layer.channels
    wb, alpha_b = _ternary(layer, layer.wb)
    wc, alpha_c = _identity_or_ternary(layer, layer.wc, r)
    wc = wc.reshape(p * p * c_out, r)  # row c·p² + i·p + j: channel c, block position (i, j)
    inv_std, shift = _bn_affine(layer)
    a = layer.scale.data().asnumpy().astype(np.float64)
    scale = alpha_c.item() * a * alpha_b.item() * inv_std
    hidden_shift = alpha_c.item() * a * shift
    bias = (wc @ hidden_shift).reshape(c_out, p, p)
    out_bias = np.zeros(c_out)
    if layer.bias is not None:
        out_bias = layer.bias.data().asnumpy().astype(np.float64)
        bias = bias + out_bias[:, None, None]
    # shift and out_bias: the bias split before and after W_c (bias = W_c·shift + out_bias), for
    # graphs that add it per hidden channel rather than per output position.
    return {'kind': 'conv', 'wb': wb,
            'wc': np.ascontiguousarray(wc.reshape(c_out, p, p, r).transpose(3, 0, 1, 2)),
            'scale': scale.astype(np.float32), 'bias': bias.astype(np.float32),
            'shift': hidden_shift.astype(np.float32), 'out_bias': out_bias.astype(np.float32),
            'identity_out': layer.identity_out,
            'kernel': layer.kernel, 'strides': layer.strides, 'padding': layer.padding,
            'out_patch': p, 'groups': layer.groups}


def export_dense(layer):
    """Deployment form of an SPNDense: wb int8 (r, in), wc int8 (units, r), scale (r,), bias."""
    _require_ternary(layer)
    wb, alpha_b = _ternary(layer, layer.wb)
    wc, alpha_c = _identity_or_ternary(layer, layer.wc, layer.r)
    inv_std, shift = _bn_affine(layer)
    a = layer.scale.data().asnumpy().astype(np.float64)
    scale = alpha_c.item() * a * alpha_b.item() * inv_std
    hidden_shift = alpha_c.item() * a * shift
    bias = wc @ hidden_shift
    out_bias = np.zeros(wc.shape[0])
    if layer.bias is not None:
        out_bias = layer.bias.data().asnumpy().astype(np.float64)
        bias = bias + out_bias
    return {'kind': 'dense', 'wb': wb, 'wc': wc, 'scale': scale.astype(np.float32),
            'bias': bias.astype(np.float32), 'shift': hidden_shift.astype(np.float32),
            'out_bias': out_bias.astype(np.float32), 'identity_out': layer.identity_out,
            'flatten': layer.flatten}


def export_lstm(layer):
    """Deployment form of an SPNLSTM: per layer and i2h/h2h, the 4 gates' wb int8 (4, r, in),
    wc int8 (4, units, r), scale (4, r) and the full-precision bias (4·units,)."""
    _require_ternary(layer)
    matrices = []
    for index in range(layer.num_layers):
        entry = {}
        for kind in KINDS:
            prefix = 'l%d_%s_' % (index, kind)
            wb, alpha_b = _ternary(layer, getattr(layer, prefix + 'wb'), axis=(1, 2))
            if layer.identity_out:
                wc = np.broadcast_to(np.eye(layer.r, dtype=np.int8), (4, layer.r, layer.r))
                alpha_c = np.ones((4, 1, 1))
            else:
                wc, alpha_c = _ternary(layer, getattr(layer, prefix + 'wc'), axis=(1, 2))
            a = getattr(layer, prefix + 'scale').data().asnumpy().astype(np.float64)
            entry[kind] = {'wb': wb, 'wc': wc,
                           'scale': (alpha_c.reshape(4, 1) * a * alpha_b.reshape(4, 1)
                                     ).astype(np.float32),
                           'bias': getattr(layer, prefix + 'bias').data().asnumpy()}
        matrices.append(entry)
    return {'kind': 'lstm', 'layers': matrices, 'hidden_size': layer.hidden_size}


_EXPORTERS = {SPNConv2D: export_conv, SPNDense: export_dense, SPNLSTM: export_lstm}


def export_layer(layer):
    for cls, exporter in _EXPORTERS.items():
        if isinstance(layer, cls):
            return exporter(layer)
    raise TypeError('no deployment form for %s' % type(layer).__name__)


def export_model(net):
    """{layer name: deployment form} for every SPN layer of a model in phase TERNARY."""
    return {layer.name: export_layer(layer) for layer in spn_layers(net)}


def flatten_forms(exported):
    """export_model's result as {'layer/field': array} (nested fields 'layer/layers/0/i2h/wb')."""
    flat = {}

    def put(prefix, value):
        if isinstance(value, dict):
            for key, item in value.items():
                put('%s/%s' % (prefix, key), item)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                put('%s/%d' % (prefix, i), item)
        else:
            flat[prefix] = np.asarray(value)
    for name, form in exported.items():
        put(name, form)
    return flat


def unflatten_forms(flat):
    """The inverse of flatten_forms: nested dicts, lists where every key is a number, 0-d arrays
    as Python scalars (kind, flags, sizes); the rest stay arrays."""
    tree = {}
    for key, value in flat.items():
        node, parts = tree, key.split('/')
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        value = np.asarray(value)
        node[parts[-1]] = value.item() if value.ndim == 0 else value

    def lists(node):
        if not isinstance(node, dict):
            return node
        if node and all(k.isdigit() for k in node):
            return [lists(node[k]) for k in sorted(node, key=int)]
        return {k: lists(v) for k, v in node.items()}
    return lists(tree)


def save_exported(path, exported, packed=False):
    """Save export_model's result as one .npz (arrays keyed 'layer/field'; geometry as arrays)
    at exactly `path` (no '.npz' appended), atomically. packed=True stores W_b and W_c at 2 bits
    per weight (see packing)."""
    flat = flatten_forms(exported)
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        np.savez_compressed(f, **(pack_arrays(flat) if packed else flat))


def load_exported(path):
    """export_model's result back from save_exported's .npz, packed or not, for the numpy
    evaluators below (W_b and W_c as int8)."""
    with np.load(path) as arrays:
        flat = {key: arrays[key] for key in arrays.files}
    return unflatten_forms(unpack_arrays(flat))


# ---------------------------------------------------------------------------------------------
# Plain numpy evaluation of the deployment form (float64, for reference and tests).

def conv2d_reference(x, weight, strides, pad_begin, pad_end, groups=1):
    """Cross-correlation of x (N, C, H, W) with weight (F, C/g, kh, kw), zero padding per side."""
    x = np.pad(x, ((0, 0), (0, 0), (pad_begin[0], pad_end[0]), (pad_begin[1], pad_end[1])))
    kh, kw = weight.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::strides[0], ::strides[1]]  # (N, C, Ho, Wo, kh, kw)
    n, c, ho, wo = windows.shape[:4]
    windows = windows.reshape(n, groups, c // groups, ho, wo, kh, kw)
    weight = weight.reshape(groups, -1, c // groups, kh, kw).astype(np.float64)
    out = np.einsum('ngchwuv,gfcuv->ngfhw', windows, weight)
    return out.reshape(n, -1, ho, wo)


def spn_conv_reference(x, form):
    """Evaluate an exported SPN convolution on x (N, C, H, W) with numpy."""
    (kh, kw), (sh, sw), (ph, pw) = form['kernel'], form['strides'], form['padding']
    p = form['out_patch']
    out_h, out_w = (x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1
    z = conv2d_reference(x.astype(np.float64), form['wb'], (p * sh, p * sw), (ph, pw),
                         (ph + (p - 1) * sh, pw + (p - 1) * sw), form['groups'])
    h = z * form['scale'].astype(np.float64)[None, :, None, None]
    # Transposed convolution with kernel p and stride p: each block expands to p x p outputs.
    y = np.einsum('nrab,rcij->ncaibj', h, form['wc'].astype(np.float64))
    y = y + form['bias'].astype(np.float64)[None, :, None, :, None, :]
    n, c, bh, _, bw, _ = y.shape
    return y.reshape(n, c, bh * p, bw * p)[:, :, :out_h, :out_w]


def spn_dense_reference(x, form):
    x = x.astype(np.float64)
    if form.get('flatten', True):
        x = x.reshape(x.shape[0], -1)
    h = (x @ form['wb'].T.astype(np.float64)) * form['scale'].astype(np.float64)
    return h @ form['wc'].T.astype(np.float64) + form['bias']


def _gate_matrix(entry):
    """The (4·units, in) matrix W_c·diag(scale)·W_b of one exported LSTM SPN set."""
    m = np.einsum('gur,gr,gri->gui', entry['wc'].astype(np.float64),
                  entry['scale'].astype(np.float64), entry['wb'].astype(np.float64))
    return m.reshape(-1, m.shape[-1])


def spn_lstm_reference(x, h0, c0, form):
    """Run an exported SPN LSTM on x (T, N, C) from states (layers, N, units); MXNet gate order
    (input, forget, cell, output). Returns (outputs, hT, cT)."""
    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-v))
    seq = x.astype(np.float64)
    hs, cs = [], []
    for index, entry in enumerate(form['layers']):
        w_i2h, w_h2h = _gate_matrix(entry['i2h']), _gate_matrix(entry['h2h'])
        bias = entry['i2h']['bias'] + entry['h2h']['bias']
        h, c = h0[index].astype(np.float64), c0[index].astype(np.float64)
        outputs = []
        for step in seq:
            gates = step @ w_i2h.T + h @ w_h2h.T + bias
            i, f, g, o = np.split(gates, 4, axis=-1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            outputs.append(h)
        seq = np.stack(outputs)
        hs.append(h)
        cs.append(c)
    return seq, np.stack(hs), np.stack(cs)
