"""The one training loop: stages, learning-rate policy, distillation, NaN stop, checkpoints,
resume, logs and progress, for every task (CIFAR-10, ImageNet, the language model).

A task is a small object (see :class:`Task`) that knows its batches, one training step and its
evaluation; :func:`run_stages` does everything else. Every epoch ends with

1. a check that the training loss and every parameter are finite (otherwise :class:`Diverged`
   is raised and nothing is written, so the previous checkpoint stays the newest),
2. at the last epoch of a stage, the task's end-of-stage evaluation (e.g. the LM's test
   perplexity), so that a stage is finished exactly when its last checkpoint exists,
3. an atomic, checksummed checkpoint (parameters, optimizer state, position, learning rate and
   the epoch's log line), then that line in ``log.jsonl``.

The random state of an epoch is derived from (seed, stage, epoch), so a resumed run draws the
same shuffles, crops and dropout masks as an uninterrupted one.

Learning rates: a stage steps its rate at given epochs (:func:`schedule.learning_rate`), or, with
``Stage.decay_when`` set, decays it when the task's primary metric did not improve by more
than that over the previous epoch (the language model's policy); that rate and the previous
metric are stored in the checkpoint.
"""
import math
import os
import sys
import time
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import nd
from tqdm import tqdm

from ..errors import Diverged, UsageError
from ..gluon_compat import is_initialized
from ..layers import clip_scales
from .checkpoint import load_trainer_states, read_meta, resume_checkpoint, save_checkpoint
from .logs import append_jsonl, rewrite_jsonl
from .run import LOG_NAME, epoch_log, read_log
from .schedule import learning_rate
from .stages import enter_stage, make_trainer

__all__ = ['Task', 'LoopOptions', 'Diverged', 'run_stages', 'train_epoch', 'restore',
           'epoch_seed', 'seed_everything', 'format_metrics']


class Task:
    """What the loop needs from a task. Subclasses set `primary_metric` and implement the rest.

    ``train_batches(global_epoch)``   an iterable of batches for one epoch (with ``len``)
    ``begin_epoch(net)``              a state carried from batch to batch (None, or LSTM states)
    ``step(net, trainer, batch, state)``  forward, backward and ``trainer.step`` of one batch;
                                      returns (state, {name: device NDArray summed over the
                                      batch}, number of examples); 'loss' is required
    ``train_metrics(totals, count)``  the epoch's training metrics from the summed totals
    ``evaluate(net)``                 {metric name: value}; must hold `primary_metric`
    ``end_stage(net, spec)``          metrics computed once a stage has ended ({} by default)
    ``make_trainer(net, lr)``         the stage's fresh optimizer
    ``after_epoch(net)``              after the training pass (e.g. average BN statistics)
    """
    primary_metric = 'val_acc'
    higher_is_better = True
    unit = 'images'               # what `count` counts, for the speed column (images/s)

    def __init__(self, options):
        self.options = options

    def train_batches(self, global_epoch):
        raise NotImplementedError

    def begin_epoch(self, net):
        return None

    def step(self, net, trainer, batch, state):
        raise NotImplementedError

    def train_metrics(self, totals, count):
        return {'train_loss': totals['loss'] / max(count, 1)}

    def evaluate(self, net):
        raise NotImplementedError

    def end_stage(self, net, spec):
        return {}

    def make_trainer(self, net, lr):
        o = self.options
        return make_trainer(net, lr, o.momentum, o.wd, kvstore=o.kvstore)

    def after_epoch(self, net):
        pass


@dataclass
class LoopOptions:
    momentum: float = 0.9
    wd: float = 1e-4
    dist_lambda: float = 0.5
    dist_temp: float = 1.0
    sync_every: int = 50          # read the loss back to the host every this many batches
    progress: bool = True         # tqdm bar within each epoch
    seed: int = 321
    keep_checkpoints: int = 1
    kvstore: object = None        # of the default trainer ('device' for several devices)
    print_fn: object = print      # receives the one line per epoch (and the sync lines)
    print_sync: bool = False      # also print a line at every sync (the LM's --print_every)


def epoch_seed(seed, stage_index, epoch):
    """The seed of one epoch, a function of its position only (resume draws the same numbers)."""
    return int(np.random.SeedSequence([seed, stage_index, epoch]).generate_state(1)[0])


def seed_everything(seed):
    mx.random.seed(seed)
    np.random.seed(seed)


def progress_bar(total, desc, enabled):
    if not enabled:
        return None
    return tqdm(total=total, desc=desc, unit='batch', leave=False, file=sys.stderr,
                dynamic_ncols=True)


def format_metrics(metrics):
    """Evaluation metrics for the console: accuracies in percent, with how many examples were
    scored ('val_acc 91.37% (10000 images)'), anything else to four digits."""
    shown = []
    for key, value in sorted(metrics.items()):
        if key == 'eval_images' or not isinstance(value, (int, float)):
            continue
        if key.endswith('acc') or key.startswith('top'):
            shown.append('%s %.2f%%' % (key, 100 * value))
        else:
            shown.append('%s %.4g' % (key, value))
    if 'eval_images' in metrics:
        shown.append('(%d images)' % metrics['eval_images'])
    return '  '.join(shown)


