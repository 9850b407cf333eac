"""CIFAR ResNets v1 (He et al. 2016): one definition for the full-precision baseline and the
Strassen network (SPEC 3.1).

The blocks receive a convolution factory (`conv_layer`), so ``resnet20`` (gluon Conv2D) and
``st_resnet20`` (SPNConv2D) have exactly the same topology:

* stem: a bare 3x3 convolution 3 -> 16 with no batch norm or ReLU after it. That is what MXNet
  Gluon's ResNetV1 with ``thumbnail=True`` builds and what the original notebook trained; kept;
* three stages of n basic blocks (depth = 6n + 2) with widths 16 / 32 / 64, stride 2 at the start
  of stages 2 and 3; conv -> BN -> ReLU -> conv -> BN, + shortcut, -> ReLU;
* shortcut: identity, or a 1x1 stride-2 convolution + BN when the width changes; in the Strassen
  network it is an SPN too (the notebook's ``quant_down=True``) with out_patch forced to 1;
* global average pooling -> a full-precision Dense(64 -> classes).

`nbr_mul` and `out_patch` take one value or a per-stage list [stem, stage1, stage2, stage3], as the
notebook's knobs do. `nbr_mul` is relative to each layer's output channels (r = int(nbr_mul·c_out));
the notebook's list held the absolute r = [16, 16, 32, 64], which is nbr_mul = 1. A stage whose
nbr_mul is 0 uses ordinary convolutions (the notebook's switch for the stem).
"""
from mxnet import initializer
from mxnet.gluon import HybridBlock, nn

from ..config import Phase
from .conv import dense_conv, stage_values, spn_conv_factory
from .registry import register

STAGE_WIDTHS = (16, 16, 32, 64)  # stem, stage 1, stage 2, stage 3
CIFAR_INPUT_SHAPE = (1, 3, 32, 32)  # one image, what count and export feed a CIFAR model
DEPTHS = (20, 32, 44, 56)
NAMES = tuple('%s%d' % (kind, d) for d in DEPTHS for kind in ('st_resnet', 'resnet'))


