"""ImageNet command: train ResNet-18 or ST-ResNet-18 from RecordIO files (SPEC 2.5, 3.4).

    python -m strassen_gluon.imagenet --train_rec train.rec --val_rec val.rec --gpus 0,1,2,3
    python -m strassen_gluon.imagenet ... --model st_resnet18 --init_from gluoncv:resnet18_v1

From Python: ``train(ImageNetConfig(train_rec=..., val_rec=...))`` returns the run's summary.

Stages (SPEC 2.5; SGD, momentum 0.9): 70 epochs with full-precision SPNs at lr 0.05, x0.1 after
epochs 40 and 60; 10 epochs with ternary W_b, W_c at lr 0.0005; 5 epochs with W_b, W_c frozen at
lr 0.0005. The full-precision ``resnet18`` trains the first schedule in one stage. With
--init_from the stages default to a short fine-tune (``FINE_TUNE``). Training runs on the shared
loop (train/loop.py) with the classification task (train/classify.py), reporting top1 and top5.

Parallelism:

* one machine: the batch is split over ``--gpus`` and the gradients are summed by a
  ``device`` (or ``local``) kvstore, as gluon does;
* several machines: ``--kvstore dist_sync``, each process started by MXNet's launcher
  (``python -m strassen_gluon.imagenet launch ...`` runs ``mxnet/tools/launch.py``); how the
  workers stay identical is strassen_gluon.train.distributed's docstring. The run folder is
  ``<log_dir>/<run_name>`` as for every command; in a dist_sync job (which needs --run_name, so
  that the workers agree) worker k keeps its own run folder ``<log_dir>/<run_name>/worker<k>``
  and resumes from it (``--resume`` names the job's folder).
"""
import sys
from dataclasses import dataclass
from typing import Optional

from . import cli
from .config import PhasedConfig, option
from .data.imagenet import RecordBatches
from .errors import UsageError
from .train import driver
from .train.build import model_cost
from .train.classify import ClassificationTask
from .train.distributed import (DistSyncTrainer, WorkerGroup, launch,  # noqa: F401 (API)
                                worker_config, worker_group)
from .train.stages import trainable_params
from .train.schedule import IMAGENET_FINE_TUNE, PAPER_IMAGENET, paper_stages, preset_text

MODULE = 'strassen_gluon.imagenet'
IMAGENET_MODELS = ('resnet18', 'st_resnet18')
KVSTORES = ('device', 'local', 'dist_sync')
FINE_TUNE = IMAGENET_FINE_TUNE


def imagenet_stages(spn=True, epochs=(None, None, None), lrs=(None, None, None)):
    """The stages of SPEC 2.5 with per-stage overrides (schedule.paper_stages)."""
    return paper_stages(spn, epochs, lrs, paper=PAPER_IMAGENET)


@dataclass
class ImageNetConfig(PhasedConfig):
    """Everything an ImageNet run depends on (the command line fills it; see --help)."""
    STAGES = 5   # per-stage lists: stem + four stages
    model: str = option('st_resnet18', 'ImageNet model from the registry',
                        choices=IMAGENET_MODELS, group='model')
    groups: int = option(1, 'groups g of the W_b convolutions (the stem uses 1 unless g divides '
                            '3)', low=1, group='model')
    train_rec: Optional[str] = option(None, 'training RecordIO file (.rec); required unless '
                                            '--resume', group='data')
    train_idx: Optional[str] = option(None, 'its index; default: the .rec path, .idx',
                                      group='data')
    val_rec: Optional[str] = option(None, 'validation RecordIO file (.rec); required unless '
                                          '--resume', group='data')
    val_idx: Optional[str] = option(None, 'its index; default: the .rec path, .idx',
                                    group='data')
    image_size: int = option(224, 'training crop and validation centre crop', low=1,
                             group='data')
    num_workers: int = option(4, 'decoding threads per process (CPU builds of MXNet decode with '
                                 'OpenMP threads instead: set OMP_NUM_THREADS)', low=1,
                              group='data')
    classes: int = option(1000, 'number of classes', low=1, group='data')
    kvstore: str = option('device', 'gradient summation: over the GPUs of this machine (device, '
                                    'local) or over machines (dist_sync, under the launcher)',
                          choices=KVSTORES, group='schedule')
    log_dir: str = option('runs/imagenet', 'parent folder of the run folders', group='run')


class ImageNetTask(ClassificationTask):
    """Classification with top1/top5, and across the workers of a dist_sync job."""

    def __init__(self, options, ctx, train_data, eval_data, teacher, group):
        super().__init__(options, ctx, train_data, eval_data, teacher, topk=(1, 5))
        self.group = group

    def make_trainer(self, net, lr):
        if self.group is None:
            return super().make_trainer(net, lr)
        o = self.options
        return DistSyncTrainer(trainable_params(net), 'sgd',
                               {'learning_rate': lr, 'momentum': o.momentum, 'wd': o.wd},
                               self.group)

    def after_epoch(self, net):
        if self.group is not None:
            self.group.average_batchnorm_statistics(net)


