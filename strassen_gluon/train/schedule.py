"""The training stages of the paper's CIFAR-10 protocol and their learning rates, as plain data.

SPEC 2.2 (the notebook and the VGG script):

====== ============================ ======== ======= ===========================
stage  layers                       epochs   lr      ×0.1 at the start of epoch
====== ============================ ======== ======= ===========================
full   SPN in full precision        250      0.1     150, 200
ternary W_b, W_c ternary (STE)      40       0.01    10, 20, 30
frozen W_b, W_c ternary and frozen  10       0.001   (constant)
====== ============================ ======== ======= ===========================

Each stage has its own optimizer. A full-precision model (no SPN layers) trains in one stage,
``dense``, with the schedule of the first.

The original stepped its schedule by update count at multiples of the updates per epoch, so the
learning rate is constant within an epoch: it is a pure function of (stage, epoch) here.

When a stage is given fewer (or more) epochs than the paper's, its step epochs are scaled in
proportion, ``round(step · epochs / paper_epochs)``, unless explicit steps are given; e.g. 25
full-precision epochs decay at epochs 15 and 20. Each scaled step lands on its own epoch (1 to
epochs - 1): 3 epochs of the full stage decay at 1 and 2; a stage too short for all its steps
keeps the first ones that fit and the plan says so in one line.

Every schedule and preset of the commands is here, as data: ``PAPER_CIFAR`` (SPEC 2.2),
``PAPER_IMAGENET`` (SPEC 2.5), and the presets ``CIFAR_QUICK``, ``CIFAR_FINE_TUNE``,
``IMAGENET_FINE_TUNE`` that fill the options a user did not set.
"""
import math
from dataclasses import dataclass

from ..config import Phase


SHAPES = ('step', 'cosine')


@dataclass(frozen=True)
class Stage:
    """One training stage: what the SPN layers compute, how long, and at which learning rate."""
    name: str
    phase: Phase
    epochs: int
    lr: float
    steps: tuple = ()          # epochs (0-based, within the stage) at which lr is multiplied
    factor: float = 0.1
    frozen: bool = False       # W_b and W_c kept fixed (still ternary in the forward pass)
    # W_c alone kept at its starting value while W_b trains (--freeze_wc: after an exact
    # conversion W_c is the identity, and a flipped entry adds a whole filter to another channel).
    frozen_wc: bool = False
    # Plateau policy instead of steps: lr *= factor after an epoch whose primary metric did not
    # improve on the previous epoch's by more than decay_when (the language model's policy).
    decay_when: float = None
    # 'cosine' instead of steps: lr · (1 + cos(π · epoch / epochs)) / 2, epoch by epoch (the
    # short schedules that reach the paper's accuracy on a CPU; see docs/reproduce.md).
    shape: str = 'step'

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError('stage %s: shape must be one of %s, not %r'
                             % (self.name, ', '.join(SHAPES), self.shape))
        if self.epochs < 0:
            raise ValueError('stage %s: epochs must be >= 0, not %r' % (self.name, self.epochs))
        if not self.lr > 0:
            raise ValueError('stage %s: lr must be positive, not %r' % (self.name, self.lr))
        if self.decay_when is not None and not self.decay_when >= 0:
            raise ValueError('stage %s: decay_when must be >= 0, not %r'
                             % (self.name, self.decay_when))
        if list(self.steps) != sorted(self.steps) or any(s < 0 for s in self.steps):
            raise ValueError('stage %s: steps must be increasing epochs >= 0, not %r'
                             % (self.name, self.steps))


PAPER_CIFAR = (
    Stage('full', Phase.FULL, 250, 0.1, (150, 200)),
    Stage('ternary', Phase.TERNARY, 40, 0.01, (10, 20, 30)),
    Stage('frozen', Phase.TERNARY, 10, 0.001, (), frozen=True),
)
# SPEC 2.5 (the Dec-2017 poster's ImageNet protocol); lr for a total batch of 128.
PAPER_IMAGENET = (
    Stage('full', Phase.FULL, 70, 0.05, (40, 60)),
    Stage('ternary', Phase.TERNARY, 10, 0.0005),
    Stage('frozen', Phase.TERNARY, 5, 0.0005, frozen=True),
)
PAPER_BY_NAME = {p.name: p for p in PAPER_CIFAR}

# A short CIFAR-10 demonstration (--quick, `make run`): a 2000-image subset, 2 + 1 + 1 epochs,
# 2048 test images, and no learning-rate step inside the 2-epoch first stage: a step after a few
# dozen updates mostly lets the momentum coast (MXNet's SGD velocity keeps the old step size).
CIFAR_QUICK = dict(train_subset=2000, epochs_fp=2, epochs_quant=1, epochs_frozen=1,
                   max_eval_batches=16, lr_steps_fp=[])
# A network converted from a trained dense one (--init_from), 4 epochs in all: one
# full-precision epoch at a tenth of the paper's rate lets the SPN batch norms and ã settle
# without leaving the dense solution, two ternary epochs (the rate steps down after the first)
# absorb the quantisation, one frozen epoch tunes ã, the batch norms and the classifier.
CIFAR_FINE_TUNE = dict(epochs_fp=1, epochs_quant=2, epochs_frozen=1, lr_fp=0.01, lr_quant=0.01,
                       lr_frozen=0.001, lr_steps_fp=[], lr_steps_quant=[1], lr_steps_frozen=[])
