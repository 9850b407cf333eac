"""Load a trained model as a frozen distillation teacher from a run or checkpoint folder."""
import os

from ..errors import RunFolderError, UsageError
from ..layers import set_phase
from ..models import get_model
from .checkpoint import find_checkpoint, load_checkpoint, read_meta
from .stages import has_spn


def load_trained(path, ctx=None):
    """(model, meta, checkpoint folder): the model of a run or checkpoint folder, rebuilt from
    the model name and options its checkpoint stores, in the phase it was saved in.

    Raises RunFolderError (naming `path`) when it is no folder or holds no checkpoint that
    verifies.
    """
    ckpt = find_checkpoint(path) if os.path.isdir(path) else None
    if ckpt is None:
        raise RunFolderError('%s: %s (give a run folder of a training command or one of its '
                             'ckpt-* folders)' % (path, 'no checkpoint there' if os.path.isdir(
                                 path) else 'no such folder'))
    meta = read_meta(ckpt)
    net = get_model(meta['model'], **meta.get('model_kwargs', {}))
    if has_spn(net):
        set_phase(net, meta.get('phase', 1))
    load_checkpoint(ckpt, net, ctx=ctx)
    return net, meta, ckpt


def load_teacher(path, ctx, say=print):
    """A frozen, hybridized model of a run or checkpoint folder (load_trained).

    Raises UsageError when `path` holds no checkpoint of the training commands (it is an
    option's value).
    """
    try:
        teacher, meta, ckpt = load_trained(path, ctx)
    except RunFolderError as err:
        raise UsageError(str(err)) from None
    for param in teacher.collect_params().values():
        param.grad_req = 'null'
    teacher.hybridize(static_alloc=True)
    shown = ['%s %.4g' % kv for kv in sorted(meta.get('metrics', {}).items())
             if isinstance(kv[1], (int, float))]
    say('teacher: %s from %s (%s%s)' % (meta['model'], ckpt, ', '.join(shown) or 'no metrics',
                                       '' if meta.get('finished') else ', run not finished'))
    return teacher