def blocks_per_stage(depth):
    """n for a CIFAR ResNet of depth 6n + 2."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError('CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, ...), not %r'
                         % (depth,))
    return (depth - 2) // 6


class BasicBlockV1(HybridBlock):
    """conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU."""

    def __init__(self, channels, strides, in_channels, conv_layer, shortcut_layer=None,
                 nbr_mul=1.0, out_patch=1, shortcut_out_patch=1, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix='body_')
            self.body.add(conv_layer(channels, 3, strides, 1, in_channels,
                                     nbr_mul=nbr_mul, out_patch=out_patch),
                          nn.BatchNorm(in_channels=channels),
                          nn.Activation('relu'),
                          conv_layer(channels, 3, 1, 1, channels,
                                     nbr_mul=nbr_mul, out_patch=out_patch),
                          nn.BatchNorm(in_channels=channels))
            if strides != 1 or in_channels != channels:
                self.downsample = nn.HybridSequential(prefix='down_')
                # The 1x1 shortcut works pixel by pixel: an output patch would only add cost
                # (the notebook's p = 1; the ImageNet model of the paper used the stage's p).
                self.downsample.add((shortcut_layer or conv_layer)(
                                        channels, 1, strides, 0, in_channels,
                                        nbr_mul=nbr_mul, out_patch=shortcut_out_patch),
                                    nn.BatchNorm(in_channels=channels))
            else:
                self.downsample = None

    def hybrid_forward(self, F, x):
        residual = self.downsample(x) if self.downsample is not None else x
        return F.Activation(self.body(x) + residual, act_type='relu')


def residual_stage(index, count, channels, in_channels, conv_layer, shortcut_layer=None,
                   nbr_mul=1.0, out_patch=1, shortcut_out_patch=1):
    """Stage `index` (1-based) of `count` basic blocks; stages after the first start with
    stride 2. Shared by the CIFAR and the ImageNet ResNets."""
    stage = nn.HybridSequential(prefix='stage%d_' % index)
    with stage.name_scope():
        for i in range(count):
            stage.add(BasicBlockV1(channels, 2 if (i == 0 and index > 1) else 1,
                                   in_channels if i == 0 else channels, conv_layer,
                                   shortcut_layer, nbr_mul=nbr_mul, out_patch=out_patch,
                                   shortcut_out_patch=shortcut_out_patch,
                                   prefix='block%d_' % i))
    return stage


class CIFARResNetV1(HybridBlock):
    """ResNet-(6n+2) for 32x32 images; see the module docstring for the layout."""

    def __init__(self, depth, conv_layer=dense_conv, shortcut_layer=None, nbr_mul=1.0,
                 out_patch=1, classes=10, **kwargs):
        super().__init__(**kwargs)
        n = blocks_per_stage(depth)
        self.depth, self.classes = depth, classes
        self.nbr_mul = stage_values(nbr_mul, 'nbr_mul')
        self.out_patch = stage_values(out_patch, 'out_patch')
        with self.name_scope():
            self.features = nn.HybridSequential(prefix='features_')
            # Thumbnail stem: a bare conv, no BN/ReLU (the Gluon model zoo's quirk, kept).
            self.features.add(conv_layer(STAGE_WIDTHS[0], 3, 1, 1, 3, nbr_mul=self.nbr_mul[0],
                                         out_patch=self.out_patch[0]))
            in_channels = STAGE_WIDTHS[0]
            for stage in (1, 2, 3):
                self.features.add(residual_stage(
                    stage, n, STAGE_WIDTHS[stage], in_channels, conv_layer, shortcut_layer,
                    self.nbr_mul[stage], self.out_patch[stage]))
                in_channels = STAGE_WIDTHS[stage]
            self.features.add(nn.GlobalAvgPool2D())
            self.output = nn.Dense(classes, in_units=in_channels, prefix='output_')

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def st_resnet(depth, nbr_mul=1.0, out_patch=1, quantizer='twn', quant_down=True, classes=10,
              phase=Phase.FULL, **kwargs):
    """Strassen ResNet: every convolution (stem and, with quant_down, the 1x1 shortcuts
    included) is an SPN; the classifier stays full precision."""
    spn = spn_conv_factory(quantizer, phase)
    return CIFARResNetV1(depth, conv_layer=spn, shortcut_layer=spn if quant_down else dense_conv,
                         nbr_mul=nbr_mul, out_patch=out_patch, classes=classes,
                         prefix='st_resnet%d_' % depth, **kwargs)


def resnet(depth, classes=10, **kwargs):
    """The full-precision CIFAR ResNet (baseline and teacher)."""
    return CIFARResNetV1(depth, conv_layer=dense_conv, classes=classes,
                         prefix='resnet%d_' % depth, **kwargs)


def cifar_init():
    """The CIFAR models' weight initialiser (the original notebook's)."""
    return initializer.Xavier(rnd_type='uniform', factor_type='avg', magnitude=2)


def _register_depth(depth):
    @register('st_resnet%d' % depth, init=cifar_init, input_shape=CIFAR_INPUT_SHAPE,
              stages=len(STAGE_WIDTHS))
    def build_st(nbr_mul=1.0, out_patch=1, quantizer='twn', quant_down=True, classes=10,
                 phase=Phase.FULL):
        return st_resnet(depth, nbr_mul=nbr_mul, out_patch=out_patch, quantizer=quantizer,
                         quant_down=quant_down, classes=classes, phase=phase)

    @register('resnet%d' % depth, init=cifar_init, input_shape=CIFAR_INPUT_SHAPE)
    def build_fp(classes=10):
        return resnet(depth, classes=classes)

    build_st.__doc__ = 'ST-ResNet-%d for CIFAR (SPN convolutions, nbr_mul/out_patch per stage).' \
        % depth
    build_fp.__doc__ = 'Full-precision ResNet-%d for CIFAR.' % depth


for _depth in DEPTHS:
    _register_depth(_depth)
