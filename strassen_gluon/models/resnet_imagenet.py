"""ImageNet ResNet-18 v1 and its Strassen version ST-ResNet-18 (SPEC 3.4).

Layout (He et al. 2016, as gluoncv's ``resnet18_v1``):

* stem: 7x7 stride-2 convolution 3 -> 64, BN, ReLU, 3x3 stride-2 max pooling;
* four stages of two basic blocks with widths 64 / 128 / 256 / 512, stride 2 at the start of
  stages 2-4, each with a 1x1 stride-2 projection shortcut + BN when its width changes;
* global average pooling -> full-precision Dense(512 -> classes).

The basic block is the CIFAR ResNet's (`resnet_cifar.BasicBlockV1`, one implementation), built
with an injected convolution factory. In ``st_resnet18`` every convolution is an `SPNConv2D`,
the stem and the projection shortcuts included ("we apply our method to all convolution
layers"); the classifier stays full precision.

Options of ``st_resnet18``:

* `nbr_mul`: r = int(nbr_mul · c_out) per layer; one value or a per-stage list
  [stem, stage1, stage2, stage3, stage4]. 0 for a stage keeps its convolutions dense.
* `out_patch`: p, one value or a per-stage list; the 1x1 shortcuts always use p = 1.
* `groups`: g, the groups of the W_b convolution of every SPN. The stem sees 3 input channels,
  which g = 2 or 4 does not divide; the stem then uses g = 1 (r is unaffected, its W_b is dense).
* `layout`: 'default' as above; 'paper' is the layout that the counts of the StrassenNets poster
  (Table 1) imply: the 1x1 shortcuts use their stage's out_patch, and only the 3x3 convolutions
  have a grouped W_b (the stem and the shortcuts never). See docs/counting.md.
* `out_nbr_mul`: r of an SPN classifier (absolute, as the language model's option of that name);
  0 keeps the classifier a full-precision Dense. The poster's Table 1 counts r = 1000.
"""
from mxnet import initializer
from mxnet.gluon import HybridBlock, nn

from ..config import Phase
from ..layers import SPNDense
from .conv import dense_conv, spn_conv_factory, stage_values
from .registry import register
from .resnet_cifar import residual_stage

STAGE_WIDTHS = (64, 64, 128, 256, 512)  # stem, stage 1 .. stage 4
IMAGENET_INPUT_SHAPE = (1, 3, 224, 224)  # one image, what count and export feed the model
LAYOUTS = ('default', 'paper')
RESNET18_BLOCKS = (2, 2, 2, 2)
IMAGE_CHANNELS = 3


def stem_groups(groups):
    """Groups of the stem's W_b: g if it divides the 3 image channels, else 1."""
    return groups if IMAGE_CHANNELS % groups == 0 else 1


class ImageNetResNetV1(HybridBlock):
    """ResNet v1 with basic blocks for 224x224 images; see the module docstring."""

    def __init__(self, blocks=RESNET18_BLOCKS, conv_layer=dense_conv, stem_layer=None,
                 shortcut_layer=None, nbr_mul=1.0, out_patch=1, shortcut_stage_patch=False,
                 output_layer=None, classes=1000, **kwargs):
        super().__init__(**kwargs)
        stages = len(blocks) + 1
        self.classes = classes
        self.nbr_mul = stage_values(nbr_mul, 'nbr_mul', stages)
        self.out_patch = stage_values(out_patch, 'out_patch', stages)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix='features_')
            self.features.add((stem_layer or conv_layer)(
                                  STAGE_WIDTHS[0], 7, 2, 3, IMAGE_CHANNELS,
                                  nbr_mul=self.nbr_mul[0], out_patch=self.out_patch[0]),
                              nn.BatchNorm(in_channels=STAGE_WIDTHS[0]),
                              nn.Activation('relu'),
                              nn.MaxPool2D(3, 2, 1))
            in_channels = STAGE_WIDTHS[0]
            for stage, count in enumerate(blocks, start=1):
                self.features.add(residual_stage(
                    stage, count, STAGE_WIDTHS[stage], in_channels, conv_layer, shortcut_layer,
                    nbr_mul=self.nbr_mul[stage], out_patch=self.out_patch[stage],
                    shortcut_out_patch=self.out_patch[stage] if shortcut_stage_patch else 1))
                in_channels = STAGE_WIDTHS[stage]
            self.features.add(nn.GlobalAvgPool2D())
            self.output = (output_layer or dense_output)(classes, in_channels, 'output_')

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))



def dense_output(classes, in_units, prefix):
    return nn.Dense(classes, in_units=in_units, prefix=prefix)


def imagenet_init():
    """The ImageNet models' weight initialiser (He et al.'s, as the original ImageNet script)."""
    return initializer.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2)


@register('resnet18', init=imagenet_init, input_shape=IMAGENET_INPUT_SHAPE)
def resnet18(classes=1000):
    """Full-precision ResNet-18 v1 for ImageNet (baseline and distillation teacher)."""
    return ImageNetResNetV1(RESNET18_BLOCKS, conv_layer=dense_conv, classes=classes,
                            prefix='resnet18_')


@register('st_resnet18', init=imagenet_init, input_shape=IMAGENET_INPUT_SHAPE,
          stages=len(STAGE_WIDTHS))
def st_resnet18(nbr_mul=1.0, out_patch=1, groups=1, quantizer='twn', classes=1000,
                phase=Phase.FULL, layout='default', out_nbr_mul=0):
    """ST-ResNet-18: every convolution an SPN (stem and shortcuts included); the classifier
    full precision unless out_nbr_mul >= 1. layout 'paper': see the module docstring."""
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError('groups must be a positive integer, not %r' % (groups,))
    if layout not in LAYOUTS:
        raise ValueError('layout must be one of %s, not %r' % (', '.join(LAYOUTS), layout))
    if not isinstance(out_nbr_mul, int) or isinstance(out_nbr_mul, bool) or out_nbr_mul < 0:
        raise ValueError('out_nbr_mul must be an integer >= 0 (0: a dense classifier), not %r'
                         % (out_nbr_mul,))
    spn = spn_conv_factory(quantizer, phase, groups)
    paper = layout == 'paper'

    def ungrouped(*args, **kwargs):
        return spn(*args, groups=1, **kwargs)

    def stem(*args, **kwargs):
        return spn(*args, groups=stem_groups(groups), **kwargs)

    def spn_output(classes, in_units, prefix):
        return SPNDense(classes, in_units=in_units, r=out_nbr_mul, quantizer=quantizer,
                        phase=phase, prefix=prefix)
    return ImageNetResNetV1(RESNET18_BLOCKS, conv_layer=spn,
                            stem_layer=ungrouped if paper else stem,
                            shortcut_layer=ungrouped if paper else None, nbr_mul=nbr_mul,
                            out_patch=out_patch, shortcut_stage_patch=paper,
                            output_layer=spn_output if out_nbr_mul else None, classes=classes,
                            prefix='st_resnet18_')
