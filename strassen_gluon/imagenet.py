"""ImageNet command: train ResNet-18 or ST-ResNet-18 from RecordIO files (SPEC 2.5, 3.4).

    python -m strassen_gluon.imagenet --train_rec train.rec --val_rec val.rec --gpus 0,1,2,3

Phases (SPEC 2.5; SGD, momentum 0.9): 70 epochs with full-precision SPNs at lr 0.05, ×0.1 after
epochs 40 and 60; 10 epochs with ternary W_b, W_c at lr 0.0005; 5 epochs with W_b, W_c frozen at
lr 0.0005. The full-precision ``resnet18`` trains the first schedule in one phase. Training runs
through the shared loop (`train/loop.py`): checkpoint and log line after every epoch, NaN check,
optional distillation from a trained teacher, resume.

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
  validation file; worker k keeps its run folder in ``<log_dir>/worker<k>`` and resumes from
  it (all workers must find the same epoch there).

The run folder is ``--log_dir`` itself (not a new folder per run as in the CIFAR command): every
worker of a distributed job must find it. The teacher is loaded by `train.teacher.load_teacher`
(a run or checkpoint folder of either command).
"""
import argparse
import json
import os
import sys
import threading

import mxnet as mx
from mxnet import gluon

from .cli import EXIT_DIVERGED, EXIT_USAGE, UsageError, add_distillation_arguments
from .config import Phase
from .data.imagenet import RecordBatches
from .layers import SPNBlock
from .models import get_model, list_models
from .train.checkpoint import git_revision, load_checkpoint
from .train.loop import (Diverged, LoopOptions, resume_position, run_phases, seed_everything,
                         trim_log)
from .train.phases import has_spn, make_trainer, trainable_params
from .train.schedule import PhaseSpec, scale_steps
from .train.teacher import load_teacher

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


class DistSyncTrainer(gluon.Trainer):
    """A gluon Trainer whose gradients are summed over all devices and workers of a WorkerGroup.

    Gluon's own dist_sync support keys the kvstore by position in the trainer's parameter list
    and initialises the keys when a trainer is built; the phases build a new trainer over another
    list, which would reuse keys with other shapes. Here the keys are the parameter names, and
    the update runs locally on the summed gradients (every worker computes the same update).
    """

    def __init__(self, params, optimizer, optimizer_params, group):
        super().__init__(params, optimizer, optimizer_params, kvstore=None)
        self._group = group

    def step(self, batch_size, ignore_stale_grad=False):
        """`batch_size` is this worker's batch; the summed gradient covers all workers'."""
        super().step(batch_size * self._group.size, ignore_stale_grad)

    def _allreduce_grads(self):
        for i, param in enumerate(self._params):
            if param.grad_req != 'null':
                self._group.allreduce('grad/' + param.name, param.list_grad(), priority=-i)


def trainer_factory(kvstore, group=None):
    """A `(net, lr, momentum, wd) -> Trainer` for the loop: gluon's kvstore, or DistSyncTrainer."""
    def build(net, lr, momentum, wd):
        optimizer_params = {'learning_rate': lr, 'momentum': momentum, 'wd': wd}
        if group is not None:
            return DistSyncTrainer(trainable_params(net), 'sgd', optimizer_params, group)
        return make_trainer(net, lr, momentum, wd, kvstore=kvstore)
    return build


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
# The command.

