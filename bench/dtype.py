"""Training throughput in float32 and in bfloat16 (float32 master weights), measured in one run.

    python bench/dtype.py [--batch 128] [--repeats 10] [--models resnet20 st_resnet20-p1-full ...]
    python bench/dtype.py --primitives st_resnet20-p2-ternary   # where the time goes (oneDNN)

Each model is built twice from the same seed, once per dtype (strassen_gluon.train.precision
set_compute_dtype), hybridized as the training commands do, and trained by the same step as
train/classify.py (SGD with momentum 0.9 and weight decay over the phase's parameters, softmax
cross-entropy, clip_scales after the update) on random 32x32 images. One round times one step of
every (model, dtype) in turn, so that the load of other processes falls on all alike; the table
holds images/s from the median step of each and the ratio bfloat16 / float32. Read the ratios,
not the absolute numbers, on a shared machine. Goal (issue 17): 3x for the CIFAR networks.

``--primitives NAME`` runs one model for a few steps per dtype in a child process with
DNNL_VERBOSE=1 and sums oneDNN's own time per primitive and kernel (the rest of a step is MXNet's
own operators and its scheduling).
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from strassen_gluon import clip_scales, freeze_ternary, set_phase
from strassen_gluon.models import get_model
from strassen_gluon.models.charlm import CharLM
from strassen_gluon.train.stages import trainable_params
from strassen_gluon.train.precision import bfloat16_support, set_compute_dtype

DTYPES = ('float32', 'bfloat16')
# name -> (registry model, constructor options, phase, W_b/W_c frozen)
MODELS = collections.OrderedDict([
    ('resnet20', ('resnet20', {}, None, False)),
    ('st_resnet20-p1-full', ('st_resnet20', {}, 'full', False)),
    ('st_resnet20-p1-ternary', ('st_resnet20', {}, 'ternary', False)),
    ('st_resnet20-p1-frozen', ('st_resnet20', {}, 'ternary', True)),
    ('st_resnet20-p2-full', ('st_resnet20', {'out_patch': 2}, 'full', False)),
    ('st_resnet20-p2-ternary', ('st_resnet20', {'out_patch': 2}, 'ternary', False)),
    ('st_resnet20-p2-frozen', ('st_resnet20', {'out_patch': 2}, 'ternary', True)),
    ('st_vgg7', ('st_vgg7', {}, 'ternary', False)),
    # The language model at PTB's sizes, batch 20 x 35 words (the commands' defaults): the
    # full-precision baseline (quant_mode 5) and the Strassen LM (quant_mode 2).
    ('charlm-qm5', ('charlm', {}, None, False)),
    ('st_charlm-qm2', ('st_charlm', {'out_nbr_mul': 2000}, 'ternary', False)),
])
PTB = dict(char_vocab_size=51, word_vocab_size=10000, max_word_l=21)
LM_BATCH, LM_STEPS = 20, 35


def is_lm(name):
    return MODELS[name][0] in ('charlm', 'st_charlm')


def examples(name, batch):
    """What one step trains on: images, or words for the language model (its own batch)."""
    return LM_BATCH * LM_STEPS if is_lm(name) else batch


def build(name, dtype, seed=1):
    model, options, phase, frozen = MODELS[name]
    mx.random.seed(seed)
    net = get_model(model, **dict(PTB, **options) if is_lm(name) else options)
    net.initialize(mx.init.Xavier(rnd_type='uniform', factor_type='avg', magnitude=2))
    if phase is not None:
        set_phase(net, phase)
        freeze_ternary(net, frozen)
    set_compute_dtype(net, dtype)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def make_lm_step(net):
    """One step of the language model on random words, as langmod/lm.py trains (SGD, no
    momentum, the state carried over)."""
    rng = np.random.RandomState(0)
    chars = nd.array(rng.randint(0, PTB['char_vocab_size'],
                                 (LM_STEPS, LM_BATCH, PTB['max_word_l'])))
    words = nd.array(rng.randint(0, PTB['word_vocab_size'], (LM_STEPS, LM_BATCH)))
    trainer = gluon.Trainer(trainable_params(net), 'sgd', {'learning_rate': 0.1})
    state = net.begin_state(LM_BATCH)

    def step():
        with autograd.record():
            logits, h, c = net(chars, *state)
            loss = -nd.pick(nd.log_softmax(logits, axis=-1), words, axis=-1).mean()
        loss.backward()
        trainer.step(1)
        clip_scales(net)
        state[:] = [h.detach(), c.detach()]
        return loss
    return step


def make_step(net, batch):
    """One training step of `net` on a fixed random batch; the caller synchronises."""
    if isinstance(net, CharLM):
        return make_lm_step(net)
    x = nd.random.normal(shape=(batch, 3, 32, 32))
    y = nd.array(np.random.RandomState(0).randint(0, 10, batch))
    trainer = gluon.Trainer(trainable_params(net), 'sgd',
                            {'learning_rate': 0.01, 'momentum': 0.9, 'wd': 1e-4})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def step():
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(batch)
        clip_scales(net)
        return loss
    return step


def time_models(names, batch, repeats, say=print):
    """{(name, dtype): median seconds per step}, interleaved round by round."""
    steps = collections.OrderedDict()
    for name in names:
        for dtype in DTYPES:
            steps[name, dtype] = make_step(build(name, dtype), batch)
    for step in steps.values():  # untimed: graph construction, allocation
        step()
        step()
    nd.waitall()
    times = {key: [] for key in steps}
    for i in range(repeats):
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            nd.waitall()
            times[key].append(time.perf_counter() - start)
        say('round %d/%d done' % (i + 1, repeats), file=sys.stderr, flush=True)
    return {key: float(np.median(values)) for key, values in times.items()}


def primitive_times(verbose_lines, top=12):
    """[(milliseconds, calls, 'primitive kernel pass')] summed over DNNL_VERBOSE exec lines."""
    totals = collections.defaultdict(lambda: [0.0, 0])
    for line in verbose_lines:
        if not line.startswith('dnnl_verbose,exec,'):
            continue
        fields = line.rstrip().split(',')
        dtypes = sorted(set(re.findall(r'(?:src|dst)_(\w+?)::', fields[6])))
        key = '%s %s %s %s' % (fields[3], fields[4], fields[5], '/'.join(dtypes))
        totals[key][0] += float(fields[-1])
        totals[key][1] += 1
    rows = sorted(((ms, n, key) for key, (ms, n) in totals.items()), reverse=True)
    return rows[:top], sum(ms for ms, _, _ in rows)


def run_primitives(name, batch, steps):
    """Child process: `steps` untimed-by-us steps of `name` in each dtype under DNNL_VERBOSE."""
    for dtype in DTYPES:
        step = make_step(build(name, dtype), batch)
        step()
        step()
        nd.waitall()
        print('=== %s' % dtype, flush=True)
        for _ in range(steps):
            step()
            nd.waitall()
        print('=== end', flush=True)


def report_primitives(name, batch, steps):
    env = dict(os.environ, DNNL_VERBOSE='1')
    out = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', name,
                          '--batch', str(batch), '--steps', str(steps)],
                         env=env, check=True, capture_output=True, text=True).stdout
    dtype = None
    per_dtype = {d: [] for d in DTYPES}
    for line in out.splitlines():
        if line.startswith('=== '):
            dtype = None if line == '=== end' else line[4:]
        elif dtype is not None:
            per_dtype[dtype].append(line)
    for dtype in DTYPES:
        rows, total = primitive_times(per_dtype[dtype])
        print('\n%s, %s: oneDNN time %.0f ms per step (%d steps, batch %d)'
              % (name, dtype, total / steps, steps, batch))
        for ms, calls, key in rows:
            print('  %8.1f ms/step %5.1f%%  %4d calls/step  %s'
                  % (ms / steps, 100 * ms / max(total, 1e-9), calls // steps, key))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--repeats', type=int, default=10, help='timed rounds')
    parser.add_argument('--primitives', nargs='+', default=[], choices=list(MODELS),
                        help='per-primitive oneDNN time of these models instead of the table')
    parser.add_argument('--steps', type=int, default=3, help='steps per dtype for --primitives')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_primitives(args.child, args.batch, args.steps)
    support, why = bfloat16_support()
    print('MXNet %s, batch %d, median of %d interleaved rounds; bfloat16 %s here: %s'
          % (mx.__version__, args.batch, args.repeats, support, why))
    if args.primitives:
        for name in args.primitives:
            report_primitives(name, args.batch, args.steps)
        return None
    seconds = time_models(args.models, args.batch, args.repeats)
    print('%-24s %12s %12s %8s  %s' % ('model', 'float32', 'bfloat16', 'ratio', 'unit'))
    for name in args.models:
        f32, bf16 = seconds[name, 'float32'], seconds[name, 'bfloat16']
        n = examples(name, args.batch)
        print('%-24s %10.0f/s %10.0f/s %7.2fx  %s' % (name, n / f32, n / bf16, f32 / bf16,
                                                      'words' if is_lm(name) else 'images'))
    print('load average at the end: %.2f' % os.getloadavg()[0])
    return seconds


if __name__ == '__main__':
    main()