def _check_finite(loss, where):
    if not math.isfinite(loss):
        raise Diverged('the training loss became %s (%s); stopping without writing a checkpoint. '
                       'Lower the learning rate, or resume from the last checkpoint.'
                       % (loss, where))


def count_nonfinite_params(net):
    """How many parameter values of `net` are NaN or infinite (one host read)."""
    bad = None
    for param in net.collect_params().values():
        if not is_initialized(param):
            continue
        for data in param.list_data():
            n = (1 - nd.contrib.isfinite(data)).sum().as_in_context(mx.cpu())
            bad = n if bad is None else bad + n
    return 0 if bad is None else int(bad.asscalar())  # SYNC POINT


def _host(totals):
    return {k: float(v.asscalar()) for k, v in totals.items()}  # SYNC POINT


def train_epoch(task, net, trainer, batches, desc='train'):
    """One pass over `batches`; returns the task's training metrics plus 'count', 'seconds'
    and 'speed' (examples per second after the first batch, which builds the graph).

    The totals are accumulated on the device and read back only every `sync_every` batches and
    at the end, where a non-finite loss raises Diverged.
    """
    options = task.options
    total = len(batches) if hasattr(batches, '__len__') else None
    bar = progress_bar(total, desc, options.progress)
    totals, count, state = {}, 0, task.begin_epoch(net)
    start = time.time()
    warm, warm_count = None, 0
    try:
        for i, batch in enumerate(batches):
            state, sums, n = task.step(net, trainer, batch, state)
            clip_scales(net)
            for key, value in sums.items():
                totals[key] = value if key not in totals else totals[key] + value
            count += n
            if bar is not None:
                bar.update(1)
            if i == 0:
                nd.waitall()
                warm, warm_count = time.time(), count
            if (i + 1) % options.sync_every == 0:
                # SYNC POINT: the only host read-back inside the epoch.
                now = task.train_metrics(_host(totals), count)
                _check_finite(now['train_loss'], 'batch %d' % (i + 1))
                line = '  '.join('%s %.4g' % kv for kv in sorted(now.items()))
                if bar is not None:
                    bar.set_postfix_str(line)
                if options.print_sync:
                    options.print_fn('[%s batch %d/%s] %s' % (desc, i + 1, total, line))
        nd.waitall()
        end = time.time()
        metrics = task.train_metrics(_host(totals), count) if count else {'train_loss': 0.0}
    finally:
        if bar is not None:
            bar.close()
    _check_finite(metrics['train_loss'], 'end of epoch')
    timed = count - warm_count if warm is not None and end > warm and count > warm_count else 0
    speed = timed / (end - warm) if timed else count / max(end - start, 1e-9)
    return dict(metrics, count=count, seconds=end - start, speed=speed)


def _position(stages, stage_index, epoch):
    """The global epoch number (across stages) of (stage_index, epoch)."""
    return sum(p.epochs for p in stages[:stage_index]) + epoch


def next_position(stages, stage_index, epoch):
    """The (stage_index, epoch) after the given one; stage_index == len(stages) means done."""
    if epoch + 1 < stages[stage_index].epochs:
        return stage_index, epoch + 1
    return stage_index + 1, 0


def _warn(message):
    print(message, file=sys.stderr, flush=True)


def restore(net, run_dir, stages, ctx):
    """Load the newest checkpoint of `run_dir` that verifies into the initialised `net`.

    Returns (start, checkpoint): start = (stage_index, epoch) of the next epoch to train, (0, 0)
    for a new run. Epochs logged after the checkpoint (they will run again) are dropped from the
    log; every epoch the checkpoint covers stays. Raises RunFolderError when the folder cannot
    be resumed (it never restarts silently), UsageError when the checkpoint's stage is not one
    of `stages`.
    """
    logged = epoch_log(run_dir)
    # What was wrong with the folder goes to stderr even for quiet runs: the user must know.
    ckpt = resume_checkpoint(run_dir, logged_epochs=len(logged), say=_warn)
    if ckpt is None:
        return (0, 0), None
    meta = read_meta(ckpt)
    names = [p.name for p in stages]
    if meta.get('stage') not in names:
        raise UsageError('the checkpoint %s is in stage %r, which this run does not have (%s)'
                         % (ckpt, meta.get('stage'), ', '.join(names)))
    net.load_parameters(os.path.join(ckpt, 'model.params'), ctx=ctx)
    start = next_position(stages, names.index(meta['stage']), meta['epoch'])
    _trim_log(run_dir, stages, _position(stages, names.index(meta['stage']), meta['epoch']),
              meta.get('record'))
    return start, ckpt


def _trim_log(run_dir, stages, last, record):
    """Make the log end with the epoch at global position `last`, the checkpoint's: lines after
    it (epochs that ran past the checkpoint) are dropped, and its own line, `record`, is added
    if the run was killed between writing the checkpoint and the log."""
    path = os.path.join(run_dir, LOG_NAME)
    records = read_log(run_dir)
    keep = [r for r in records if 'stage_index' not in r
            or _position(stages, r['stage_index'], r['epoch']) <= last]
    logged = {_position(stages, r['stage_index'], r['epoch']) for r in keep if 'stage_index' in r}
    if last not in logged and record is not None:
        keep.append(record)
    if keep != records:
        rewrite_jsonl(path, keep)