# The same for ImageNet ResNet-18 from trained dense weights, at a tenth of SPEC 2.5's rates.
IMAGENET_FINE_TUNE = dict(epochs_fp=1, epochs_quant=2, epochs_frozen=1, lr_fp=0.005,
                          lr_quant=0.0005, lr_frozen=0.0005)


def preset_text(preset):
    """A preset as the command-line options it stands for (for --help)."""
    return ' '.join('--%s %s' % (k, (','.join(map(str, v)) or "''") if isinstance(v, list)
                                 else v) for k, v in preset.items())


def scale_steps(steps, paper_epochs, epochs):
    """The paper's step epochs moved in proportion to a changed stage length, each on its own
    epoch in 1 .. epochs - 1; when fewer epochs than steps remain, the first steps are kept."""
    if epochs == paper_epochs or paper_epochs == 0:
        return tuple(steps)
    kept = list(steps)[:max(epochs - 1, 0)]
    scaled, previous = [], 0
    for i, step in enumerate(kept):
        latest = epochs - len(kept) + i    # leaves one epoch for each later step
        scaled.append(min(max(previous + 1, round(step * epochs / paper_epochs)), latest))
        previous = scaled[-1]
    return tuple(scaled)


def make_stage(name, epochs=None, lr=None, steps=None, factor=None, paper=PAPER_CIFAR,
               shape='step', frozen_wc=False):
    """Phase `name` ('full', 'ternary', 'frozen' or 'dense') of the `paper` schedule, with
    overrides. None keeps the paper's value; `steps=None` with changed `epochs` scales the
    paper's steps. 'dense' is the single stage of a full-precision model: the 'full' schedule in
    Phase.DENSE. `frozen_wc` holds W_c in an SPN stage."""
    spec = {p.name: p for p in paper}['full' if name == 'dense' else name]
    epochs = spec.epochs if epochs is None else int(epochs)
    steps = scale_steps(spec.steps, spec.epochs, epochs) if steps is None else tuple(steps)
    return Stage(name=name, phase=Phase.DENSE if name == 'dense' else spec.phase,
                     epochs=epochs, lr=spec.lr if lr is None else float(lr), steps=steps,
                     factor=spec.factor if factor is None else float(factor),
                     frozen=spec.frozen, shape=shape, frozen_wc=frozen_wc and name != 'dense')


def paper_stages(spn=True, epochs=(None, None, None), lrs=(None, None, None),
                 steps=(None, None, None), factor=None, paper=PAPER_CIFAR, shape='step',
                 frozen_wc=False):
    """The stages of one run: three for a Strassen model, one ('dense') for a dense model.

    `epochs`, `lrs` and `steps` are per-stage overrides (None = the paper's value). Stages with
    0 epochs are dropped. `frozen_wc` holds W_c in every stage.
    """
    names = ('full', 'ternary', 'frozen') if spn else ('dense',)
    specs = [make_stage(n, e, lr, s, factor, paper, shape, frozen_wc)
             for n, e, lr, s in zip(names, epochs, lrs, steps)]
    return [s for s in specs if s.epochs > 0]


def stages_from_config(config, spn, paper):
    """(stages, notes) of a PhasedConfig (strassen_gluon.config): its epochs_*, lr_*, lr_steps_*
    and lr_factor, None taking the `paper` schedule's value; a note (one line) for each stage too
    short to hold all the paper's learning-rate steps."""
    given = (config.lr_steps_fp, config.lr_steps_quant, config.lr_steps_frozen)
    stages = paper_stages(spn, (config.epochs_fp, config.epochs_quant, config.epochs_frozen),
                          (config.lr_fp, config.lr_quant, config.lr_frozen), given,
                          config.lr_factor, paper, config.lr_shape, config.freeze_wc)
    notes = []
    for spec in stages:
        index = 0 if spec.name == 'dense' else [p.name for p in paper].index(spec.name)
        wanted = paper[index].steps
        if spec.shape == 'step' and given[index] is None and len(spec.steps) < len(wanted):
            notes.append("stage %s: %d epoch(s) hold %d of the paper's %d learning-rate steps "
                         "(%s); --lr_steps_* choose others"
                         % (spec.name, spec.epochs, len(spec.steps), len(wanted),
                            'at ' + ','.join(map(str, spec.steps)) if spec.steps else 'none'))
    return stages, notes


def learning_rate(spec, epoch):
    """The learning rate of epoch `epoch` (0-based) of stage `spec`."""
    if epoch < 0:
        raise ValueError('epoch must be >= 0, not %r' % (epoch,))
    if spec.shape == 'cosine':
        return float('%.12g' % (spec.lr * (1 + math.cos(math.pi * epoch / spec.epochs)) / 2))
    decays = sum(1 for s in spec.steps if epoch >= s)
    return float('%.12g' % (spec.lr * spec.factor ** decays))  # 0.001, not 0.0010000000000000002