def _per_stage(kind):
    """argparse type: one value or a comma list of one value per stage (stem, stage 1-4)."""
    def parse(text):
        values = [kind(v) for v in text.split(',')]
        if len(values) not in (1, STAGES):
            raise argparse.ArgumentTypeError('give 1 value or %d (stem, stage1-4), not %d'
                                             % (STAGES, len(values)))
        return values[0] if len(values) == 1 else values
    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def build_parser():
    full, ternary, frozen = IMAGENET_PHASES
    p = argparse.ArgumentParser(
        prog='python -m strassen_gluon.imagenet',
        description='Train ResNet-18 / ST-ResNet-18 on ImageNet RecordIO files: full-precision '
                    'SPN, then ternary W_b/W_c, then W_b/W_c frozen (SPEC 2.5). '
                    '"python -m strassen_gluon.imagenet launch LAUNCH_ARGS -- COMMAND" runs '
                    'MXNet\'s launcher (mxnet/tools/launch.py) for --kvstore dist_sync.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group('data')
    d.add_argument('--train_rec', required=True, help='training RecordIO file (.rec)')
    d.add_argument('--train_idx', default=None, help='its index; default: the .rec path, .idx')
    d.add_argument('--val_rec', required=True, help='validation RecordIO file (.rec)')
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
    m.add_argument('--model', default='st_resnet18',
                   choices=[name for name in list_models() if name in IMAGENET_MODELS])
    m.add_argument('--nbr_mul', type=_per_stage(float), default=1.0,
                   help='r = int(nbr_mul * c_out) per SPN; one value or a comma list '
                        'stem,stage1,stage2,stage3,stage4')
    m.add_argument('--out_patch', type=_per_stage(int), default=1,
                   help='output patch p; one value or a per-stage comma list (shortcuts use 1)')
    m.add_argument('--groups', type=int, default=1,
                   help='groups g of the W_b convolutions (the stem uses 1 unless g divides 3)')
    m.add_argument('--quantizer', choices=('twn', 'threshold'), default='twn')
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
    t.add_argument('--seed', type=int, default=321)
    add_distillation_arguments(p, 'resnet18')
    r = p.add_argument_group('run')
    r.add_argument('--gpus', default='', help='comma list of GPU numbers; empty: the CPU')
    r.add_argument('--kvstore', default='device', choices=KVSTORES,
                   help='gradient summation: over the GPUs of this machine (device, local) or '
                        'over machines (dist_sync, under the launcher)')
    r.add_argument('--log_dir', default=os.path.join('runs', 'imagenet'),
                   help='the run folder (dist_sync: worker k uses LOG_DIR/worker<k>)')
    r.add_argument('--resume', action='store_true',
                   help="continue from the run folder's latest checkpoint")
    r.add_argument('--sync_every', type=int, default=50,
                   help='read the loss back from the device every N batches')
    r.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ('batch_size', 'image_size', 'classes', 'groups', 'num_workers'):
        if getattr(args, name) < 1:
            parser.error('--%s must be at least 1' % name)
    for name in ('max_batches', 'max_eval_batches'):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error('--%s must be at least 1' % name)
    return args


def contexts(gpus):
    """Contexts from --gpus: '' is the CPU, '0,1,2,3' four GPUs (data parallel)."""
    ids = [int(i) for i in gpus.split(',') if i.strip()]
    if ids and max(ids) >= mx.context.num_gpus():
        raise UsageError('--gpus %s: this machine has %d GPU(s)' % (gpus, mx.context.num_gpus()))
    return [mx.gpu(i) for i in ids] or [mx.cpu()]


def model_kwargs(args):
    if args.model == 'resnet18':
        return dict(classes=args.classes)
    return dict(nbr_mul=args.nbr_mul, out_patch=args.out_patch, groups=args.groups,
                quantizer=args.quantizer, classes=args.classes)


def worker_group(kvstore):
    """The WorkerGroup of a dist_sync run (None otherwise); needs MXNet's launcher."""
    if kvstore != 'dist_sync':
        return None
    if 'DMLC_ROLE' not in os.environ:
        raise UsageError('--kvstore dist_sync runs under MXNet\'s launcher, e.g.\n  python -m '
                         'strassen_gluon.imagenet launch -n 2 -s 1 --launcher local -- python -m '
                         'strassen_gluon.imagenet --kvstore dist_sync ...')
    return WorkerGroup(mx.kv.create('dist_sync'))


def run(args):
    """Train as the options say; returns the loop's status ('done')."""
    group = worker_group(args.kvstore)
    rank, workers = (group.rank, group.size) if group else (0, 1)
    run_dir = os.path.join(args.log_dir, 'worker%d' % rank) if group else args.log_dir
    prefix = '[worker %d/%d] ' % (rank, workers) if group else ''

    def say(message):
        print(prefix + message, flush=True)

    ctx = contexts(args.gpus)
    kwargs = model_kwargs(args)
    try:
        net = get_model(args.model, **kwargs)
    except ValueError as err:
        raise UsageError('model %s: %s' % (args.model, err)) from None
    seed_everything(args.seed)
    net.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2), ctx=ctx)
    phases = imagenet_phases(has_spn(net), (args.epochs_fp, args.epochs_quant, args.epochs_frozen),
                             (args.lr_fp, args.lr_quant, args.lr_frozen))
    if not phases:
        raise UsageError('no epochs to train (all phase lengths are 0)')
    os.makedirs(run_dir, exist_ok=True)
    start, checkpoint = (0, 0), None
    if args.resume:
        phase_index, epoch, checkpoint = resume_position(run_dir, phases)
        if checkpoint is None:
            say('no checkpoint in %s: starting from the beginning' % run_dir)
        else:
            load_checkpoint(checkpoint, net, ctx=ctx)
            trim_log(run_dir, phases, phase_index, epoch)
            start = (phase_index, epoch)
            say('resuming from %s' % checkpoint)
    if group is not None:
        group.broadcast_parameters(net)
    net.hybridize(static_alloc=True)
    try:
        teacher = load_teacher(args.teacher_model, ctx, say) if args.teacher_model else None
    except ValueError as err:
        raise UsageError(str(err)) from None

    batch = args.batch_size * len(ctx)
    train_batches = RecordBatches(args.train_rec, batch, args.image_size, train=True,
                                  idx_path=args.train_idx, num_parts=workers, part_index=rank,
                                  num_workers=args.num_workers, seed=args.seed,
                                  max_batches=args.max_batches)
    val_batches = RecordBatches(args.val_rec, batch, args.image_size, train=False,
                                idx_path=args.val_idx, num_workers=args.num_workers,
                                max_batches=args.max_eval_batches)
    meta = dict(command='imagenet', model=args.model, model_kwargs=kwargs, seed=args.seed,
                args=vars(args), git=git_revision(), rank=rank, num_workers=workers,
                run_dir=os.path.abspath(run_dir))
    options = LoopOptions(momentum=args.momentum, wd=args.wd, dist_lambda=args.dist_lambda,
                          dist_temp=args.dist_temp, sync_every=args.sync_every, seed=args.seed,
                          progress=not args.quiet and rank == 0 and sys.stderr.isatty(),
                          print_fn=say)
    say('%s %s on %s, %d worker(s); %d batches of %d per epoch; phases: %s; run folder %s'
        % (args.model, json.dumps(kwargs), ', '.join(str(c) for c in ctx), workers,
           len(train_batches), batch,
           ', '.join('%s %d ep lr %g' % (s.name, s.epochs, s.lr) for s in phases), run_dir))
    status = run_phases(net, phases, train_batches, val_batches, ctx, run_dir, meta,
                        start=start, checkpoint=checkpoint, teacher=teacher, options=options,
                        trainer_factory=trainer_factory(args.kvstore, group),
                        after_train_epoch=group.average_batchnorm_statistics if group else None)
    say('run %s: %s' % (status, run_dir))
    return status


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['launch']:
        return launch(argv[1:])
    args = parse_args(argv)
    try:
        run(args)
    except UsageError as err:
        print('error: %s' % err, file=sys.stderr)
        return EXIT_USAGE
    except Diverged as err:
        print('error: %s' % err, file=sys.stderr)
        return EXIT_DIVERGED
    return 0


if __name__ == '__main__':
    sys.exit(main())
