"""Train a CIFAR-10 model (ST-ResNet, ResNet, ST-VGG-7, VGG-7) with the paper's three phases.

    python -m strassen_gluon.cifar10 --model st_resnet20 --data_dir DIR
    python -m strassen_gluon.cifar10 --quick                      # a short demonstration
    python -m strassen_gluon.cifar10 --model st_resnet20 --init_from runs/cifar10/resnet20-...
    python -m strassen_gluon.cifar10 --resume runs/cifar10/st_resnet20-20240101-120000

From Python: ``train(CifarConfig(model='st_resnet20', ...))`` returns the run's summary.

The defaults are the paper's protocol (SPEC 2.2): 250 epochs full-precision SPN at lr 0.1, 40
epochs ternary at lr 0.01, 10 epochs with W_b/W_c frozen at lr 0.001, batch 128, SGD momentum 0.9,
weight decay 1e-4, seed 321. A dense model (resnet20, vgg7) trains one phase of --epochs_fp.
With --init_from (a trained dense twin, or gluoncv:cifar_resnet20_v1) the phases default to a
short fine-tune (``FINE_TUNE``) and the dense network teaches by distillation.

The run folder schema is strassen_gluon.train.run's; exit statuses are strassen_gluon.errors'.
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import List, Optional, Union

from . import cli
from .config import RunConfig
from .data import CifarBatches, load_cifar10, subset
from .errors import Interrupted, UsageError
from .models import resnet_cifar, vgg_cifar
from .train.build import build_model, choose_teacher, init_from, model_cost
from .train.classify import ClassificationTask
from .train.loop import LoopOptions, restore, run_phases, seed_everything
from .train.phases import enter_phase, has_spn
from .train.plots import save_learning_curves
from .train.run import epoch_log, open_run, write_run, write_summary
from .train.schedule import PAPER_BY_NAME, paper_phases
from .train.teacher import load_teacher

TASK = 'cifar10'
MODULE = 'strassen_gluon.cifar10'
CURVES_NAME = 'curves.png'
INPUT_SHAPE = (1, 3, 32, 32)
CIFAR_MODELS = resnet_cifar.NAMES + vgg_cifar.NAMES

# A short demonstration (--quick): a 2000-image subset, 2 + 1 + 1 epochs, 2048 test images,
# and no learning-rate step inside the 2-epoch first phase: a step after a few dozen updates
# mostly lets the momentum coast (MXNet's SGD velocity keeps the old rate's step size).
QUICK = dict(train_subset=2000, epochs_fp=2, epochs_quant=1, epochs_frozen=1,
             max_eval_batches=16, lr_steps_fp=[])
# The phases of a network converted from a trained dense one (--init_from), 4 epochs in all:
# one full-precision epoch at a tenth of the paper's rate lets the SPN batch norms and ã settle
# without leaving the dense solution, two ternary epochs (the rate steps down after the first)
# absorb the quantisation, one frozen epoch tunes ã, the batch norms and the classifier.
FINE_TUNE = dict(epochs_fp=1, epochs_quant=2, epochs_frozen=1, lr_fp=0.01, lr_quant=0.01,
                 lr_frozen=0.001, lr_steps_fp=[], lr_steps_quant=[1], lr_steps_frozen=[])
# Options that define the model or its data: a resumed run must keep them.
FIXED = ('model', 'nbr_mul', 'out_patch', 'quantizer', 'faithful', 'seed', 'train_subset',
         'batch_size', 'init_from')

PerStage = Union[None, float, List[float]]


@dataclass
class CifarConfig(RunConfig):
    """Everything a CIFAR-10 run depends on (the command line fills it; see --help)."""
    model: str = 'st_resnet20'
    nbr_mul: PerStage = None           # model default 1; one value or one per stage
    out_patch: Union[None, int, List[int]] = None
    quantizer: Optional[str] = None    # 'twn' (model default) or 'threshold'
    faithful: bool = False
    init_from: Optional[str] = None    # run folder of the dense twin, or gluoncv:NAME
    data_dir: Optional[str] = None
    download: bool = True
    strict_counts: bool = True
    train_subset: Optional[int] = None
    max_batches: Optional[int] = None
    max_eval_batches: Optional[int] = None
    epochs_fp: int = 250
    epochs_quant: int = 40
    epochs_frozen: int = 10
    lr_fp: float = PAPER_BY_NAME['full'].lr
    lr_quant: float = PAPER_BY_NAME['ternary'].lr
    lr_frozen: float = PAPER_BY_NAME['frozen'].lr
    lr_steps_fp: Optional[List[int]] = None
    lr_steps_quant: Optional[List[int]] = None
    lr_steps_frozen: Optional[List[int]] = None
    lr_factor: float = 0.1
    momentum: float = 0.9
    wd: float = 1e-4
    batch_size: int = 128
    sync_every: int = 50
    log_dir: str = os.path.join('runs', 'cifar10')


# ----------------------------------------------------------------------------- command line

def build_parser():
    p = argparse.ArgumentParser(
        prog='python -m ' + MODULE,
        description='Train a Strassen (or full-precision) network on CIFAR-10: full-precision '
                    'SPN, then ternary W_b/W_c, then W_b/W_c frozen.',
        formatter_class=cli.HelpFormatter)
    m = p.add_argument_group('model')
    m.add_argument('--model', default='st_resnet20', choices=CIFAR_MODELS,
                   help='CIFAR model from the registry')
    m.add_argument('--nbr_mul', type=cli.per_stage(float, 4), default=None,
                   help='r = int(nbr_mul * c_out) per SPN; one value or a comma list per stage '
                        '(ResNet: stem,stage1,stage2,stage3; VGG: 3 stages); model default 1')
    m.add_argument('--out_patch', type=cli.per_stage(int, 4), default=None,
                   help='output patch p of the SPN convolutions; one value or a per-stage '
                        'list; model default 1')
    m.add_argument('--quantizer', choices=('twn', 'threshold'), default=None,
                   help="ternary quantizer; 'threshold' is the original VGG script's fixed "
                        "threshold (SPEC defect 5); model default twn")
    m.add_argument('--faithful', action='store_true',
                   help="VGG only: the original's head without the ReLU after FC-1024 and "
                        "without its bias (SPEC defect 6)")
    m.add_argument('--init_from', default=None, metavar='RUN_DIR|gluoncv:NAME',
                   help='start from a trained dense network: a run folder of the dense twin '
                        '(resnet20 for st_resnet20) or gluoncv:cifar_resnet20_v1 / '
                        'gluoncv:cifar_resnet56_v1; it also becomes the teacher, and the phases '
                        'default to a short fine-tune: ' + _preset_text(FINE_TUNE))

    d = p.add_argument_group('data')
    d.add_argument('--data_dir', default=None,
                   help='CIFAR-10 python-version folder; default $STRASSEN_CIFAR10_DIR, then '
                        '~/.mxnet/datasets/cifar10 (downloaded there when missing)')
    d.add_argument('--no_download', dest='download', action='store_false',
                   help='never download; fail with a message when files are missing')
    d.add_argument('--strict_counts', action=argparse.BooleanOptionalAction, default=True,
                   help='require the official 50000/10000 images (--no-strict_counts for tiny '
                        'test data)')
    d.add_argument('--train_subset', type=int, default=None,
                   help='train on a class-balanced random subset of N images')
    d.add_argument('--max_batches', type=int, default=None,
                   help='at most N training batches per epoch')
    d.add_argument('--max_eval_batches', type=int, default=None,
                   help='evaluate on at most N test batches per epoch (default: all)')

    t = p.add_argument_group('schedule (defaults: the paper)')
    t.add_argument('--epochs_fp', type=int, default=250,
                   help='epochs of phase 1, full-precision SPN (the only phase of dense models)')
    t.add_argument('--epochs_quant', type=int, default=40, help='epochs of phase 2, ternary')
    t.add_argument('--epochs_frozen', type=int, default=10,
                   help='epochs of phase 3, ternary with W_b/W_c frozen')
    t.add_argument('--lr_fp', type=float, default=PAPER_BY_NAME['full'].lr,
                   help='learning rate at the start of phase 1')
    t.add_argument('--lr_quant', type=float, default=PAPER_BY_NAME['ternary'].lr,
                   help='learning rate at the start of phase 2')
    t.add_argument('--lr_frozen', type=float, default=PAPER_BY_NAME['frozen'].lr,
                   help='learning rate of phase 3')
    t.add_argument('--lr_steps_fp', type=cli.int_list, default=None,
                   help='comma list of epochs of phase 1 where lr *= lr_factor; default 150,200 '
                        'scaled to --epochs_fp')
    t.add_argument('--lr_steps_quant', type=cli.int_list, default=None,
                   help='the same for phase 2; default 10,20,30 scaled to --epochs_quant')
    t.add_argument('--lr_steps_frozen', type=cli.int_list, default=None,
                   help='the same for phase 3; default none (constant lr)')
    t.add_argument('--lr_factor', type=float, default=0.1,
                   help='learning-rate multiplier at each step epoch')
    t.add_argument('--momentum', type=float, default=0.9, help='SGD momentum')
    t.add_argument('--wd', type=float, default=1e-4, help='weight decay')
    t.add_argument('--batch_size', type=int, default=128, help='images per update')
    t.add_argument('--sync_every', type=int, default=50,
                   help='read the loss back from the device every N batches')

    cli.add_distillation_arguments(p, 'resnet20')
    cli.add_run_arguments(p, os.path.join('runs', 'cifar10'), '<model>')
    p.add_argument('--quick', action='store_true',
                   help='short demonstration: ' + _preset_text(QUICK))
    return p


def _preset_text(preset):
    return ' '.join('--%s %s' % (k, (','.join(map(str, v)) or "''") if isinstance(v, list)
                                 else v) for k, v in preset.items())


def parse_args(argv=None):
    """(CifarConfig, the option names written on the command line)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, explicit = cli.parse_config(parser, argv)
    presets = dict(QUICK) if args.quick else {}
    if args.init_from:
        presets.update(FINE_TUNE)
    if presets:
        args, explicit = cli.parse_config(parser, argv, defaults=presets)
    return cli.config_from_args(CifarConfig, args), explicit


