"""ImageNet command: train ResNet-18 or ST-ResNet-18 from RecordIO files (SPEC 2.5, 3.4).

    python -m strassen_gluon.imagenet --train_rec train.rec --val_rec val.rec --gpus 0,1,2,3
    python -m strassen_gluon.imagenet ... --model st_resnet18 --init_from gluoncv:resnet18_v1

From Python: ``train(ImageNetConfig(train_rec=..., val_rec=...))`` returns the run's summary.

Phases (SPEC 2.5; SGD, momentum 0.9): 70 epochs with full-precision SPNs at lr 0.05, x0.1 after
epochs 40 and 60; 10 epochs with ternary W_b, W_c at lr 0.0005; 5 epochs with W_b, W_c frozen at
lr 0.0005. The full-precision ``resnet18`` trains the first schedule in one phase. With
--init_from the phases default to a short fine-tune (``FINE_TUNE``). Training runs on the shared
loop (train/loop.py) with the classification task (train/classify.py), reporting top1 and top5.

Parallelism:

* one machine: the batch is split over ``--gpus`` and the gradients are summed by a
  ``device`` (or ``local``) kvstore, as gluon does;
* several machines: ``--kvstore dist_sync``, each process started by MXNet's launcher
  (``mxnet/tools/launch.py``; ``python -m strassen_gluon.imagenet launch ...`` runs it, see
  :func:`launch`). Every worker reads its own part of the training file, its gradients are
  summed over all workers and devices through the kvstore under the parameters' names, and the
  optimizer runs on every worker (:class:`DistSyncTrainer`), so the workers keep identical
  weights. Batch-norm running statistics are averaged over workers and devices after every
  epoch, so every worker evaluates and saves the same model. Every worker evaluates the whole
  validation file. The run folder is ``<log_dir>/<run_name>`` as for every command; in a
  dist_sync job (which needs --run_name, so that the workers agree) worker k keeps its own run
  folder ``<log_dir>/<run_name>/worker<k>`` and resumes from it (``--resume`` names the job's
  folder).
"""
import argparse
import dataclasses
import json
import os
import sys
import threading
from dataclasses import dataclass
from typing import List, Optional, Union

import mxnet as mx
from mxnet import gluon

from . import cli
from .config import Phase, RunConfig
from .data.imagenet import RecordBatches
from .errors import Interrupted, UsageError
from .gluon_compat import ReducingTrainer
from .layers import SPNBlock
from .train.build import build_model, choose_teacher, init_from, model_cost
from .train.classify import ClassificationTask
from .train.loop import LoopOptions, restore, run_phases, seed_everything
from .train.phases import enter_phase, has_spn, trainable_params
from .train.run import open_run, write_run, write_summary
from .train.schedule import PhaseSpec, scale_steps
from .train.teacher import load_teacher

TASK = 'imagenet'
MODULE = 'strassen_gluon.imagenet'
IMAGENET_MODELS = ('resnet18', 'st_resnet18')
KVSTORES = ('device', 'local', 'dist_sync')
STAGES = 5  # stem + four stages: the length of per-stage nbr_mul / out_patch lists

# SPEC 2.5 (the Dec-2017 poster's protocol).
IMAGENET_PHASES = (
    PhaseSpec('full', Phase.FULL, 70, 0.05, (40, 60)),
    PhaseSpec('ternary', Phase.TERNARY, 10, 0.0005),
    PhaseSpec('frozen', Phase.TERNARY, 5, 0.0005, frozen=True),
)


def imagenet_phases(spn=True, epochs=(None, None, None), lrs=(None, None, None)):
    """The phases of one run; None keeps SPEC 2.5's value, phases of 0 epochs are dropped.

    A changed length of the first phase moves its lr steps in proportion (schedule.scale_steps).
    A full-precision model trains the first schedule in one phase, 'dense'.
    """
    specs = []
    for paper, n, lr in zip(IMAGENET_PHASES[:3 if spn else 1], epochs, lrs):
        n = paper.epochs if n is None else int(n)
        specs.append(PhaseSpec(paper.name if spn else 'dense',
                               paper.phase if spn else Phase.DENSE, n,
                               paper.lr if lr is None else float(lr),
                               scale_steps(paper.steps, paper.epochs, n), paper.factor,
                               paper.frozen))
    return [s for s in specs if s.epochs > 0]


