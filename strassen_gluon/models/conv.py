"""Convolution factories shared by the model definitions.

A model takes a factory `conv_layer(channels, kernel_size, strides, padding, in_channels,
nbr_mul=..., out_patch=...)`, so one definition serves the full-precision network (`dense_conv`)
and the Strassen network (`spn_conv_factory(...)`).
"""
from mxnet.gluon import nn

from ..config import Phase
from ..layers import SPNConv2D


def stage_values(value, name, stages=4):
    """Expand one value to a per-stage list, or check that a list has one value per stage."""
    if isinstance(value, (list, tuple)):
        if len(value) != stages:
            raise ValueError('%s needs one value per stage (%d), got %r' % (name, stages, value))
        return list(value)
    return [value] * stages


def dense_conv(channels, kernel_size, strides, padding, in_channels, **spn_options):
    """A full-precision convolution; SPN options (nbr_mul, out_patch, ...) do not apply."""
    return nn.Conv2D(channels, kernel_size, strides, padding, in_channels=in_channels,
                     use_bias=False)


def spn_conv_factory(quantizer='twn', phase=Phase.FULL, groups=1):
    """A conv factory building SPNConv2D with W_b in `groups` groups (nbr_mul = 0: dense).

    The factory's own `groups` argument overrides the default for a single layer (the stem).
    """
    default_groups = groups

    def spn_conv(channels, kernel_size, strides, padding, in_channels, nbr_mul=1.0, out_patch=1,
                 groups=None):
        if not nbr_mul:
            return dense_conv(channels, kernel_size, strides, padding, in_channels)
        return SPNConv2D(channels, kernel_size, strides, padding, in_channels=in_channels,
                         use_bias=False, nbr_mul=nbr_mul, out_patch=out_patch,
                         groups=default_groups if groups is None else groups,
                         quantizer=quantizer, phase=phase)
    return spn_conv
