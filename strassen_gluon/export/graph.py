"""The inference graph: a trained network with every foldable scale folded into fixed tensors.

inference_net(net) copies the network and swaps, by type:
  * each ternary SPNConv2D / SPNDense for a DeployedConv / DeployedDense holding W_b, W_c, the
    per-hidden-channel multiplier and the biases of forms.export_conv / export_dense as constants;
  * each batch norm that directly follows a convolution (SPN or plain, no activation between) in
    a HybridSequential: folded into that convolution's output, its place taken by an identity.

Two layouts of the same arithmetic:
  * fold_scales=True (MXNet speed): multiplier folded into W_b, the batch norm into W_c, biases
    into the convolutions; p >= 2 W_c as a fixed-weight Deconvolution (its bias added by an
    identity batch norm, faster than the Deconvolution's own) plus a crop where needed.
  * fold_scales=False (what to_onnx writes): W_b and W_c stay exactly ternary; the multiplier,
    the folded batch norm and the biases are separate per-channel Mul / Add.

With `input_shape`, p >= 2 layers get a static padding and crop for that map size (often none at
all: 32 x 32 maps at p = 2 need neither); without it, the padding and crop follow the input.
"""
import copy

import numpy as np
from mxnet import cpu, nd
from mxnet.gluon import HybridBlock, nn

from ..convert.batchnorm import batchnorm_affine
from ..convert.walk import named_blocks, replace_child
from ..gluon_compat import (add_constant, conv_options, imperative, in_float32, is_initialized,
                            layer_options, named_children)
from ..layers.spn import SPNConv2D, SPNDense, crop_to_dense_output
from ..train.precision import set_compute_dtype
from .forms import export_conv, export_dense

TERNARY_TAG = 'ternary_'  # constant names starting with this hold only {-1, 0, 1} (to_onnx)
BIAS_EPS = 1e-20  # the batch norm that adds a bias: 1 / sqrt(1 + BIAS_EPS) == 1 in float32


class _Deployed(HybridBlock):
    """A layer of fixed tensors; `out_scale` (per output channel) is a folded batch norm."""

    # In bfloat16 (train/precision.py) the input and the tensors are cast, but the batch norm's
    # (its statistics must stay graph variables, and MXNet takes γ and β in float32).
    dtype_rule = 'product'
    float32_params = ('bn_bias', 'bias_ones', 'bias_zeros')

    def _constant(self, name, value):
        self.constants.append(name)
        setattr(self, name, add_constant(self, name, nd.array(np.asarray(value, np.float32))))

    def __init__(self, prefix, fold_scales):
        super().__init__(prefix=prefix)
        self.fold_scales = fold_scales
        self.constants = []
        self.compute_dtype = 'float32'  # set by train/precision.py