class _Plateau:
    """The rate of a stage that decays when the primary metric stops improving."""

    def __init__(self, spec, higher_is_better, lr=None, previous=None):
        self.spec, self.higher = spec, higher_is_better
        self.lr = spec.lr if lr is None else lr
        self.previous = previous

    def update(self, value):
        prev = self.previous
        if prev is not None and math.isfinite(prev):
            worse = (value < prev + self.spec.decay_when if self.higher
                     else value > prev - self.spec.decay_when)
            if worse:
                self.lr = float('%.12g' % (self.lr * self.spec.factor))
        self.previous = value


def run_stages(task, net, stages, run_dir, meta, start=(0, 0), checkpoint=None,
               stop_after_epochs=None, on_stage_end=None):
    """Train `net` through `stages` from position `start` = (stage_index, epoch).

    `checkpoint` is the folder the run resumed from: its optimizer state (and a plateau stage's
    learning rate) is loaded when it lies within the stage being continued; a new stage starts
    with a fresh optimizer. `meta` is stored in every checkpoint together with the position.
    Returns 'done', or 'stopped' after `stop_after_epochs` epochs of this call.
    """
    options = task.options
    say = options.print_fn
    log_path = os.path.join(run_dir, LOG_NAME)
    stage_index, epoch = start
    resumed = read_meta(checkpoint) if checkpoint else None
    done_here = 0
    while stage_index < len(stages):
        spec = stages[stage_index]
        enter_stage(net, spec)
        within = resumed is not None and resumed.get('stage') == spec.name and epoch > 0
        plateau = None
        if spec.decay_when is not None:
            plateau = _Plateau(spec, task.higher_is_better,
                               resumed.get('next_lr') if within else None,
                               resumed.get('previous_metric') if within else None)
        lr = plateau.lr if plateau else learning_rate(spec, epoch)
        trainer = task.make_trainer(net, lr)
        if within:
            load_trainer_states(checkpoint, [trainer])
        resumed = None
        while epoch < spec.epochs:
            lr = plateau.lr if plateau else learning_rate(spec, epoch)
            trainer.set_learning_rate(lr)
            global_epoch = _position(stages, stage_index, epoch)
            seed_everything(epoch_seed(options.seed, stage_index, epoch))
            desc = '%s %d/%d' % (spec.name, epoch + 1, spec.epochs)
            stats = train_epoch(task, net, trainer, task.train_batches(global_epoch), desc)
            task.after_epoch(net)
            # The last update of an epoch can break the weights after the last loss was read.
            broken = count_nonfinite_params(net)
            if broken:
                raise Diverged('%d parameter values became NaN or infinite in epoch %d of '
                               'stage %s; stopping without writing a checkpoint. Lower the '
                               'learning rate, or resume from the last checkpoint.'
                               % (broken, epoch + 1, spec.name))
            started = time.perf_counter()
            metrics = task.evaluate(net)
            last = epoch == spec.epochs - 1
            if last:
                metrics.update(task.end_stage(net, spec))
            record = dict(stage=spec.name, stage_index=stage_index, epoch=epoch,
                          global_epoch=global_epoch, lr=lr, seconds=stats['seconds'],
                          eval_seconds=time.perf_counter() - started,
                          **{task.unit: stats['count'], task.unit + '_per_s': stats['speed']},
                          **{k: v for k, v in stats.items()
                             if k not in ('count', 'seconds', 'speed')},
                          **metrics)
            extra = {}
            if plateau is not None:
                plateau.update(metrics[task.primary_metric])
                extra = dict(next_lr=plateau.lr, previous_metric=plateau.previous)
            finished = stage_index == len(stages) - 1 and last
            # The checkpoint first, holding its log line: a kill between the two leaves a
            # checkpoint whose line `restore` writes, never a logged epoch without checkpoint.
            # A stage's last checkpoint needs no optimizer state: the next stage starts afresh.
            save_checkpoint(run_dir, 'p%d-e%04d' % (stage_index, epoch), net,
                            [] if last else [trainer],
                            dict(meta, stage=spec.name, stage_index=stage_index, epoch=epoch,
                                 phase=int(spec.phase), frozen=spec.frozen, lr=lr,
                                 metrics=metrics, finished=finished, record=record, **extra),
                            keep=options.keep_checkpoints)
            append_jsonl(log_path, record)
            say('[%s] epoch %d/%d  lr %.3g  train loss %.4f  %s  %.1fs  %.0f %s/s'
                % (spec.name, epoch + 1, spec.epochs, lr, stats['train_loss'],
                   format_metrics(metrics), stats['seconds'], stats['speed'], task.unit))
            epoch += 1
            done_here += 1
            if stop_after_epochs is not None and done_here >= stop_after_epochs and not finished:
                return 'stopped'
        if on_stage_end is not None:
            on_stage_end(spec)
        stage_index, epoch = stage_index + 1, 0
    return 'done'