# ---------------------------------------------------------------------------------------------
# Data parallelism over machines through MXNet's distributed kvstore.

class WorkerGroup:
    """The workers of a ``dist_sync`` job, as reached through one distributed kvstore.

    Values are summed over workers under string keys, each initialised once (kvstore.init is
    collective: every worker runs the same code, so they initialise the same keys in the same
    order). Without an optimizer on the servers, a dist_sync server stores the sum of the
    values all workers pushed for a key, and a pull returns it.
    """

    def __init__(self, kvstore):
        self.kv = kvstore
        self.rank, self.size = kvstore.rank, kvstore.num_workers
        self._keys = set()

    def allreduce(self, key, arrays, priority=0):
        """Replace every array of `arrays` (one per device) by the sum over devices and workers."""
        if key not in self._keys:
            self.kv.init(key, arrays[0])
            self._keys.add(key)
        self.kv.push(key, arrays, priority=priority)
        self.kv.pull(key, out=arrays, priority=priority)

    def broadcast_parameters(self, net):
        """Give every worker worker 0's parameters (all of them, running statistics included)."""
        for name, param in sorted(net.collect_params().items()):
            key = 'init/' + name
            self.kv.init(key, param.data())  # the servers keep worker 0's value
            self.kv.pull(key, out=param.list_data())
        mx.nd.waitall()

    def average_batchnorm_statistics(self, net):
        """Average the BN running mean and variance over devices and workers (once per epoch)."""
        for param in running_statistics(net):
            arrays = param.list_data()
            self.allreduce('bn/' + param.name, arrays)
            for a in arrays:
                a /= self.size * len(arrays)


def running_statistics(net):
    """The batch norms' running means and variances: of nn.BatchNorm blocks and of the batch
    norm inside SPN layers, found by block type."""
    found = []

    def visit(block):
        if isinstance(block, gluon.nn.BatchNorm):
            found.extend([block.running_mean, block.running_var])
        elif isinstance(block, SPNBlock):
            found.extend(block.running_stat_params())
    net.apply(visit)
    return found


class DistSyncTrainer(ReducingTrainer):
    """A gluon Trainer whose gradients are summed over all devices and workers of a WorkerGroup.

    Gluon's own dist_sync support keys the kvstore by position in the trainer's parameter list
    and initialises the keys when a trainer is built; the phases build a new trainer over another
    list, which would reuse keys with other shapes. Here the keys are the parameter names, and
    the update runs locally on the summed gradients (every worker computes the same update).
    `step(batch_size)` takes this worker's batch; the summed gradient covers all workers'.
    """

    def __init__(self, params, optimizer, optimizer_params, group):
        def reduce(params):
            for i, param in enumerate(params):
                if param.grad_req != 'null':
                    group.allreduce('grad/' + param.name, param.list_grad(), priority=-i)
        super().__init__(params, optimizer, optimizer_params, reduce, batch_scale=group.size)


def launch(argv):
    """Run MXNet's launcher (``mxnet/tools/launch.py``, shipped in the mxnet wheel) with `argv`.

    The launcher's local tracker (the ``dmlc_tracker`` package of the same wheel) calls
    ``Thread.isAlive``, which Python 3.9 removed; it is restored as an alias of ``is_alive``
    for this process. Put ``--`` before the command to launch.
    """
    import runpy
    if not hasattr(threading.Thread, 'isAlive'):
        threading.Thread.isAlive = threading.Thread.is_alive
    script = os.path.join(os.path.dirname(mx.__file__), 'tools', 'launch.py')
    if not os.path.isfile(script):
        raise SystemExit('this mxnet installation has no launcher at %s' % script)
    saved = sys.argv
    sys.argv = [script] + list(argv)
    try:
        runpy.run_path(script, run_name='__main__')
    finally:
        sys.argv = saved
    return 0



# ---------------------------------------------------------------------------------------------
# The configuration and the command.

PerStage = Union[float, List[float]]
# The phases of a network converted from trained dense ResNet-18 weights (--init_from): one
# full-precision epoch at a tenth of the paper's rate, two ternary, one frozen.
FINE_TUNE = dict(epochs_fp=1, epochs_quant=2, epochs_frozen=1, lr_fp=0.005, lr_quant=0.0005,
                 lr_frozen=0.0005)