class DeployedConv(_Deployed):
    """conv(x, W_b) -> ⊙ scale + shift -> W_c (1x1 conv, or Deconvolution with kernel p, stride p,
    then a crop) -> ⊙ out_scale + out_bias. A plain convolution is the case W_c = identity with
    float W_b (`ternary=False`)."""

    def __init__(self, form, out_scale, out_shift, fold_scales, prefix, ternary=True):
        super().__init__(prefix, fold_scales)
        self.kernel, self.strides, self.padding = form['kernel'], form['strides'], form['padding']
        self.p, self.groups = form['out_patch'], form['groups']
        self.dilation = form.get('dilation', (1, 1))
        self.identity_out = form['identity_out']
        wb, wc = form['wb'].astype(np.float64), form['wc'].astype(np.float64)
        scale, shift = form['scale'].astype(np.float64), form['shift'].astype(np.float64)
        out_bias = out_scale * form['out_bias'] + out_shift
        self.r = wb.shape[0]
        self.channels = self.r if self.identity_out else wc.shape[1]
        self.in_size = None  # (H, W) when fixed (set_input_size): static padding and crop
        if self.p == 1 and not self.identity_out:
            wc = wc.transpose(1, 0, 2, 3)  # a 1x1 convolution's weight (c_out, r, 1, 1)
        tag = TERNARY_TAG if ternary else ''
        with self.name_scope():
            if fold_scales:
                if self.identity_out:
                    self._constant('wb', wb * (scale * out_scale)[:, None, None, None])
                    self._constant('wb_bias', shift * out_scale + out_bias)
                else:
                    self._constant('wb', wb * scale[:, None, None, None])
                    self._constant('wb_bias', shift)
                    self._constant('wc', wc * out_scale.reshape(
                        (-1, 1, 1, 1) if self.p == 1 else (1, -1, 1, 1)))
                    if self.p == 1:
                        self._constant('wc_bias', out_bias)
                    else:
                        # MXNet's Deconvolution adds its bias ~10x slower than it convolves; a
                        # batch norm with mean 0, variance 1 and scale 1 adds it exactly, fast.
                        self._constant('bn_bias', out_bias)
                        self._constant('bias_ones', np.ones(self.channels))
                        self._constant('bias_zeros', np.zeros(self.channels))
            else:
                self._constant(tag + 'wb', wb)
                self._constant('scale', scale.reshape(1, -1, 1, 1))
                self._constant('shift', shift.reshape(1, -1, 1, 1))
                if not self.identity_out:
                    self._constant(tag + 'wc', wc)
                if not np.all(out_scale == 1):
                    self._constant('out_scale', out_scale.reshape(1, -1, 1, 1))
                self._constant('out_bias', out_bias.reshape(1, -1, 1, 1))

    def set_input_size(self, size):
        """Fix the input's (H, W): padding and crop of p >= 2 become static (see geometry)."""
        self.in_size = None if size is None else tuple(int(v) for v in size)

    def geometry(self):
        """(pad W_b's convolution symmetrically, output size to crop to or None) for the fixed
        input size. W_b's blocks need an end padding of (p - 1)·s more than the dense
        convolution's; when the symmetric padding already yields every needed block (e.g. 32 x 32
        maps at p = 2), the explicit Pad goes, and when the blocks tile the output exactly, so
        does the crop."""
        p, kernel_b = self.p, wb_kernel(self.kernel, self.strides, self.p)
        symmetric, blocks, out = True, [], []
        for n, k, s, pad, kb in zip(self.in_size, self.kernel, self.strides, self.padding,
                                    kernel_b):
            size = (n + 2 * pad - k) // s + 1
            needed = -(-size // p)
            available = (n + 2 * pad - kb) // (p * s) + 1 if n + 2 * pad >= kb else 0
            symmetric = symmetric and available >= needed
            out.append(size)
            blocks.append((available, (n + 2 * pad + (p - 1) * s - kb) // (p * s) + 1))
        produced = [b[0] if symmetric else b[1] for b in blocks]
        crop = None if all(b * p == o for b, o in zip(produced, out)) else tuple(out)
        return symmetric, crop

    def hybrid_forward(self, F, x, **c):
        p, (ph, pw), (sh, sw) = self.p, self.padding, self.strides
        wb = c.get('wb', c.get(TERNARY_TAG + 'wb'))
        wc = c.get('wc', c.get(TERNARY_TAG + 'wc'))
        if self.in_size and hasattr(x, 'shape') and tuple(x.shape[2:]) != self.in_size:
            raise ValueError('%s is fixed to %s inputs, not %s' % (self.name, self.in_size,
                                                                  tuple(x.shape[2:])))
        symmetric, crop = self.geometry() if p > 1 and self.in_size else (False, 'dynamic')
        if p > 1:
            kernel_b, stride_b = wb_kernel(self.kernel, self.strides, p), (p * sh, p * sw)
            if symmetric:
                pad_b = self.padding
            else:
                x = in_float32(F, x, lambda t: F.pad(
                    t, mode='constant',
                    pad_width=(0, 0, 0, 0, ph, ph + (p - 1) * sh, pw, pw + (p - 1) * sw)),
                    self.compute_dtype)
                pad_b = (0, 0)
        else:
            kernel_b, stride_b, pad_b = self.kernel, self.strides, self.padding
        h = F.Convolution(x, wb, c.get('wb_bias'), kernel=kernel_b, stride=stride_b, pad=pad_b,
                          dilate=self.dilation, num_filter=self.r, num_group=self.groups,
                          no_bias='wb_bias' not in c)
        if not self.fold_scales:
            h = F.broadcast_add(F.broadcast_mul(h, c['scale']), c['shift'])
        if self.identity_out:
            y = h
        elif p == 1:
            y = F.Convolution(h, wc, c.get('wc_bias'), kernel=(1, 1), num_filter=self.channels,
                              no_bias='wc_bias' not in c)
        else:
            y = F.Deconvolution(h, wc, kernel=(p, p), stride=(p, p), num_filter=self.channels,
                                no_bias=True)
            if 'bn_bias' in c:  # (1 + eps)^-1/2 is exactly 1 in float32
                y = F.BatchNorm(y, c['bias_ones'], c['bn_bias'], c['bias_zeros'], c['bias_ones'],
                                eps=BIAS_EPS, use_global_stats=True, fix_gamma=False)
            if crop == 'dynamic':
                y = crop_to_dense_output(F, y, x, self.kernel, self.strides, p)
            elif crop is not None:
                y = F.slice(y, begin=(None, None, 0, 0), end=(None, None) + crop)
        if not self.fold_scales:
            if 'out_scale' in c:
                y = F.broadcast_mul(y, c['out_scale'])
            y = F.broadcast_add(y, c['out_bias'])
        return y


def wb_kernel(kernel, strides, p):
    return tuple((p - 1) * s + k for k, s in zip(kernel, strides))


class DeployedDense(_Deployed):
    """FC(x, W_b) -> ⊙ scale + shift -> FC(·, W_c) + out_bias."""

    def __init__(self, form, fold_scales, prefix):
        super().__init__(prefix, fold_scales)
        self.flatten, self.identity_out = form['flatten'], form['identity_out']
        wb, wc = form['wb'].astype(np.float64), form['wc'].astype(np.float64)
        scale, shift = form['scale'].astype(np.float64), form['shift'].astype(np.float64)
        self.r, self.units = wb.shape[0], wc.shape[0]
        with self.name_scope():
            if fold_scales:
                self._constant('wb', wb * scale[:, None])
                if self.identity_out:
                    self._constant('wb_bias', shift + form['out_bias'])
                else:
                    self._constant('wb_bias', shift)
                    self._constant('wc', wc)
                    self._constant('wc_bias', form['out_bias'])
            else:
                self._constant(TERNARY_TAG + 'wb', wb)
                self._constant('scale', scale)
                self._constant('shift', shift)
                if not self.identity_out:
                    self._constant(TERNARY_TAG + 'wc', wc)
                self._constant('out_bias', form['out_bias'])

    def hybrid_forward(self, F, x, **c):
        wb = c.get('wb', c.get(TERNARY_TAG + 'wb'))
        wc = c.get('wc', c.get(TERNARY_TAG + 'wc'))
        h = F.FullyConnected(x, wb, c.get('wb_bias'), num_hidden=self.r, flatten=self.flatten,
                             no_bias='wb_bias' not in c)
        if not self.fold_scales:
            h = F.broadcast_add(F.broadcast_mul(h, c['scale']), c['shift'])
        if self.identity_out:
            return h if self.fold_scales else F.broadcast_add(h, c['out_bias'])
        y = F.FullyConnected(h, wc, c.get('wc_bias'), num_hidden=self.units, flatten=False,
                             no_bias='wc_bias' not in c)
        return y if self.fold_scales else F.broadcast_add(y, c['out_bias'])


class Identity(HybridBlock):
    """The place of a batch norm folded into the convolution before it."""

    dtype_rule = 'follow'

    def hybrid_forward(self, F, x):
        return x


def plain_conv_form(conv):
    """A Gluon Conv2D as the deployed form with W_c = identity (its weight is W_b)."""
    o = conv_options(conv)
    bias = conv.bias.data().asnumpy() if o['use_bias'] else np.zeros(o['channels'])
    return {'wb': conv.weight.data().asnumpy(), 'wc': np.zeros((0,)), 'identity_out': True,
            'scale': np.ones(o['channels']), 'shift': bias, 'out_bias': np.zeros(o['channels']),
            'kernel': o['kernel'], 'strides': o['strides'], 'padding': o['padding'],
            'dilation': o['dilation'], 'out_patch': 1, 'groups': o['groups']}


def _foldable_conv(block):
    if isinstance(block, SPNConv2D):
        return True
    if isinstance(block, nn.Conv2D):
        o = conv_options(block)
        return not o['transposed'] and o['activation'] is None and o['layout'] == 'NCHW'
    return False


def _deploy_conv(block, bn, fold_scales):
    channels = block.channels if isinstance(block, SPNConv2D) else conv_options(block)['channels']
    out_scale, out_shift = batchnorm_affine(bn) if bn is not None else \
        (np.ones(channels), np.zeros(channels))
    if isinstance(block, SPNConv2D):
        return DeployedConv(export_conv(block), out_scale, out_shift, fold_scales, block.prefix)
    return DeployedConv(plain_conv_form(block), out_scale, out_shift, fold_scales, block.prefix,
                        ternary=False)


def conv_calls(deployed, x):
    """[(DeployedConv, its input)] of one imperative pass of `deployed` on `x`, in call order."""
    calls, handles = [], []
    convs = [block for _, _, _, block in named_blocks(deployed) if isinstance(block, DeployedConv)]
    try:
        for block in convs:
            handles.append(block.register_forward_hook(
                lambda block, args, output: calls.append((block, args[0]))))
        with imperative(deployed):
            deployed(x)
    finally:
        for handle in handles:
            handle.detach()
    return calls


def fix_input_size(deployed, input_shape):
    """Fix the input size of every DeployedConv to what it sees for inputs of `input_shape`. A
    layer that sees several sizes stays dynamic."""
    sizes = {}
    for block, x in conv_calls(deployed, nd.zeros(tuple(input_shape), ctx=context_of(deployed))):
        sizes.setdefault(block, set()).add(tuple(x.shape[2:]))
    for block, seen in sizes.items():
        block.set_input_size(seen.pop() if len(seen) == 1 else None)


def context_of(net):
    """The context of the first parameter of `net` (the CPU for a net without parameters)."""
    for param in net.collect_params().values():
        return param.list_ctx()[0]
    return cpu()


def inference_net(net, fold_scales=True, hybridize=True, input_shape=None, dtype='float32'):
    """A copy of a trained network in its deployed form (see the module docstring).

    `dtype` 'bfloat16' computes its products in bfloat16 (train/precision.py: float32 in and
    out): about 1.8x the float32 speed on a CPU with fast bfloat16 kernels (docs/precision.md),
    outputs within about 1% of float32's. Only with fold_scales=True: the unfolded form's
    per-channel products are slower in bfloat16 than the whole float32 network.

    With `input_shape` (N, C, H, W), the graph is specialised to that H x W (any N): paddings
    and crops of p >= 2 layers are static, which drops most of them; other sizes are then
    refused by the convolutions' shape checks or computed wrongly, so give it only for a fixed
    deployment size (to_onnx does).

    Every SPN layer must be in phase TERNARY (ValueError otherwise, from export_conv); a network
    without SPN layers gets its batch norms folded only. The copy computes what `net` computes in
    inference mode; `net` is left as it was.
    """
    if dtype != 'float32' and not fold_scales:
        raise ValueError('inference_net computes in %s only with fold_scales=True' % dtype)
    deployed = copy.deepcopy(net)
    for _, parent, key, block in named_blocks(deployed):
        if not isinstance(parent, nn.HybridSequential) or not _foldable_conv(block):
            continue
        siblings = named_children(parent)
        index = [i for i, (_, child) in enumerate(siblings) if child is block][0]
        next_key, following = siblings[index + 1] if index + 1 < len(siblings) else (None, None)
        if isinstance(following, nn.BatchNorm) and layer_options(following).get('axis', 1) == 1:
            replace_child(parent, key, block, _deploy_conv(block, following, fold_scales))
            replace_child(parent, next_key, following, Identity(prefix=following.prefix))
    for _, parent, key, block in named_blocks(deployed):
        if isinstance(block, SPNConv2D):
            replace_child(parent, key, block, _deploy_conv(block, None, fold_scales))
        elif isinstance(block, SPNDense):
            replace_child(parent, key, block, DeployedDense(export_dense(block), fold_scales,
                                                            block.prefix))
    contexts = [param.list_ctx() for param in net.collect_params().values()
                if is_initialized(param)]
    for param in deployed.collect_params().values():
        if not is_initialized(param):  # the new constants
            param.initialize(ctx=contexts[0] if contexts else None)
    if input_shape is not None:
        fix_input_size(deployed, input_shape)
    set_compute_dtype(deployed, dtype)
    if hybridize:
        deployed.hybridize(static_alloc=True, static_shape=True)
    return deployed