class ImageNetRecipe(driver.PhasedRecipe):
    task = 'imagenet'
    module = MODULE
    paper, fine_tune = PAPER_IMAGENET, FINE_TUNE
    # Options that define the model or its data: a resumed run must keep them.
    fixed = ('model', 'nbr_mul', 'out_patch', 'groups', 'quantizer', 'classes', 'image_size',
             'seed', 'batch_size', 'train_rec', 'init_from')
    group = None
    rank, workers = 0, 1

    def prepare(self, config):
        self.group = worker_group(config.kvstore)
        if self.group is None:
            return config
        self.rank, self.workers = self.group.rank, self.group.size
        self.prefix = '[worker %d/%d] ' % (self.rank, self.workers)
        return worker_config(config, self.rank)

    def load_data(self, config, ctx, say):
        if not config.train_rec or not config.val_rec:
            raise UsageError('--train_rec and --val_rec are required (RecordIO files)')
        batch = config.batch_size * len(ctx)
        train = RecordBatches(config.train_rec, batch, config.image_size, train=True,
                              idx_path=config.train_idx, num_parts=self.workers,
                              part_index=self.rank, num_workers=config.num_workers,
                              seed=config.seed, max_batches=config.max_batches)
        val = RecordBatches(config.val_rec, batch, config.image_size, train=False,
                            idx_path=config.val_idx, num_workers=config.num_workers,
                            max_batches=config.max_eval_batches)
        say('data: %d batches of %d per epoch on %d worker(s)' % (len(train), batch,
                                                                  self.workers))
        return train, val

    def model(self, config, data):
        if config.model == 'resnet18':
            return config.model, dict(classes=config.classes)
        return config.model, dict(nbr_mul=1.0 if config.nbr_mul is None else config.nbr_mul,
                                  out_patch=1 if config.out_patch is None else config.out_patch,
                                  groups=config.groups, quantizer=config.quantizer or 'twn',
                                  classes=config.classes)

    def calibration(self, net, data, ctx):
        return (next(iter(data[1]))[0].as_in_context(ctx[0]),)

    def loop_options(self, config):
        options = dict(kvstore=config.kvstore)
        if self.rank:
            options['progress'] = False
        return options

    def make_task(self, config, options, ctx, data, teacher):
        if len(ctx) == 1:
            options.kvstore = None
        return ImageNetTask(options, ctx, data[0], data[1], teacher, self.group)

    def after_restore(self, net):
        if self.group is not None:
            self.group.broadcast_parameters(net)

    def cost(self, net, config, ctx):
        return model_cost(net, (1, 3, config.image_size, config.image_size))

    def record(self, data):
        return dict(rank=self.rank, num_workers=self.workers)

    def result(self, summary):
        metrics = summary['metrics']
        return 'top1 %.2f%%, top5 %.2f%% on %d validation images' % (
            100 * metrics['top1'], 100 * metrics['top5'], summary['eval_images'] or 0)


def build_parser():
    return cli.build_parser(
        ImageNetConfig, 'python -m ' + MODULE, stages=ImageNetConfig.STAGES,
        description='Train ResNet-18 / ST-ResNet-18 on ImageNet RecordIO files: full-precision '
                    'SPN, then ternary W_b/W_c, then W_b/W_c frozen (SPEC 2.5: 70 + 10 + 5 '
                    'epochs at lr 0.05 (x0.1 after 40 and 60), 0.0005, 0.0005, for a total '
                    'batch of 128; with --init_from: %s). "python -m strassen_gluon.imagenet '
                    'launch LAUNCH_ARGS -- COMMAND" runs MXNet\'s launcher '
                    '(mxnet/tools/launch.py) for --kvstore dist_sync.' % preset_text(FINE_TUNE))


def parse_args(argv=None):
    """(ImageNetConfig, the option names written on the command line)."""
    return cli.parse(build_parser(), ImageNetConfig, argv)


def train(config, explicit=None, command=None, say=None):
    """Train as `config` says; returns the run's summary (schema: strassen_gluon.train.run), or
    None when stopped early. See strassen_gluon.train.driver.run."""
    return driver.run(config, ImageNetRecipe(), explicit, command, say)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['launch']:
        return cli.run_command(launch, argv[1:])
    config, explicit = parse_args(argv)
    return cli.run_command(train, config, explicit, cli.command_line(MODULE, argv))


if __name__ == '__main__':
    sys.exit(main())
