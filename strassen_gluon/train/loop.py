"""Train and evaluate image classifiers phase by phase, with a checkpoint after every epoch.

:func:`train_epoch` and :func:`evaluate` work on any iterable of (data, label) NDArray batches
and a list of contexts (data parallel: each batch is split across them). :func:`run_phases` runs
a list of :class:`~strassen_gluon.train.schedule.PhaseSpec` from any position, which is how a run
is resumed: every epoch ends with

1. a check that the training loss and every parameter are finite (otherwise :class:`Diverged`
   is raised and nothing is written, so the previous checkpoint stays the latest),
2. one line in ``log.jsonl``,
3. an atomic checkpoint (parameters, optimizer state, position, learning rate).

The random state of an epoch is derived from (seed, phase, epoch), so a resumed run draws the
same shuffles and crops as an uninterrupted one.
"""
import math
import os
import sys
import time
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd, nd
from mxnet.gluon.utils import split_and_load
from tqdm import tqdm

from ..layers import clip_scales
from .checkpoint import latest_checkpoint, load_trainer_states, read_meta, save_checkpoint
from .distill import distillation_loss
from .logs import append_jsonl, read_jsonl
from .phases import enter_phase, make_trainer
from .schedule import learning_rate

LOG_NAME = 'log.jsonl'


class Diverged(RuntimeError):
    """The training loss or a parameter became NaN or infinite."""


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
    print_fn: object = print      # receives the one line per epoch


def epoch_seed(seed, phase_index, epoch):
    """The seed of one epoch, a function of its position only (resume draws the same numbers)."""
    return int(np.random.SeedSequence([seed, phase_index, epoch]).generate_state(1)[0])


def seed_everything(seed):
    mx.random.seed(seed)
    np.random.seed(seed)


def _progress_bar(total, desc, enabled):
    if not enabled:
        return None
    return tqdm(total=total, desc=desc, unit='batch', leave=False, file=sys.stderr,
                dynamic_ncols=True)


def _check_finite(loss, where):
    if not math.isfinite(loss):
        raise Diverged('the training loss became %s (%s); stopping without writing a checkpoint. '
                       'Lower the learning rate, or resume from the last checkpoint.'
                       % (loss, where))


def count_nonfinite_params(net):
    """How many parameter values of `net` are NaN or infinite (one host read)."""
    bad = None
    for param in net.collect_params().values():
        if param._data is None:  # deferred or never initialised
            continue
        for data in param.list_data():
            n = (1 - nd.contrib.isfinite(data)).sum().as_in_context(mx.cpu())
            bad = n if bad is None else bad + n
    return 0 if bad is None else int(bad.asscalar())  # SYNC POINT


def train_epoch(net, trainer, batches, ctx, teacher=None, options=LoopOptions(), desc='train'):
    """One pass over `batches`; returns {'train_loss', 'train_acc', 'images', 'seconds'}.

    The loss and accuracy are accumulated on the device and read back only every
    `options.sync_every` batches and at the end, where a non-finite loss raises Diverged.
    """
    ctx = list(ctx)
    total = len(batches) if hasattr(batches, '__len__') else None
    bar = _progress_bar(total, desc, options.progress)
    loss_sum = nd.zeros((1,), ctx=ctx[0])
    correct = nd.zeros((1,), ctx=ctx[0])
    images = 0
    start = time.time()
    try:
        for i, (data, label) in enumerate(batches):
            n = data.shape[0]
            xs = split_and_load(data, ctx, even_split=False)
            ys = split_and_load(label, ctx, even_split=False)
            # The teacher runs outside autograd.record: inference mode (BN running statistics).
            soft = [teacher(x) for x in xs] if teacher is not None else [None] * len(xs)
            with autograd.record():
                logits = [net(x) for x in xs]
                losses = [distillation_loss(nd, z, t, y, options.dist_lambda, options.dist_temp)
                          for z, t, y in zip(logits, soft, ys)]
            autograd.backward(losses)
            trainer.step(n)
            clip_scales(net)
            for z, y, loss in zip(logits, ys, losses):
                loss_sum += loss.sum().as_in_context(ctx[0])
                hits = (z.argmax(axis=1) == y.astype(z.dtype)).sum()
                correct += hits.as_in_context(ctx[0])
            images += n
            if bar is not None:
                bar.update(1)
            if (i + 1) % options.sync_every == 0:
                # SYNC POINT: the only host read-back inside the epoch.
                mean_loss = loss_sum.asscalar() / images
                _check_finite(mean_loss, 'batch %d' % (i + 1))
                if bar is not None:
                    bar.set_postfix(loss='%.3f' % mean_loss,
                                    acc='%.3f' % (correct.asscalar() / images))
        # SYNC POINT: end of the epoch.
        mean_loss = loss_sum.asscalar() / max(images, 1)
        accuracy = correct.asscalar() / max(images, 1)
    finally:
        if bar is not None:
            bar.close()
    _check_finite(mean_loss, 'end of epoch')
    return {'train_loss': mean_loss, 'train_acc': accuracy, 'images': images,
            'seconds': time.time() - start}


