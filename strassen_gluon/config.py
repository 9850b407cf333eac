"""Shared enums and the typed configuration every training command starts from.

Each option is written once, as a dataclass field made by :func:`option`: its default, its help
text, its accepted range and its command-line spellings. :mod:`strassen_gluon.cli` derives the
parsers from these fields and :func:`check_options` enforces the ranges, for the command line and
for ``train(config)`` from Python alike. Imports nothing from the package but its errors.
"""
import dataclasses
import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import List, Optional, Union

from .errors import UsageError


class Phase(IntEnum):
    """What an SPN layer computes: its *phase* (the training commands go through *stages*, full,
    ternary, frozen, each of which sets a phase). The values are the original code's `sp_mode`
    numbers.

    DENSE      the original dense layer (convolution, fully connected, LSTM) with its own weight
    FULL       the sum-product network in full precision
    TERNARY    W_b and W_c ternary (straight-through gradients): the Strassen layer
    TERNARY_B  only W_b ternary
    TERNARY_C  only W_c ternary
    """
    DENSE = 0
    FULL = 1
    TERNARY = 2
    TERNARY_B = 3
    TERNARY_C = 4

    @property
    def ternary_b(self):
        return self in (Phase.TERNARY, Phase.TERNARY_B)

    @property
    def ternary_c(self):
        return self in (Phase.TERNARY, Phase.TERNARY_C)

    @classmethod
    def parse(cls, value):
        """Accept a Phase, its number or its name (any case)."""
        if isinstance(value, Phase):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError('unknown phase %r; choose one of %s'
                                 % (value, ', '.join(p.name.lower() for p in cls))) from None
        try:
            return cls(int(value))
        except (ValueError, TypeError):
            raise ValueError('unknown phase %r; valid numbers are 0-4' % (value,)) from None


def option(default, help, *, flags=(), low=None, above=None, high=None, below=None,
           choices=None, increasing=False, parse=None, nargs=None, group=None, metavar=None):
    """A configuration field: `default` (a list is copied per instance), `help` for --help, and
    the values accepted by :func:`check_options`: ``low <= value``, ``above < value``,
    ``value <= high``, ``value < below``, one of `choices`, a list `increasing` strictly.
    `flags`, when given, are all the option's spellings (the documented one first; older ones
    stay as aliases). `parse` turns the command-line text into the value (default: the
    default's type; 'int_list', or ('per_stage', type) for one value or one per network stage);
    `nargs` as argparse's. None is always accepted where the default is None ("not set")."""
    meta = dict(help=help, flags=tuple(flags), low=low, above=above, high=high, below=below,
                increasing=increasing,
                choices=choices, parse=parse, nargs=nargs, group=group, metavar=metavar)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def option_fields(config_type):
    """The fields of a configuration class made by :func:`option`, in declaration order."""
    return [f for f in dataclasses.fields(config_type) if 'help' in f.metadata]


def _violation(value, meta):
    """Why `value` is outside the field's range (None when it is inside)."""
    if isinstance(value, (list, tuple)):
        if meta['increasing'] and list(value) != sorted(set(value)):
            return 'must be increasing'
        for item in value:
            why = _violation(item, meta)
            if why:
                return why
        return None
    if meta['choices'] is not None and value not in meta['choices']:
        return 'choose one of %s' % ', '.join(map(str, meta['choices']))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return 'must be a finite number'
    if meta['low'] is not None and value < meta['low']:
        return 'must be >= %g' % meta['low']
    if meta['above'] is not None and not value > meta['above']:
        return 'must be > %g' % meta['above']
    if meta['high'] is not None and value > meta['high']:
        return 'must be <= %g' % meta['high']
    if meta['below'] is not None and not value < meta['below']:
        return 'must be < %g' % meta['below']
    return None


def check_options(config):
    """Raise UsageError naming the first option whose value is outside its range."""
    for f in option_fields(type(config)):
        value = getattr(config, f.name)
        if value is None:
            continue
        why = _violation(value, f.metadata)
        if why:
            shown = ','.join(map(str, value)) if isinstance(value, (list, tuple)) else value
            raise UsageError('--%s %s: %s' % (f.name, shown, why))


DTYPES = ('float32', 'bfloat16', 'auto')