# Options that define the model or its data: a resumed run must keep them.
FIXED = ('model', 'nbr_mul', 'out_patch', 'groups', 'quantizer', 'classes', 'image_size',
         'seed', 'batch_size', 'train_rec', 'init_from')


@dataclass
class ImageNetConfig(RunConfig):
    """Everything an ImageNet run depends on (the command line fills it; see --help)."""
    train_rec: Optional[str] = None
    val_rec: Optional[str] = None
    train_idx: Optional[str] = None
    val_idx: Optional[str] = None
    image_size: int = 224
    num_workers: int = 4
    classes: int = 1000
    max_batches: Optional[int] = None
    max_eval_batches: Optional[int] = None
    model: str = 'st_resnet18'
    nbr_mul: PerStage = 1.0
    out_patch: Union[int, List[int]] = 1
    groups: int = 1
    quantizer: str = 'twn'
    init_from: Optional[str] = None     # run folder of a resnet18 run, or gluoncv:resnet18_v1
    epochs_fp: int = IMAGENET_PHASES[0].epochs
    epochs_quant: int = IMAGENET_PHASES[1].epochs
    epochs_frozen: int = IMAGENET_PHASES[2].epochs
    lr_fp: float = IMAGENET_PHASES[0].lr
    lr_quant: float = IMAGENET_PHASES[1].lr
    lr_frozen: float = IMAGENET_PHASES[2].lr
    momentum: float = 0.9
    wd: float = 1e-4
    batch_size: int = 128
    kvstore: str = 'device'
    sync_every: int = 50
    log_dir: str = os.path.join('runs', 'imagenet')


def build_parser():
    full, ternary, frozen = IMAGENET_PHASES
    p = argparse.ArgumentParser(
        prog='python -m ' + MODULE,
        description='Train ResNet-18 / ST-ResNet-18 on ImageNet RecordIO files: full-precision '
                    'SPN, then ternary W_b/W_c, then W_b/W_c frozen (SPEC 2.5). '
                    '"python -m strassen_gluon.imagenet launch LAUNCH_ARGS -- COMMAND" runs '
                    'MXNet\'s launcher (mxnet/tools/launch.py) for --kvstore dist_sync.',
        formatter_class=cli.HelpFormatter)
    d = p.add_argument_group('data')
    d.add_argument('--train_rec', help='training RecordIO file (.rec); required unless '
                                       '--resume')
    d.add_argument('--train_idx', default=None, help='its index; default: the .rec path, .idx')
    d.add_argument('--val_rec', help='validation RecordIO file (.rec); required unless --resume')
    d.add_argument('--val_idx', default=None, help='its index; default: the .rec path, .idx')
    d.add_argument('--image_size', type=int, default=224,
                   help='training crop and validation centre crop')
    d.add_argument('--num_workers', type=int, default=4,
                   help='decoding threads per process (CPU builds of MXNet decode with OpenMP '
                        'threads instead: set OMP_NUM_THREADS)')
    d.add_argument('--classes', type=int, default=1000)
    d.add_argument('--max_batches', type=int, default=None,
                   help='at most N training batches per epoch')
    d.add_argument('--max_eval_batches', type=int, default=None,
                   help='evaluate on at most N validation batches per epoch (default: all)')
    m = p.add_argument_group('model')
    m.add_argument('--model', default='st_resnet18', choices=IMAGENET_MODELS)
    m.add_argument('--nbr_mul', type=cli.per_stage(float, STAGES), default=1.0,
                   help='r = int(nbr_mul * c_out) per SPN; one value or a comma list '
                        'stem,stage1,stage2,stage3,stage4')
    m.add_argument('--out_patch', type=cli.per_stage(int, STAGES), default=1,
                   help='output patch p; one value or a per-stage comma list (shortcuts use 1)')
    m.add_argument('--groups', type=int, default=1,
                   help='groups g of the W_b convolutions (the stem uses 1 unless g divides 3)')
    m.add_argument('--quantizer', choices=('twn', 'threshold'), default='twn')
    m.add_argument('--init_from', default=None, metavar='RUN_DIR|gluoncv:NAME',
                   help='start from trained dense weights: a resnet18 run folder of this command '
                        'or gluoncv:resnet18_v1; it also becomes the teacher, and the phases '
                        'default to a short fine-tune: ' + ' '.join(
                            '--%s %s' % kv for kv in FINE_TUNE.items()))
    t = p.add_argument_group('schedule (defaults: SPEC 2.5)')
    t.add_argument('--epochs_fp', type=int, default=full.epochs,
                   help='epochs of phase 1, full-precision SPN (the only phase of resnet18); '
                        'lr x0.1 after 4/7 and 6/7 of them')
    t.add_argument('--epochs_quant', type=int, default=ternary.epochs,
                   help='epochs of phase 2, ternary')
    t.add_argument('--epochs_frozen', type=int, default=frozen.epochs,
                   help='epochs of phase 3, ternary with W_b/W_c frozen')
    t.add_argument('--lr_fp', type=float, default=full.lr,
                   help='set for a total batch of 128 (scale it with the total batch)')
    t.add_argument('--lr_quant', type=float, default=ternary.lr)
    t.add_argument('--lr_frozen', type=float, default=frozen.lr)
    t.add_argument('--momentum', type=float, default=0.9)
    t.add_argument('--wd', type=float, default=1e-4, help='weight decay')
    t.add_argument('--batch_size', type=int, default=128, help='batch per device')
    t.add_argument('--kvstore', default='device', choices=KVSTORES,
                   help='gradient summation: over the GPUs of this machine (device, local) or '
                        'over machines (dist_sync, under the launcher)')
    t.add_argument('--sync_every', type=int, default=50,
                   help='read the loss back from the device every N batches')
    cli.add_distillation_arguments(p, 'resnet18')
    cli.add_run_arguments(p, os.path.join('runs', 'imagenet'), '<model>')
    return p


