"""Batch-norm arithmetic shared by conversion and export: channel statistics of a calibration
batch, a batch norm set to pass its input through, and a batch norm's inference-mode affine map.
"""
import numpy as np
from mxnet import nd
from mxnet.gluon import nn

from .walk import ConversionError, layer_options, param_state


def set_data(param, value):
    """Write `value` (any array-like) into `param` as float32."""
    param.set_data(nd.array(np.asarray(value, dtype=np.float32)))


class ChannelStats:
    """Running per-channel mean and variance over any number of batches (float64)."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, None, None

    def add(self, h, axis):
        """Add the values of h; `axis` is the channel axis."""
        axis = axis % h.ndim
        axes = tuple(i for i in range(h.ndim) if i != axis)
        mean = nd.mean(h, axis=axes)
        var = nd.mean(nd.square(h - nd.reshape(mean, shape=[-1 if i == axis else 1
                                                          for i in range(h.ndim)])), axis=axes)
        n = int(np.prod([h.shape[i] for i in axes]))
        mean, var = mean.asnumpy().astype(np.float64), var.asnumpy().astype(np.float64)
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean, var * n
            return
        total = self.count + n
        delta = mean - self.mean
        self.m2 = self.m2 + var * n + delta ** 2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.count = total

    @property
    def var(self):
        return self.m2 / self.count


def running_stats(net, exclude):
    """(parameter, copy of its value) for the running statistics of every nn.BatchNorm."""
    norms = []
    net.apply(lambda b: norms.append(b) if isinstance(b, nn.BatchNorm) and
              id(b) not in exclude else None)
    return [(p, p.data().copy()) for b in norms for p in (b.running_mean, b.running_var)
            if param_state(p) == 'ready']


def norm_axis(norm):
    return layer_options(norm).get('axis', 1)


def norm_eps(norm):
    return layer_options(norm).get('eps', 1e-5)


def set_passthrough_norm(norm, stats):
    """Make an nn.BatchNorm the identity: in inference mode always, in training mode on a
    batch with these statistics (γ = sqrt(σ² + eps), β = μ)."""
    if not isinstance(norm, nn.BatchNorm):
        raise ConversionError('%s is not a BatchNorm' % norm.name)
    eps = norm_eps(norm)
    n = norm.gamma.shape[0]
    if stats is None:
        mean, var = np.zeros(n), np.full(n, 1.0 - eps)
    else:
        mean, var = stats.mean, stats.var
    set_data(norm.gamma, np.sqrt(var + eps))
    set_data(norm.beta, mean)
    set_data(norm.running_mean, mean)
    set_data(norm.running_var, var)


def batchnorm_affine(norm):
    """(scale, shift) of an nn.BatchNorm in inference mode: y = scale·x + shift per channel."""
    eps = norm_eps(norm)
    fix_gamma = layer_options(norm).get('fix_gamma', False)
    gamma = np.ones(norm.gamma.shape) if fix_gamma else norm.gamma.data().asnumpy()
    scale = gamma / np.sqrt(norm.running_var.data().asnumpy() + eps)
    shift = norm.beta.data().asnumpy() - norm.running_mean.data().asnumpy() * scale
    return scale.astype(np.float64), shift.astype(np.float64)
