"""Building what a training run needs from its configuration, the same for every command: the
devices, the model (by registry name), its teacher, its start from a trained dense network
(--init_from), and its cost for summary.json."""
import os
import sys

import mxnet as mx

from ..convert import check_dense_twin, gluoncv_name, transfer_dense, transfer_gluoncv
from ..counting import count_model
from ..errors import UsageError
from ..models import get_model
from .checkpoint import find_checkpoint, read_meta
from .teacher import load_teacher


def contexts(devices, say=print):
    """Contexts from the devices option: None (default) GPU 0 or, without one, the CPU with a
    message; '-1' or '' the CPU; '0' or '0,1' those GPUs (a missing one is a UsageError)."""
    if devices is None:
        if mx.context.num_gpus() == 0:
            say('no GPU found: training on the CPU')
            return [mx.cpu()]
        return [mx.gpu(0)]
    text = str(devices).strip()
    if text in ('', '-1'):
        return [mx.cpu()]
    try:
        indices = [int(i) for i in text.split(',')]
    except ValueError:
        raise UsageError('--gpu_index takes -1 (CPU), a GPU number or a comma list of them, '
                         'not %r' % (devices,)) from None
    if any(i < 0 for i in indices) or len(set(indices)) != len(indices):
        raise UsageError('--gpu_index %s: GPU numbers are distinct and >= 0 (-1 alone means '
                         'the CPU)' % text)
    available = mx.context.num_gpus()
    missing = [i for i in indices if i >= available]
    if missing:
        raise UsageError('--gpu_index %s: GPU %s requested, but this machine has %s'
                         % (text, ','.join(map(str, missing)),
                            '%d GPU(s) (0-%d)' % (available, available - 1) if available
                            else 'no GPU (use --gpu_index -1 for the CPU)'))
    return [mx.gpu(i) for i in indices]


def build_model(name, kwargs):
    """get_model(name, **kwargs), with a UsageError for options the model does not take."""
    try:
        return get_model(name, **kwargs)
    except TypeError as err:
        if 'unexpected keyword argument' in str(err):
            raise UsageError('model %s does not take %s (SPN options apply to st_* models)'
                             % (name, ', '.join('--' + k for k in kwargs))) from None
        raise
    except ValueError as err:
        raise UsageError('model %s: %s' % (name, err)) from None


def init_from(spec, net, model_name, ctx, calibration, download=True, say=print):
    """Initialise the SPN model `net` (initialised, shapes known) from a trained dense network.

    `spec`: 'gluoncv:NAME' (gluoncv's pretrained weights), or a run or checkpoint folder of
    the model's dense twin (a resnet20 run for st_resnet20). Returns (dense network, per-layer
    reports); the dense network is the default distillation teacher. Raises UsageError
    (naming the file) before anything is trained when the source does not fit.
    """
    if gluoncv_name(spec):
        dense, reports = transfer_gluoncv(spec, net, model_name=model_name,
                                          calibration=calibration, ctx=ctx[0],
                                          download=download)
        for param in dense.collect_params().values():
            param.grad_req = 'null'
        dense.hybridize(static_alloc=True)
    else:
        ckpt = find_checkpoint(spec) if os.path.isdir(spec) else None
        if ckpt is None:
            raise UsageError('--init_from %s: %s (give a run folder of the dense model, one of '
                             'its ckpt-* folders, or gluoncv:NAME)'
                             % (spec, 'no checkpoint there' if os.path.isdir(spec)
                                else 'no such folder'))
        source = read_meta(ckpt).get('model')
        check_dense_twin(model_name, source, source='--init_from %s' % ckpt)
        dense = load_teacher(ckpt, ctx, say=lambda *a: None)
        reports = transfer_dense(dense, net, calibration=calibration)
    exact = sum(1 for r in reports if r.exact)
    errors = sorted(r.relative_error for r in reports if not r.exact)
    say('init_from %s: %d SPN layers, %d exact%s' % (
        spec, len(reports), exact,
        ', the others at median relative error %.3g' % errors[len(errors) // 2] if errors
        else ''))
    return dense, reports


def choose_teacher(config, dense, load, say=print):
    """The distillation teacher of a run: `load(config.teacher_model)` when given, else `dense`
    (the network of --init_from, or None); none with dist_lambda 0. Says which."""
    teacher = load(config.teacher_model) if config.teacher_model else dense
    if config.dist_lambda == 0:
        teacher = None
    if teacher is not None:
        say('distillation teacher: %s (dist_lambda %g, dist_temp %g)' % (
            config.teacher_model or config.init_from, config.dist_lambda, config.dist_temp))
    return teacher


def model_cost(net, input_shape=None, inputs=None):
    """Multiplications, additions and bits of `net` in its current stages (counting.py) for one
    input: {'mults', 'adds', 'bits', 'input_shape', 'excluding_fc_head'}, or None
    (with the reason printed) if counting fails: the count must never lose a finished run."""
    try:
        result = count_model(net, input_shape=input_shape, inputs=inputs)
    except Exception as err:  # noqa: BLE001
        print("could not count the model's operations: %s: %s" % (type(err).__name__, err),
              file=sys.stderr)
        return None
    cost = dict(result['total'])
    cost['input_shape'] = list(input_shape) if input_shape else result.get('input_shapes')
    if 'total_excluding_fc_head' in result:
        cost['excluding_fc_head'] = result['total_excluding_fc_head']
    return cost