@dataclass
class RunConfig:
    """Options every training command shares, spelled the same way by all of them."""
    log_dir: str = option('runs', 'parent folder of the run folders', group='run')
    run_name: Optional[str] = option(
        None, "name of this run's folder in --log_dir; default <model>-<date-time>", group='run')
    resume: Optional[str] = option(
        None, 'continue a run from its newest checkpoint that verifies; without a value, the '
              'newest run folder in --log_dir', nargs='?', metavar='RUN_DIR', group='run')
    seed: int = option(321, 'seed of initialisation, subset, shuffling, augmentation and '
                            'dropout', low=0, group='run')
    devices: Optional[str] = option(
        None, 'GPU number, a comma list of them (data-parallel training), or -1 / an empty '
              'string for the CPU; default GPU 0 when there is one, else the CPU',
        flags=('--gpu_index', '--gpus', '--gpu_idx'), metavar='DEVICES', group='run')
    dtype: str = option(
        'float32', 'arithmetic of training and evaluation: bfloat16 (float32 master weights '
                   'and checkpoints) is 2.4-2.9x faster on CPUs with fast bfloat16 kernels '
                   '(Intel AMX, AMD AVX-512 BF16); auto picks it there, float32 elsewhere; see '
                   'docs/precision.md', choices=DTYPES, group='run')
    quiet: bool = option(False, 'no progress bar and no per-batch lines (epoch lines and the '
                                'result are still printed)', group='run')
    stop_after_epochs: Optional[int] = option(
        None, 'stop (resumably) after N epochs of this invocation', low=1, group='run')
    keep_checkpoints: int = option(1, 'checkpoint folders kept (the newest N; a new one is read '
                                          'back before older ones go)', low=1,
                                   group='run')
    teacher_model: Optional[str] = option(
        None, 'run folder (or checkpoint folder) of a trained model whose logits teach the '
              'student in every stage', metavar='PATH', group='distillation')
    dist_lambda: float = option(0.5, 'weight of the soft (teacher) loss; 0 turns distillation '
                                     'off', low=0, high=1, group='distillation')
    dist_temp: float = option(1.0, 'softmax temperature of distillation', above=0,
                              group='distillation')


PerStage = Union[None, float, List[float]]


@dataclass
class PhasedConfig(RunConfig):
    """Options of the commands that train a classifier in the paper's three stages (CIFAR-10,
    ImageNet). A schedule option left at None takes the command's paper schedule
    (strassen_gluon.train.schedule), or its preset (--quick, --init_from)."""
    model: str = option('st_resnet20', 'model from the registry', group='model')
    nbr_mul: PerStage = option(
        None, 'r = int(nbr_mul * c_out) per SPN; one value or a comma list, one per network '
              'stage (ResNet: the stem and each stage of blocks; VGG: 3); default: the '
              'model\'s (1)', above=0, parse=('per_stage', float), group='model')
    out_patch: Union[None, int, List[int]] = option(
        None, 'output patch p of the SPN convolutions; one value or one per network stage; '
              'default: the model\'s (1)', low=1, parse=('per_stage', int), group='model')
    quantizer: Optional[str] = option(
        None, "ternary quantizer; 'threshold' is the original VGG script's fixed threshold "
              "(SPEC defect 5); default: the model's (twn)", choices=('twn', 'threshold'),
        group='model')
    init_from: Optional[str] = option(
        None, 'start from a trained dense network: a run folder of the dense twin or '
              'gluoncv:NAME; it also becomes the teacher, and the stages default to a short '
              'fine-tune', metavar='RUN_DIR|gluoncv:NAME', group='model')
    max_batches: Optional[int] = option(None, 'at most N training batches per epoch', low=1,
                                        group='data')
    max_eval_batches: Optional[int] = option(
        None, 'evaluate on at most N test batches per epoch (default: all)', low=1,
        group='data')
    epochs_fp: Optional[int] = option(
        None, 'epochs of stage 1, full-precision SPN (the only stage of a dense model); '
              "default: the paper's", low=0, group='schedule')
    epochs_quant: Optional[int] = option(None, "epochs of stage 2, ternary; default: the "
                                               "paper's", low=0, group='schedule')
    epochs_frozen: Optional[int] = option(
        None, "epochs of stage 3, ternary with W_b/W_c frozen; default: the paper's", low=0,
        group='schedule')
    lr_fp: Optional[float] = option(None, 'learning rate at the start of stage 1', above=0,
                                    group='schedule')
    lr_quant: Optional[float] = option(None, 'learning rate at the start of stage 2', above=0,
                                       group='schedule')
    lr_frozen: Optional[float] = option(None, 'learning rate at the start of stage 3', above=0,
                                        group='schedule')
    lr_steps_fp: Optional[List[int]] = option(
        None, "comma list of epochs of stage 1 at which lr *= lr_factor; default: the paper's "
              "steps scaled to --epochs_fp", low=1, increasing=True, parse='int_list',
        group='schedule')
    lr_steps_quant: Optional[List[int]] = option(None, 'the same for stage 2', low=1,
                                                 increasing=True, parse='int_list',
                                                 group='schedule')
    lr_steps_frozen: Optional[List[int]] = option(None, 'the same for stage 3', low=1,
                                                  increasing=True, parse='int_list',
                                                 group='schedule')
    lr_shape: str = option('step', "how the rate falls within a stage: 'step' (x lr_factor at "
                                   "the step epochs, the paper's) or 'cosine' (to 0 along a "
                                   "half cosine, epoch by epoch; steps ignored)",
                           choices=('step', 'cosine'), group='schedule')
    lr_factor: float = option(0.1, 'learning-rate multiplier at each step epoch', above=0,
                              high=1, group='schedule')
    freeze_wc: bool = option(
        False, 'keep W_c at its starting value in every stage while W_b trains (still ternary; '
               'after an exact --init_from conversion at p = 1 it is the identity, so each '
               'channel is one scaled ternary filter and no filters are mixed); not the paper\'s '
               'training', group='schedule')
    momentum: float = option(0.9, 'SGD momentum', low=0, below=1, group='schedule')
    wd: float = option(1e-4, 'weight decay', low=0, group='schedule')
    batch_size: int = option(128, 'images per update (per device)', low=1, group='schedule')
    sync_every: int = option(50, 'read the loss back from the device every N batches', low=1,
                             group='schedule')
