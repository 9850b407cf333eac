"""The 7-layer VGG-style network of the original VGG script (SPEC 3.2), dense or Strassen.

Three stages of [conv -> BN -> ReLU -> conv -> MaxPool 2 -> BN -> ReLU] with widths 128 / 256 /
512 (3x3, pad 1, no bias), then Flatten (512·4·4 = 8192) -> FC 8192 -> 1024 -> BN(1024) -> ReLU ->
Dense(1024 -> classes), the last one full precision.

The original has a slip (SPEC defect 6): the ReLU meant for after BN(1024) ended up at the end of
the convolutional features, so its FC-1024 and classifier compose linearly, and the SPN FC's bias
is frozen at 0. Both are fixed by default; ``faithful=True`` rebuilds the original (no ReLU there,
no FC bias). The original also quantized with the fixed-threshold quantizer (defect 5); the
default here is TWN, ``quantizer='threshold'`` reproduces the original.

`nbr_mul` and `out_patch` take one value (the original's options) or a per-stage list of three.
The FC SPN has r = 1024 multiplications (``fc_r``) as in the original, whatever nbr_mul is.
"""
from mxnet import initializer
from mxnet.gluon import HybridBlock, nn

from ..config import Phase
from ..layers import SPNDense
from .registry import register
from .resnet_cifar import CIFAR_INPUT_SHAPE, cifar_init
from .conv import dense_conv, spn_conv_factory, stage_values

STAGE_WIDTHS = (128, 256, 512)
FC_UNITS = 1024
FLAT_FEATURES = 512 * 4 * 4  # after three 2x2 poolings of a 32x32 image
NAMES = ('st_vgg7', 'vgg7')


def dense_fc(units, in_units, use_bias, **spn_options):
    return nn.Dense(units, in_units=in_units, use_bias=use_bias)


def spn_fc_factory(quantizer='twn', phase=Phase.FULL):
    def spn_fc(units, in_units, use_bias, r=FC_UNITS):
        return SPNDense(units, in_units=in_units, use_bias=use_bias, r=r, quantizer=quantizer,
                        phase=phase)
    return spn_fc


class VGG7(HybridBlock):
    """VGG-7 for 32x32 images with injected conv and FC factories (dense or SPN)."""

    def __init__(self, conv_layer=dense_conv, fc_layer=dense_fc, nbr_mul=1.0, out_patch=1,
                 fc_r=FC_UNITS, faithful=False, classes=10, **kwargs):
        super().__init__(**kwargs)
        self.nbr_mul = stage_values(nbr_mul, 'nbr_mul', stages=3)
        self.out_patch = stage_values(out_patch, 'out_patch', stages=3)
        self.faithful, self.classes = faithful, classes
        with self.name_scope():
            self.features = nn.HybridSequential(prefix='features_')
            in_channels = 3
            for stage, channels in enumerate(STAGE_WIDTHS):
                spn = dict(nbr_mul=self.nbr_mul[stage], out_patch=self.out_patch[stage])
                self.features.add(conv_layer(channels, 3, 1, 1, in_channels, **spn),
                                  nn.BatchNorm(in_channels=channels),
                                  nn.Activation('relu'),
                                  conv_layer(channels, 3, 1, 1, channels, **spn),
                                  nn.MaxPool2D(2),
                                  nn.BatchNorm(in_channels=channels),
                                  nn.Activation('relu'))
                in_channels = channels
            self.features.add(nn.Flatten())
            self.head = nn.HybridSequential(prefix='head_')
            self.head.add(fc_layer(FC_UNITS, FLAT_FEATURES, use_bias=not faithful, r=fc_r),
                          nn.BatchNorm(in_channels=FC_UNITS))
            if not faithful:
                self.head.add(nn.Activation('relu'))
            self.output = nn.Dense(classes, in_units=FC_UNITS, prefix='output_')

    def hybrid_forward(self, F, x):
        return self.output(self.head(self.features(x)))


@register('st_vgg7', init=cifar_init, input_shape=CIFAR_INPUT_SHAPE,
          stages=len(STAGE_WIDTHS))
def st_vgg7(nbr_mul=1.0, out_patch=1, quantizer='twn', fc_r=FC_UNITS, faithful=False,
            classes=10, phase=Phase.FULL):
    """Strassen VGG-7: the six convolutions and the FC-1024 are SPNs."""
    return VGG7(conv_layer=spn_conv_factory(quantizer, phase),
                fc_layer=spn_fc_factory(quantizer, phase), nbr_mul=nbr_mul,
                out_patch=out_patch, fc_r=fc_r, faithful=faithful, classes=classes,
                prefix='st_vgg7_')


@register('vgg7', init=cifar_init, input_shape=CIFAR_INPUT_SHAPE)
def vgg7(faithful=False, classes=10):
    """Full-precision VGG-7."""
    return VGG7(faithful=faithful, classes=classes, prefix='vgg7_')