# ----------------------------------------------------------------------------- pieces

def model_kwargs(config):
    """The model constructor's options that the configuration sets (model defaults otherwise)."""
    kwargs = {k: getattr(config, k) for k in ('nbr_mul', 'out_patch', 'quantizer')
              if getattr(config, k) is not None}
    if config.faithful:
        kwargs['faithful'] = True
    return kwargs


def phases_for(net, config):
    return paper_phases(spn=has_spn(net),
                        epochs=(config.epochs_fp, config.epochs_quant, config.epochs_frozen),
                        lrs=(config.lr_fp, config.lr_quant, config.lr_frozen),
                        steps=(config.lr_steps_fp, config.lr_steps_quant,
                               config.lr_steps_frozen),
                        factor=config.lr_factor)


def load_data(config, say=print):
    data = load_cifar10(config.data_dir, download=config.download,
                        strict_counts=config.strict_counts)
    if config.train_subset:
        try:
            data = subset(data, config.train_subset, seed=config.seed)
        except ValueError as err:
            raise UsageError('--train_subset: %s' % err) from None
    say('data: %d training, %d test images from %s'
        % (len(data.train_labels), len(data.test_labels), data.folder))
    return data


def make_batches(data, config, ctx):
    """Training and evaluation batches on `ctx` (the first device; split across devices later)."""
    try:
        return (CifarBatches(data.train_images, data.train_labels, config.batch_size,
                             train=True, ctx=ctx, seed=config.seed,
                             max_batches=config.max_batches),
                CifarBatches(data.test_images, data.test_labels, config.batch_size,
                             train=False, ctx=ctx, max_batches=config.max_eval_batches))
    except ValueError as err:
        raise UsageError(str(err)) from None


