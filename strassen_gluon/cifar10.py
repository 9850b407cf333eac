"""Train a CIFAR-10 model (ST-ResNet, ResNet, ST-VGG-7, VGG-7) with the paper's three phases.

    python -m strassen_gluon.cifar10 --model st_resnet20 --data_dir DIR
    python -m strassen_gluon.cifar10 --quick                      # a short demonstration
    python -m strassen_gluon.cifar10 --resume runs/cifar10/st_resnet20-20240101-120000

The defaults are the paper's protocol (SPEC 2.2): 250 epochs full-precision SPN at lr 0.1, 40
epochs ternary at lr 0.01, 10 epochs with W_b/W_c frozen at lr 0.001, batch 128, SGD momentum 0.9,
weight decay 1e-4, seed 321. A dense model (resnet20, vgg7) trains one phase of --epochs_fp.

Each run gets a folder, ``<log_dir>/<run_name>`` (default ``runs/cifar10/<model>-<time>``),
holding ``config.json`` (options and command lines), ``log.jsonl`` (one record per epoch), the
latest checkpoint, and at the end ``summary.json`` and ``curves.png``. See README for details.

Exit status: 0 done (or stopped by --stop_after_epochs), 1 data missing or unusable, 2 bad
options, 3 the loss diverged (NaN), 130 interrupted.
"""
import argparse
import copy
import datetime
import glob
import json
import os
import shlex
import sys
import time

import mxnet as mx

from .cli import (EXIT_DATA, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError,
                  add_distillation_arguments)
from .data import CifarBatches, CifarFormatError, CifarNotFoundError, load_cifar10, subset
from .models import get_model, resnet_cifar, vgg_cifar
from .train.checkpoint import git_revision, load_checkpoint, write_json_atomic
from .train.loop import (LOG_NAME, Diverged, LoopOptions, resume_position, run_phases,
                         seed_everything, trim_log)
from .train.logs import read_jsonl
from .train.phases import enter_phase, has_spn
from .train.plots import save_learning_curves
from .train.schedule import PAPER_BY_NAME, learning_rate, paper_phases
from .train.teacher import load_teacher

CONFIG_NAME = 'config.json'
SUMMARY_NAME = 'summary.json'
CURVES_NAME = 'curves.png'
INPUT_SHAPE = (1, 3, 32, 32)

# A short demonstration (--quick): a 2000-image subset, 2 + 1 + 1 epochs, 2048 test images,
# and no learning-rate step inside the 2-epoch first phase: a step after a few dozen updates
# mostly lets the momentum coast (MXNet's SGD velocity keeps the old rate's step size).
QUICK = dict(train_subset=2000, epochs_fp=2, epochs_quant=1, epochs_frozen=1,
             max_eval_batches=16, lr_steps_fp=[])
# Options that define the model or its data: a resumed run must keep them.
FIXED_ON_RESUME = ('model', 'nbr_mul', 'out_patch', 'quantizer', 'faithful', 'seed',
                   'train_subset', 'batch_size')
# Options that concern one invocation only: not inherited by a resumed run.
PER_INVOCATION = ('stop_after_epochs', 'run_name', 'resume')

CIFAR_MODELS = resnet_cifar.NAMES + vgg_cifar.NAMES


class Interrupted(Exception):
    """Ctrl-C during training; carries the run folder to resume."""


# ----------------------------------------------------------------------------- options

def _float_or_list(text):
    values = [float(v) for v in text.split(',')]
    return values[0] if len(values) == 1 else values


def _int_or_list(text):
    values = [int(v) for v in text.split(',')]
    return values[0] if len(values) == 1 else values