def parse_args(argv=None):
    """(ImageNetConfig, the option names written on the command line)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, explicit = cli.parse_config(parser, argv)
    for name in ('batch_size', 'image_size', 'classes', 'groups', 'num_workers'):
        if getattr(args, name) < 1:
            parser.error('--%s must be at least 1' % name)
    for name in ('max_batches', 'max_eval_batches'):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error('--%s must be at least 1' % name)
    if args.init_from:
        args, explicit = cli.parse_config(parser, argv, defaults=FINE_TUNE)
    return cli.config_from_args(ImageNetConfig, args), explicit


def model_kwargs(config):
    if config.model == 'resnet18':
        return dict(classes=config.classes)
    return dict(nbr_mul=config.nbr_mul, out_patch=config.out_patch, groups=config.groups,
                quantizer=config.quantizer, classes=config.classes)


def worker_group(kvstore):
    """The WorkerGroup of a dist_sync run (None otherwise); needs MXNet's launcher."""
    if kvstore != 'dist_sync':
        return None
    if 'DMLC_ROLE' not in os.environ:
        raise UsageError('--kvstore dist_sync runs under MXNet\'s launcher, e.g.\n  python -m '
                         'strassen_gluon.imagenet launch -n 2 -s 1 --launcher local -- python -m '
                         'strassen_gluon.imagenet --kvstore dist_sync --run_name JOB ...')
    return WorkerGroup(mx.kv.create('dist_sync'))


def worker_config(config, rank):
    """The configuration of worker `rank` of a dist_sync job: its run folder is
    <job folder>/worker<rank>, where the job folder is --resume or <log_dir>/<run_name>."""
    if config.resume == 'latest':
        raise UsageError('--kvstore dist_sync: give the job folder to --resume')
    if config.resume:
        return dataclasses.replace(config, resume=os.path.join(config.resume, 'worker%d' % rank))
    if not config.run_name:
        raise UsageError('--kvstore dist_sync needs --run_name (every worker must find the '
                         'same job folder)')
    return dataclasses.replace(config, log_dir=os.path.join(config.log_dir, config.run_name),
                               run_name='worker%d' % rank)


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