def write_curves(run_dir, title):
    return save_learning_curves(epoch_log(run_dir), os.path.join(run_dir, CURVES_NAME), title)


# ----------------------------------------------------------------------------- train

def train(config, explicit=None, command=None, say=print):
    """Train as `config` says; returns the run's summary (schema: strassen_gluon.train.run),
    or None when stopped early by `stop_after_epochs`.

    `explicit`: the option names the user set (on resume they override the stored ones);
    default those that differ from the defaults. `command`: the command line, for the record.
    Raises the library's errors (UsageError,
    DataError, RunFolderError, Diverged, Interrupted).
    """
    run_dir, config, record = open_run(config, TASK, FIXED, command or 'train(%r)' % (config,),
                                       explicit, default_name=config.model)
    ctx = cli.contexts(config.devices, say)
    kwargs = model_kwargs(config)
    net = build_model(config.model, kwargs)
    phases = phases_for(net, config)
    if not phases:
        raise UsageError('no epochs to train (all phase lengths are 0)')
    if config.init_from and not has_spn(net):
        raise UsageError('--init_from converts a dense network into a Strassen one; %s has no '
                         'SPN layers' % config.model)
    # Everything that can fail on the user's input happens before the run folder is written.
    data = load_data(config, say)
    train_batches, eval_batches = make_batches(data, config, ctx[0])
    seed_everything(config.seed)
    net.initialize(ctx=ctx)
    dense = None
    if config.init_from:  # also on resume: the dense network teaches (the checkpoint wins)
        calibration = next(iter(train_batches))[0]
        net(calibration)  # shapes known before the dense weights are copied in
        dense, _ = init_from(config.init_from, net, config.model, ctx, calibration,
                             download=config.download, say=say)
    teacher = choose_teacher(config, dense, lambda path: load_teacher(path, ctx, say), say)
    write_run(run_dir, record, model=config.model, model_kwargs=kwargs)

    start, ckpt = restore(net, run_dir, phases, ctx)
    title = '%s %s' % (config.model, json.dumps(kwargs) if kwargs else '')
    options = LoopOptions(momentum=config.momentum, wd=config.wd,
                          dist_lambda=config.dist_lambda, dist_temp=config.dist_temp,
                          sync_every=config.sync_every, seed=config.seed,
                          progress=not config.quiet and sys.stderr.isatty(),
                          keep_checkpoints=config.keep_checkpoints,
                          kvstore='device' if len(ctx) > 1 else None, print_fn=say)
    task = ClassificationTask(options, ctx, train_batches, eval_batches, teacher)
    if start[0] >= len(phases):
        say('%s: the run is already finished' % run_dir)
        enter_phase(net, phases[-1])
        return _finish(run_dir, net, record, task, phases, title, say)
    if ckpt is not None:
        say('resuming %s at phase %s, epoch %d from %s'
            % (run_dir, phases[start[0]].name, start[1] + 1, os.path.basename(ckpt)))
    say('%s %s on %s; phases: %s; run folder %s'
        % (config.model, json.dumps(kwargs) if kwargs else '(defaults)',
           ', '.join(str(c) for c in ctx),
           ', '.join('%s %d ep lr %g' % (p.name, p.epochs, p.lr) for p in phases), run_dir))
    net.hybridize(static_alloc=True)
    meta = dict(model=config.model, model_kwargs=kwargs, seed=config.seed, task=TASK,
                run_dir=os.path.abspath(run_dir))
    try:
        status = run_phases(task, net, phases, run_dir, meta, start=start, checkpoint=ckpt,
                            stop_after_epochs=config.stop_after_epochs,
                            on_phase_end=lambda spec: write_curves(run_dir, title))
    except KeyboardInterrupt:
        raise Interrupted('interrupted; the last complete epoch is saved: continue with '
                          'python -m %s --resume %s' % (MODULE, run_dir)) from None
    finally:
        write_curves(run_dir, title)
    if status == 'stopped':
        say('stopped after %d epoch(s); continue with: python -m %s --resume %s'
            % (config.stop_after_epochs, MODULE, run_dir))
        return None
    return _finish(run_dir, net, record, task, phases, title, say)


def _finish(run_dir, net, record, task, phases, title, say):
    write_curves(run_dir, title)
    summary = write_summary(run_dir, record, task, phases, cost=model_cost(net, INPUT_SHAPE))
    cost = summary['cost']
    say('final val acc %.2f%% (best %.2f%%)%s; %s'
        % (100 * summary['metrics']['val_acc'], 100 * summary['best']['value'],
           '; %s mults, %s adds, %.3f MB' % (f"{cost['mults']:,}", f"{cost['adds']:,}",
                                              cost['bits'] / 8e6) if cost else '',
           os.path.join(run_dir, 'summary.json')))
    return summary


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    config, explicit = parse_args(argv)
    return cli.run_command(train, config, explicit, cli.command_line(MODULE, argv))


if __name__ == '__main__':
    sys.exit(main())