def evaluate(net, batches, ctx):
    """Top-1 accuracy of `net` (inference mode) over `batches`; one host read at the end."""
    ctx = list(ctx)
    correct = nd.zeros((1,), ctx=ctx[0])
    images = 0
    for data, label in batches:
        for x, y in zip(split_and_load(data, ctx, even_split=False),
                        split_and_load(label, ctx, even_split=False)):
            z = net(x)
            correct += (z.argmax(axis=1) == y.astype(z.dtype)).sum().as_in_context(ctx[0])
        images += data.shape[0]
    return correct.asscalar() / max(images, 1)  # SYNC POINT


def _position(phases, phase_index, epoch):
    """The global epoch number (across phases) of (phase_index, epoch)."""
    return sum(p.epochs for p in phases[:phase_index]) + epoch


def next_position(phases, phase_index, epoch):
    """The (phase_index, epoch) after the given one; phase_index == len(phases) means done."""
    if epoch + 1 < phases[phase_index].epochs:
        return phase_index, epoch + 1
    return phase_index + 1, 0


def resume_position(run_dir, phases):
    """Where a run folder's latest checkpoint says to continue: (phase_index, epoch, checkpoint).

    Without a checkpoint: (0, 0, None). The phase is looked up by name, so a run can be resumed
    with other phase lengths (a longer phase simply continues).
    """
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return 0, 0, None
    meta = read_meta(ckpt)
    names = [p.name for p in phases]
    if meta['phase'] not in names:
        raise ValueError('the checkpoint %s is in phase %r, which this run does not have (%s)'
                         % (ckpt, meta['phase'], ', '.join(names)))
    return next_position(phases, names.index(meta['phase']), meta['epoch']) + (ckpt,)


def trim_log(run_dir, phases, phase_index, epoch):
    """Drop log lines at or after a position (epochs that ran after the last checkpoint)."""
    path = os.path.join(run_dir, LOG_NAME)
    keep = [r for r in read_jsonl(path)
            if _position(phases, r['phase_index'], r['epoch']) < _position(phases, phase_index,
                                                                            epoch)]
    tmp = path + '.tmp'
    with open(tmp, 'w'):
        pass
    for record in keep:
        append_jsonl(tmp, record)
    os.replace(tmp, path)