def train(config, explicit=None, command=None, say=None):
    """Train as `config` says; returns the run's summary (schema: strassen_gluon.train.run),
    or None when stopped early. Raises the library's errors."""
    group = worker_group(config.kvstore)
    rank, workers = (group.rank, group.size) if group else (0, 1)
    if group is not None:
        config = worker_config(config, rank)
    prefix = '[worker %d/%d] ' % (rank, workers) if group else ''
    if say is None:
        def say(message):
            print(prefix + message, flush=True)

    run_dir, config, record = open_run(config, TASK, FIXED, command or 'train(%r)' % (config,),
                                       explicit, default_name=config.model)
    if not config.train_rec or not config.val_rec:
        raise UsageError('--train_rec and --val_rec are required (RecordIO files)')
    ctx = cli.contexts(config.devices, say)
    kwargs = model_kwargs(config)
    net = build_model(config.model, kwargs)
    spn = has_spn(net)
    phases = imagenet_phases(spn, (config.epochs_fp, config.epochs_quant, config.epochs_frozen),
                             (config.lr_fp, config.lr_quant, config.lr_frozen))
    if not phases:
        raise UsageError('no epochs to train (all phase lengths are 0)')
    if config.init_from and not spn:
        raise UsageError('--init_from converts a dense network into a Strassen one; %s has no '
                         'SPN layers' % config.model)
    batch = config.batch_size * len(ctx)
    train_batches = RecordBatches(config.train_rec, batch, config.image_size, train=True,
                                  idx_path=config.train_idx, num_parts=workers, part_index=rank,
                                  num_workers=config.num_workers, seed=config.seed,
                                  max_batches=config.max_batches)
    val_batches = RecordBatches(config.val_rec, batch, config.image_size, train=False,
                                idx_path=config.val_idx, num_workers=config.num_workers,
                                max_batches=config.max_eval_batches)
    seed_everything(config.seed)
    net.initialize(ctx=ctx)
    dense = None
    if config.init_from:
        calibration = next(iter(val_batches))[0].as_in_context(ctx[0])
        net(calibration)
        dense, _ = init_from(config.init_from, net, config.model, ctx, calibration, say=say)
    teacher = choose_teacher(config, dense, lambda path: load_teacher(path, ctx, say), say)
    write_run(run_dir, record, model=config.model, model_kwargs=kwargs)
    start, checkpoint = restore(net, run_dir, phases, ctx)
    if checkpoint is not None:
        say('resuming from %s' % checkpoint)
    if group is not None:
        group.broadcast_parameters(net)
    net.hybridize(static_alloc=True)
    options = LoopOptions(momentum=config.momentum, wd=config.wd,
                          dist_lambda=config.dist_lambda, dist_temp=config.dist_temp,
                          sync_every=config.sync_every, seed=config.seed,
                          progress=not config.quiet and rank == 0 and sys.stderr.isatty(),
                          keep_checkpoints=config.keep_checkpoints,
                          kvstore=config.kvstore if len(ctx) > 1 else None, print_fn=say)
    task = ImageNetTask(options, ctx, train_batches, val_batches, teacher, group)
    meta = dict(model=config.model, model_kwargs=kwargs, seed=config.seed, task=TASK,
                rank=rank, num_workers=workers, run_dir=os.path.abspath(run_dir))
    say('%s %s on %s, %d worker(s); %d batches of %d per epoch; phases: %s; run folder %s'
        % (config.model, json.dumps(kwargs), ', '.join(str(c) for c in ctx), workers,
           len(train_batches), batch,
           ', '.join('%s %d ep lr %g' % (s.name, s.epochs, s.lr) for s in phases), run_dir))
    if start[0] < len(phases):
        try:
            status = run_phases(task, net, phases, run_dir, meta, start=start,
                                checkpoint=checkpoint,
                                stop_after_epochs=config.stop_after_epochs)
        except KeyboardInterrupt:
            raise Interrupted('interrupted; the last complete epoch is saved: continue with '
                              'python -m %s ... --resume %s' % (MODULE, run_dir)) from None
        if status == 'stopped':
            say('run stopped: %s' % run_dir)
            return None
    enter_phase(net, phases[-1])
    shape = (1, 3, config.image_size, config.image_size)
    summary = write_summary(run_dir, record, task, phases, cost=model_cost(net, shape))
    say('run done: %s (top1 %.4f, top5 %.4f)' % (run_dir, summary['metrics']['top1'],
                                                  summary['metrics']['top5']))
    return summary


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['launch']:
        return launch(argv[1:])
    config, explicit = parse_args(argv)
    return cli.run_command(train, config, explicit, cli.command_line(MODULE, argv))


if __name__ == '__main__':
    sys.exit(main())
