"""Train a CIFAR-10 model (ST-ResNet, ResNet, ST-VGG-7, VGG-7) with the paper's three stages.

    python -m strassen_gluon.cifar10 --model st_resnet20 --data_dir DIR
    python -m strassen_gluon.cifar10 --quick                      # a short demonstration
    python -m strassen_gluon.cifar10 --model st_resnet20 --init_from runs/cifar10/resnet20-...
    python -m strassen_gluon.cifar10 --resume runs/cifar10/st_resnet20-20240101-120000

From Python: ``train(CifarConfig(model='st_resnet20', ...))`` returns the run's summary.

The defaults are the paper's protocol (SPEC 2.2): 250 epochs full-precision SPN at lr 0.1, 40
epochs ternary at lr 0.01, 10 epochs with W_b/W_c frozen at lr 0.001, batch 128, SGD momentum 0.9,
weight decay 1e-4, seed 321. A dense model (resnet20, vgg7) trains one stage of --epochs_fp.
With --init_from (a trained dense twin, or gluoncv:cifar_resnet20_v1) the stages default to a
short fine-tune (``FINE_TUNE``) and the dense network teaches by distillation.

The options are CifarConfig's fields (strassen_gluon.config.option); the run driver is
strassen_gluon.train.driver's, the run folder schema strassen_gluon.train.run's, the exit
statuses strassen_gluon.errors'.
"""
import os
import sys
from dataclasses import dataclass
from typing import Optional

from . import cli
from .config import PhasedConfig, option
from .data import CifarBatches, load_cifar10, subset
from .errors import UsageError
from .models import resnet_cifar, vgg_cifar
from .train import driver
from .train.build import model_cost
from .train.classify import ClassificationTask
from .train.schedule import CIFAR_FINE_TUNE, CIFAR_QUICK, PAPER_CIFAR, preset_text

MODULE = 'strassen_gluon.cifar10'
INPUT_SHAPE = (1, 3, 32, 32)
CIFAR_MODELS = resnet_cifar.NAMES + vgg_cifar.NAMES
QUICK, FINE_TUNE = CIFAR_QUICK, CIFAR_FINE_TUNE


@dataclass
class CifarConfig(PhasedConfig):
    """Everything a CIFAR-10 run depends on (the command line fills it; see --help)."""
    STAGES = 4   # per-stage lists: ResNet stem,stage1,stage2,stage3 (VGG uses the first 3)
    model: str = option('st_resnet20', 'CIFAR model from the registry', choices=CIFAR_MODELS,
                        group='model')
    faithful: bool = option(False, "VGG only: the original's head without the ReLU after "
                                   "FC-1024 and without its bias (SPEC defect 6)",
                            group='model')
    data_dir: Optional[str] = option(
        None, 'CIFAR-10 python-version folder; default $STRASSEN_CIFAR10_DIR, then '
              '~/.mxnet/datasets/cifar10 (downloaded there when missing)', group='data')
    download: bool = option(True, 'never download; fail with a message when files are missing',
                            group='data')
    strict_counts: bool = option(True, 'accept other than the official 50000/10000 images '
                                       '(tiny test data)',
                                 flags=('--no_strict_counts', '--no-strict_counts'), group='data')
    train_subset: Optional[int] = option(
        None, 'train on a class-balanced random subset of N images', low=1, group='data')
    quick: bool = option(False, 'short demonstration: ' + preset_text(QUICK), group='run')
    log_dir: str = option(os.path.join('runs', 'cifar10'), 'parent folder of the run folders',
                          group='run')


class CifarRecipe(driver.PhasedRecipe):
    task = 'cifar10'
    module = MODULE
    paper, fine_tune = PAPER_CIFAR, FINE_TUNE
    # Options that define the model or its data: a resumed run must keep them.
    fixed = ('model', 'nbr_mul', 'out_patch', 'quantizer', 'faithful', 'seed', 'train_subset',
             'batch_size', 'init_from')

    def presets(self, config):
        return dict(QUICK if config.quick else {}, **super().presets(config))

    def load_data(self, config, ctx, say):
        data = load_cifar10(config.data_dir, download=config.download,
                            strict_counts=config.strict_counts)
        config.data_dir = data.folder   # recorded as found (the environment may have named it)
        if config.train_subset:
            try:
                data = subset(data, config.train_subset, seed=config.seed)
            except ValueError as err:
                raise UsageError('--train_subset: %s' % err) from None
        try:
            train = CifarBatches(data.train_images, data.train_labels, config.batch_size,
                                 train=True, ctx=ctx[0], seed=config.seed,
                                 max_batches=config.max_batches)
            test = CifarBatches(data.test_images, data.test_labels, config.batch_size,
                                train=False, ctx=ctx[0], max_batches=config.max_eval_batches)
        except ValueError as err:
            raise UsageError(str(err)) from None
        say('data: %d training images, %d of %d test images scored per evaluation, from %s'
            % (len(data.train_labels), test.images_per_epoch, len(data.test_labels), data.folder))
        return train, test

    def model(self, config, data):
        return config.model, model_kwargs(config)

    def calibration(self, net, data, ctx):
        return (next(iter(data[0]))[0],)

    def make_task(self, config, options, ctx, data, teacher):
        return ClassificationTask(options, ctx, data[0], data[1], teacher)

    def cost(self, net, config, ctx):
        return model_cost(net, INPUT_SHAPE)

    def result(self, summary):
        metrics = summary['metrics']
        return 'final val acc %.2f%% on %d test images (best %.2f%%)' % (
            100 * metrics['val_acc'], summary['eval_images'] or 0, 100 * summary['best']['value'])


def model_kwargs(config):
    """The model constructor's options that the configuration sets (model defaults otherwise)."""
    kwargs = {k: getattr(config, k) for k in ('nbr_mul', 'out_patch', 'quantizer')
              if getattr(config, k) is not None}
    if config.faithful:
        kwargs['faithful'] = True
    return kwargs


def build_parser():
    return cli.build_parser(
        CifarConfig, 'python -m ' + MODULE, stages=CifarConfig.STAGES,
        description='Train a Strassen (or full-precision) network on CIFAR-10: full-precision '
                    'SPN, then ternary W_b/W_c, then W_b/W_c frozen. Schedule defaults: the '
                    "paper's (250 + 40 + 10 epochs at lr 0.1, 0.01, 0.001); with --init_from: "
                    + preset_text(FINE_TUNE))


def parse_args(argv=None):
    """(CifarConfig, the option names written on the command line)."""
    return cli.parse(build_parser(), CifarConfig, argv)


def train(config, explicit=None, command=None, say=None):
    """Train as `config` says; returns the run's summary (schema: strassen_gluon.train.run), or
    None when stopped early by `stop_after_epochs`. See strassen_gluon.train.driver.run."""
    return driver.run(config, CifarRecipe(), explicit, command, say)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    config, explicit = parse_args(argv)
    return cli.run_command(train, config, explicit, cli.command_line(MODULE, argv))


if __name__ == '__main__':
    sys.exit(main())