def run_phases(net, phases, train_batches, eval_batches, ctx, run_dir, meta, start=(0, 0),
               checkpoint=None, teacher=None, options=LoopOptions(), stop_after_epochs=None,
               on_phase_end=None, trainer_factory=None, after_train_epoch=None):
    """Train `net` through `phases` from position `start` = (phase_index, epoch).

    `checkpoint` is the folder the run resumes from: its optimizer state is loaded when it lies
    within the phase being continued (a new phase starts with a fresh optimizer). `meta` is
    stored in every checkpoint together with the position. `train_batches` / `eval_batches` are
    iterables; `train_batches.set_epoch(global_epoch)` is called when it exists.
    Returns 'done', or 'stopped' after `stop_after_epochs` epochs of this call.

    `trainer_factory(net, lr, momentum, wd)` builds each phase's Trainer (default: make_trainer
    with a 'device' kvstore for several contexts); `after_train_epoch(net)` runs after each
    training epoch, before evaluation and the checkpoint. The ImageNet command uses both for
    training on several machines (imagenet.py).
    """
    log_path = os.path.join(run_dir, LOG_NAME)
    phase_index, epoch = start
    resumed_meta = read_meta(checkpoint) if checkpoint else None
    done_here = 0
    while phase_index < len(phases):
        spec = phases[phase_index]
        enter_phase(net, spec)
        if trainer_factory is not None:
            trainer = trainer_factory(net, learning_rate(spec, epoch), options.momentum,
                                      options.wd)
        else:
            trainer = make_trainer(net, learning_rate(spec, epoch), options.momentum, options.wd,
                                   kvstore='device' if len(ctx) > 1 else None)
        if resumed_meta is not None and resumed_meta['phase'] == spec.name and epoch > 0:
            load_trainer_states(checkpoint, [trainer])
        resumed_meta = None
        while epoch < spec.epochs:
            lr = learning_rate(spec, epoch)
            trainer.set_learning_rate(lr)
            global_epoch = _position(phases, phase_index, epoch)
            seed_everything(epoch_seed(options.seed, phase_index, epoch))
            if hasattr(train_batches, 'set_epoch'):
                train_batches.set_epoch(global_epoch)
            desc = '%s %d/%d' % (spec.name, epoch + 1, spec.epochs)
            stats = train_epoch(net, trainer, train_batches, ctx, teacher, options, desc)
            if after_train_epoch is not None:
                after_train_epoch(net)
            # The last update of an epoch can break the weights after the last loss was read.
            broken = count_nonfinite_params(net)
            if broken:
                raise Diverged('%d parameter values became NaN or infinite in epoch %d of '
                               'phase %s; stopping without writing a checkpoint. Lower the '
                               'learning rate, or resume from the last checkpoint.'
                               % (broken, epoch + 1, spec.name))
            val_acc = evaluate(net, eval_batches, ctx)
            record = dict(phase=spec.name, phase_index=phase_index, epoch=epoch,
                          global_epoch=global_epoch, lr=lr, train_loss=stats['train_loss'],
                          train_acc=stats['train_acc'], val_acc=val_acc,
                          seconds=stats['seconds'], images=stats['images'],
                          images_per_s=stats['images'] / max(stats['seconds'], 1e-9))
            append_jsonl(log_path, record)
            save_checkpoint(run_dir, 'p%d-e%04d' % (phase_index, epoch), net, [trainer],
                            dict(meta, phase=spec.name, phase_index=phase_index, epoch=epoch,
                                 phase_mode=int(spec.phase), frozen=spec.frozen, lr=lr,
                                 val_acc=val_acc,
                                 finished=(phase_index == len(phases) - 1
                                           and epoch == spec.epochs - 1)),
                            keep=options.keep_checkpoints)
            options.print_fn('[%s] epoch %d/%d  lr %.2g  loss %.4f  train %.4f  val %.4f  '
                             '%.1fs  %.0f img/s'
                             % (spec.name, epoch + 1, spec.epochs, lr, record['train_loss'],
                                record['train_acc'], val_acc, record['seconds'],
                                record['images_per_s']))
            epoch += 1
            done_here += 1
            if stop_after_epochs is not None and done_here >= stop_after_epochs and not (
                    phase_index == len(phases) - 1 and epoch == spec.epochs):
                return 'stopped'
        if on_phase_end is not None:
            on_phase_end(spec)
        phase_index, epoch = phase_index + 1, 0
    return 'done'