def _int_list(text):
    return [int(v) for v in text.split(',') if v.strip()] if text.strip() else []


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None and False (which mean 'not set')."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser():
    p = argparse.ArgumentParser(
        prog='python -m strassen_gluon.cifar10',
        description='Train a Strassen (or full-precision) network on CIFAR-10: full-precision '
                    'SPN, then ternary W_b/W_c, then W_b/W_c frozen.',
        formatter_class=_HelpFormatter)
    m = p.add_argument_group('model')
    m.add_argument('--model', default='st_resnet20', choices=CIFAR_MODELS,
                   help='CIFAR model from the registry')
    m.add_argument('--nbr_mul', type=_float_or_list, default=None,
                   help='r = int(nbr_mul * c_out) per SPN; one value or a comma list per stage '
                        '(ResNet: stem,stage1,stage2,stage3; VGG: 3 stages); model default 1')
    m.add_argument('--out_patch', type=_int_or_list, default=None,
                   help='output patch p of the SPN convolutions; one value or a per-stage '
                        'list; model default 1')
    m.add_argument('--quantizer', choices=('twn', 'threshold'), default=None,
                   help="ternary quantizer; 'threshold' is the original VGG script's fixed "
                        "threshold (SPEC defect 5); model default twn")
    m.add_argument('--faithful', action='store_true',
                   help="VGG only: the original's head without the ReLU after FC-1024 and "
                        "without its bias (SPEC defect 6)")

    d = p.add_argument_group('data')
    d.add_argument('--data_dir', default=None,
                   help='CIFAR-10 python-version folder; default $STRASSEN_CIFAR10_DIR, then '
                        '~/.mxnet/datasets/cifar10 (downloaded there when missing)')
    d.add_argument('--no_download', action='store_true',
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
    t.add_argument('--lr_steps_fp', type=_int_list, default=None,
                   help='comma list of epochs of phase 1 where lr *= lr_factor; default 150,200 '
                        'scaled to --epochs_fp')
    t.add_argument('--lr_steps_quant', type=_int_list, default=None,
                   help='the same for phase 2; default 10,20,30 scaled to --epochs_quant')
    t.add_argument('--lr_steps_frozen', type=_int_list, default=None,
                   help='the same for phase 3; default none (constant lr)')
    t.add_argument('--lr_factor', type=float, default=0.1,
                   help='learning-rate multiplier at each step epoch')
    t.add_argument('--momentum', type=float, default=0.9, help='SGD momentum')
    t.add_argument('--wd', type=float, default=1e-4, help='weight decay')
    t.add_argument('--batch_size', type=int, default=128, help='images per update')
    t.add_argument('--seed', type=int, default=321,
                   help='seed of initialisation, subset, shuffling and augmentation')

    add_distillation_arguments(p, 'resnet20')

    r = p.add_argument_group('run')
    r.add_argument('--gpu_index', '--gpu_idx', dest='gpu_index', default='0',
                   help='GPU number, a comma list for data-parallel training, or -1 for CPU; '
                        'without a GPU the CPU is used')
    r.add_argument('--log_dir', default=os.path.join('runs', 'cifar10'),
                   help='parent folder of the run folders')
    r.add_argument('--run_name', default=None,
                   help='name of this run\'s folder in --log_dir; default <model>-<date-time>')
    r.add_argument('--resume', nargs='?', const='latest', default=None, metavar='RUN_DIR',
                   help='continue a run from its last checkpoint; without a value, the newest '
                        'run folder in --log_dir')
    r.add_argument('--stop_after_epochs', type=int, default=None,
                   help='stop (resumably) after N epochs of this invocation')
    r.add_argument('--sync_every', type=int, default=50,
                   help='read the loss back from the device every N batches')
    r.add_argument('--quiet', action='store_true', help='no progress bar')
    r.add_argument('--quick', action='store_true',
                   help='short demonstration: ' + ' '.join(
                       '--%s %s' % (k, (','.join(map(str, v)) or "''") if isinstance(v, list)
                                    else v)
                       for k, v in QUICK.items()))
    return p


def explicit_options(parser, argv):
    """The destinations of the options actually written in `argv` (defaults excluded)."""
    shadow = copy.deepcopy(parser)
    for action in shadow._actions:
        action.default = argparse.SUPPRESS
    shadow._defaults = {}
    return set(vars(shadow.parse_args(argv)))


def parse_args(argv=None):
    """Options as a Namespace with `explicit` (the set of options the user gave)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    args.explicit = explicit_options(parser, argv)
    args.argv = argv
    return args


# ----------------------------------------------------------------------------- pieces

def contexts(gpu_index, say=print):
    """Contexts from --gpu_index: '-1' is the CPU, '0' or '0,1' GPUs (data parallel)."""
    try:
        indices = [int(i) for i in str(gpu_index).split(',')]
    except ValueError:
        raise UsageError('--gpu_index takes -1 (CPU), a GPU number or a comma list of them, '
                         'not %r' % (gpu_index,)) from None
    if indices == [-1]:
        return [mx.cpu()]
    if any(i < 0 for i in indices):
        raise UsageError('--gpu_index: -1 alone means CPU; GPU numbers are >= 0, got %s'
                         % gpu_index)
    available = mx.context.num_gpus()
    if available == 0:
        say('no GPU found: training on the CPU')
        return [mx.cpu()]
    missing = [i for i in indices if i >= available]
    if missing:
        raise UsageError('--gpu_index %s: this machine has %d GPU(s) (0-%d)'
                         % (gpu_index, available, available - 1))
    return [mx.gpu(i) for i in indices]


def model_kwargs(args):
    """The model constructor's options that the user set (the model's defaults otherwise)."""
    kwargs = {}
    for name in ('nbr_mul', 'out_patch', 'quantizer'):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.faithful:
        kwargs['faithful'] = True
    return kwargs


def build_model(name, kwargs):
    try:
        return get_model(name, **kwargs)
    except TypeError as err:
        if 'unexpected keyword argument' in str(err):
            raise UsageError('model %s does not take %s (SPN options apply to st_* models, '
                             '--faithful to the VGG models)'
                             % (name, ', '.join('--' + k for k in kwargs))) from None
        raise
    except ValueError as err:
        raise UsageError('model %s: %s' % (name, err)) from None


def phases_for(net, args):
    return paper_phases(spn=has_spn(net),
                        epochs=(args.epochs_fp, args.epochs_quant, args.epochs_frozen),
                        lrs=(args.lr_fp, args.lr_quant, args.lr_frozen),
                        steps=(args.lr_steps_fp, args.lr_steps_quant, args.lr_steps_frozen),
                        factor=args.lr_factor)


def teacher_for(args, ctx, say=print):
    if not args.teacher_model:
        return None
    try:
        return load_teacher(args.teacher_model, ctx, say)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _model_cost(net, input_shape):
    """Multiplications, additions and bits of `net` in its current phases, for one input
    of `input_shape`, via strassen_gluon.count: {'mults', 'adds', 'bits',
    'excluding_fc_head': {...}}; None (with the reason printed) if counting fails."""
    try:
        from .count import count_model
        result = count_model(net, input_shape)
    except Exception as err:  # the count must never lose a finished training run
        print('could not count the model\'s operations: %s: %s' % (type(err).__name__, err),
              file=sys.stderr)
        return None
    cost = dict(result['total'])
    if 'total_excluding_fc_head' in result:
        cost['excluding_fc_head'] = result['total_excluding_fc_head']
    return cost


def newest_run(log_dir):
    runs = [d for d in glob.glob(os.path.join(log_dir, '*'))
            if os.path.isfile(os.path.join(d, CONFIG_NAME))]
    if not runs:
        raise UsageError('--resume: no run folder in %s (give the folder: --resume RUN_DIR)'
                         % log_dir)
    return max(runs, key=lambda d: os.path.getmtime(os.path.join(d, CONFIG_NAME)))


def resolve_run(args):
    """The run folder, the effective options and the run's config (nothing written yet).

    With --resume the stored options are used, overridden by the options given now, except those
    that define the model and data (FIXED_ON_RESUME), which must not change.
    """
    command = ' '.join(shlex.quote(a) for a in ['python', '-m', 'strassen_gluon.cifar10']
                       + args.argv)
    if args.resume:
        run_dir = newest_run(args.log_dir) if args.resume == 'latest' else args.resume
        config_path = os.path.join(run_dir, CONFIG_NAME)
        if not os.path.isfile(config_path):
            raise UsageError('--resume %s: not a run folder of this command (no %s)'
                             % (run_dir, CONFIG_NAME))
        with open(config_path) as f:
            config = json.load(f)
        stored = config['args']
        changed = [k for k in FIXED_ON_RESUME
                   if k in args.explicit and getattr(args, k) != stored.get(k)]
        if changed:
            raise UsageError('--resume: %s cannot change in a resumed run (stored: %s)'
                             % (', '.join('--' + k for k in changed),
                                ', '.join('%s=%r' % (k, stored.get(k)) for k in changed)))
        merged = dict(stored, **{k: None for k in PER_INVOCATION})
        merged.update({k: getattr(args, k) for k in args.explicit if k != 'resume'})
        config['args'] = merged
        config['commands'].append(command)
        resumed = argparse.Namespace(**merged)
        resumed.explicit, resumed.argv, resumed.resume = args.explicit, args.argv, args.resume
        return run_dir, resumed, config
    name = args.run_name or '%s-%s' % (args.model, datetime.datetime.now().strftime(
        '%Y%m%d-%H%M%S'))
    run_dir = os.path.join(args.log_dir, name)
    if os.path.isfile(os.path.join(run_dir, CONFIG_NAME)):
        raise UsageError('run folder %s exists; continue it with --resume %s or choose '
                         'another --run_name' % (run_dir, run_dir))
    stored = {k: v for k, v in vars(args).items() if k not in ('explicit', 'argv')}
    config = dict(args=stored, commands=[command], model=args.model,
                  model_kwargs=model_kwargs(args), git=git_revision(),
                  started=datetime.datetime.now().isoformat(timespec='seconds'))
    return run_dir, args, config


def load_data(args, say=print):
    data = load_cifar10(args.data_dir, download=not args.no_download,
                        strict_counts=args.strict_counts)
    if args.train_subset:
        try:
            data = subset(data, args.train_subset, seed=args.seed)
        except ValueError as err:
            raise UsageError('--train_subset: %s' % err) from None
    say('data: %d training, %d test images from %s'
        % (len(data.train_labels), len(data.test_labels), data.folder))
    return data


def write_summary(run_dir, net, config, phases, seconds_this_call):
    records = read_jsonl(os.path.join(run_dir, LOG_NAME))
    if not records:
        return None
    best = max(records, key=lambda r: r['val_acc'])
    per_phase = {}
    for r in records:
        entry = per_phase.setdefault(r['phase'], {'epochs': 0, 'best_val_acc': 0.0})
        entry['epochs'] += 1
        entry['final_val_acc'] = r['val_acc']
        entry['best_val_acc'] = max(entry['best_val_acc'], r['val_acc'])
    train_seconds = sum(r['seconds'] for r in records)
    cost = _model_cost(net, INPUT_SHAPE)
    summary = dict(
        model=config['model'], model_kwargs=config['model_kwargs'],
        val_acc=records[-1]['val_acc'], best_val_acc=best['val_acc'],
        best_epoch={'phase': best['phase'], 'epoch': best['epoch']},
        phases=per_phase, phase_plan=[dict(name=p.name, epochs=p.epochs, lr=p.lr,
                                           steps=list(p.steps), factor=p.factor)
                                      for p in phases],
        mults=cost and cost['mults'], adds=cost and cost['adds'], bits=cost and cost['bits'],
        cost=cost, cost_input_shape=list(INPUT_SHAPE),
        train_images_per_epoch=records[-1]['images'],
        train_seconds=train_seconds,
        images_per_s=sum(r['images'] for r in records) / max(train_seconds, 1e-9),
        seconds_last_invocation=seconds_this_call,
        command=config['commands'][-1], commands=config['commands'],
        git=git_revision(), started=config.get('started'),
        finished=datetime.datetime.now().isoformat(timespec='seconds'))
    write_json_atomic(os.path.join(run_dir, SUMMARY_NAME), summary)
    return summary


def write_curves(run_dir, title):
    records = read_jsonl(os.path.join(run_dir, LOG_NAME))
    return save_learning_curves(records, os.path.join(run_dir, CURVES_NAME), title)


# ----------------------------------------------------------------------------- main

def make_batches(data, args, ctx):
    """Training and evaluation batches on `ctx` (the first device; split across devices later)."""
    try:
        return (CifarBatches(data.train_images, data.train_labels, args.batch_size, train=True,
                             ctx=ctx, seed=args.seed, max_batches=args.max_batches),
                CifarBatches(data.test_images, data.test_labels, args.batch_size, train=False,
                             ctx=ctx, max_batches=args.max_eval_batches))
    except ValueError as err:
        raise UsageError(str(err)) from None


def restore(net, run_dir, phases, args, ctx):
    """Initialise `net`, then load the run's last checkpoint if there is one.

    Returns (phase_index, epoch, checkpoint) of the next epoch to train.
    """
    seed_everything(args.seed)
    net.initialize(mx.init.Xavier(rnd_type='uniform', factor_type='avg', magnitude=2), ctx=ctx)
    try:
        phase_index, epoch, ckpt = resume_position(run_dir, phases)
    except ValueError as err:
        raise UsageError('--resume: %s' % err) from None
    if ckpt is not None:
        load_checkpoint(ckpt, net, ctx=ctx)
    if args.resume:  # epochs that ran after the last checkpoint will run again
        trim_log(run_dir, phases, phase_index, epoch)
    return phase_index, epoch, ckpt


def finish(run_dir, net, config, phases, started, say):
    """Write summary.json (and report it) once every phase has run."""
    summary = write_summary(run_dir, net, config, phases, time.time() - started)
    cost = summary['cost']
    say('final val acc %.2f%% (best %.2f%%)%s; %s'
        % (100 * summary['val_acc'], 100 * summary['best_val_acc'],
           '; %s mults, %s adds, %.3f MB' % (f"{cost['mults']:,}", f"{cost['adds']:,}",
                                              cost['bits'] / 8e6) if cost else '',
           os.path.join(run_dir, SUMMARY_NAME)))
    return summary


def run(args, say=print):
    """Train as the options say; returns 'done' or 'stopped'. Raises UsageError, Diverged,
    Interrupted and the data errors (main turns them into messages)."""
    started = time.time()
    run_dir, args, config = resolve_run(args)
    ctx = contexts(args.gpu_index, say)
    kwargs = config['model_kwargs']
    net = build_model(config['model'], kwargs)
    phases = phases_for(net, args)
    if not phases:
        raise UsageError('no epochs to train (all phase lengths are 0)')
    # Everything that can fail on the user's input happens before the run folder is written.
    data = load_data(args, say)
    train_batches, eval_batches = make_batches(data, args, ctx[0])
    teacher = teacher_for(args, ctx, say)
    os.makedirs(run_dir, exist_ok=True)
    write_json_atomic(os.path.join(run_dir, CONFIG_NAME), config)

    phase_index, epoch, ckpt = restore(net, run_dir, phases, args, ctx)
    title = '%s %s' % (config['model'], json.dumps(kwargs) if kwargs else '')
    if phase_index >= len(phases):
        say('%s: the run is already finished' % run_dir)
        enter_phase(net, phases[-1])
        write_curves(run_dir, title)
        finish(run_dir, net, config, phases, started, say)
        return 'done'
    if ckpt is not None:
        say('resuming %s at phase %s, epoch %d (lr %.3g) from %s'
            % (run_dir, phases[phase_index].name, epoch + 1,
               learning_rate(phases[phase_index], epoch), os.path.basename(ckpt)))
    say('%s %s on %s; phases: %s; run folder %s'
        % (config['model'], json.dumps(kwargs) if kwargs else '(defaults)',
           ', '.join(str(c) for c in ctx),
           ', '.join('%s %d ep lr %g' % (p.name, p.epochs, p.lr) for p in phases), run_dir))
    net.hybridize(static_alloc=True)
    options = LoopOptions(momentum=args.momentum, wd=args.wd, dist_lambda=args.dist_lambda,
                          dist_temp=args.dist_temp, sync_every=args.sync_every,
                          progress=not args.quiet and sys.stderr.isatty(), seed=args.seed,
                          print_fn=say)
    meta = dict(model=config['model'], model_kwargs=kwargs, seed=args.seed,
                args=config['args'], git=git_revision(), run_dir=os.path.abspath(run_dir))
    try:
        status = run_phases(net, phases, train_batches, eval_batches, ctx, run_dir, meta,
                            start=(phase_index, epoch), checkpoint=ckpt, teacher=teacher,
                            options=options, stop_after_epochs=args.stop_after_epochs,
                            on_phase_end=lambda spec: write_curves(run_dir, title))
    except KeyboardInterrupt:
        raise Interrupted(run_dir) from None
    finally:
        write_curves(run_dir, title)
    if status == 'stopped':
        say('stopped after %d epoch(s); continue with: python -m strassen_gluon.cifar10 '
            '--resume %s' % (args.stop_after_epochs, run_dir))
    else:
        finish(run_dir, net, config, phases, started, say)
    return status


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except (CifarNotFoundError, CifarFormatError) as err:
        print(err, file=sys.stderr)
        return EXIT_DATA
    except UsageError as err:
        print('error: %s' % err, file=sys.stderr)
        return EXIT_USAGE
    except Diverged as err:
        print('error: %s' % err, file=sys.stderr)
        return EXIT_DIVERGED
    except Interrupted as err:
        print('\ninterrupted; the last complete epoch is saved: continue with '
              'python -m strassen_gluon.cifar10 --resume %s' % err.args[0], file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == '__main__':
    sys.exit(main())
